"""Debian release upgrades (11 bullseye -> 12 bookworm -> 13 trixie) on the server: what it would do,
simulated with private package lists (nothing of the system's touched), then the steps -
sources, packages, the PostgreSQL cluster - each recorded so a killed run continues."""

import contextlib
import json
import os
import re
import shutil
import subprocess
import time

from mmhelper.jobs.engine import leased_state, mark, record, release, take_lease
from mmhelper.jobs.patching import APT_ENV, apt_detached, fresh_run, parse_apt_simulation, wait_for_dpkg
from mmhelper.parts.common import Failure, free_bytes, ping, read_json, run, write_private
from mmhelper.parts.pg import psql_as_postgres
from mmhelper.parts.service import systemctl, wait_healthy

DEBIAN_HOSTS = re.compile(r"^https?://([a-z0-9.-]*\.)?(debian\.org|debian\.net)(/|$)")


def sources_for(codename):
    """Debian's sources of `codename` in deb822 form (Debian 13's own default file)."""
    keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
    return (f"Types: deb\nURIs: http://deb.debian.org/debian\nSuites: {codename} {codename}-updates\n"
            f"Components: main\nSigned-By: {keyring}\n\n"
            f"Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: {codename}-security\n"
            f"Components: main\nSigned-By: {keyring}\n")


def parse_sources(files):
    """{path: text} of apt source files -> entries {file, uri, suites, enabled} (one-line
    `deb URI SUITE ...` and deb822 stanzas alike)."""
    entries = []
    for path, text in files.items():
        if path.endswith(".sources"):
            for stanza in re.split(r"\n\s*\n", text):
                fields = {}
                for line in stanza.splitlines():
                    if line and not line.startswith("#") and ":" in line and not line[0].isspace():
                        key, _, value = line.partition(":")
                        fields[key.strip().lower()] = value.strip()
                if "uris" in fields:
                    for uri in fields["uris"].split():
                        entries.append({"file": path, "uri": uri, "suites": fields.get("suites", "").split(),
                                        "enabled": fields.get("enabled", "yes").lower() != "no"})
        else:
            for line in text.splitlines():
                words = re.sub(r"\[[^\]]*\]", "", line.split("#", 1)[0]).split()
                if len(words) >= 3 and words[0] in ("deb", "deb-src"):
                    entries.append({"file": path, "uri": words[1], "suites": [words[2]], "enabled": True})
    for entry in entries:
        entry["debian"] = bool(DEBIAN_HOSTS.match(entry["uri"]))
    return entries


def parse_clusters(text):
    """`pg_lsclusters -h` lines -> [{version, name, port, status, data}]."""
    clusters = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 6 and parts[0].isdigit():
            clusters.append({"version": int(parts[0]), "name": parts[1], "port": int(parts[2]),
                             "status": parts[3], "data": parts[5]})
    return clusters


def parse_apt_sizes(text):
    """`apt-get full-upgrade --assume-no` -> bytes to download and bytes more on disk."""
    units = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}

    def size(pattern):
        match = re.search(pattern, text)
        return int(float(match.group(1).replace(",", "")) * units[match.group(2)]) if match else 0

    return {"download": size(r"Need to get ([\d.,]+) (B|kB|MB|GB)"),
            "more_disk": size(r"After this operation, ([\d.,]+) (B|kB|MB|GB) (?:of )?additional"),
            "freed": size(r"After this operation, ([\d.,]+) (B|kB|MB|GB) disk space will be freed")}


def source_files():
    files = {}
    candidates = ["/etc/apt/sources.list"]
    with contextlib.suppress(FileNotFoundError):
        candidates += [os.path.join("/etc/apt/sources.list.d", n) for n in sorted(os.listdir("/etc/apt/sources.list.d"))
                       if n.endswith((".list", ".sources"))]
    for path in candidates:
        with contextlib.suppress(OSError), open(path) as f:
            files[path] = f.read()
    return files


def clusters():
    if not shutil.which("pg_lsclusters"):
        return []
    return parse_clusters(subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True).stdout)


def simulate(target, work_dir):
    """The release upgrade apt would make, against `target`'s package lists kept in a
    private folder: packages upgraded, new, removed, download and disk sizes."""
    lists, parts = os.path.join(work_dir, "lists"), os.path.join(work_dir, "parts")
    for folder in (os.path.join(lists, "partial"), parts):
        os.makedirs(folder, exist_ok=True)
    sources = os.path.join(parts, "debian.sources")
    with open(sources, "w") as f:
        f.write(sources_for(target))
    options = ["-o", "Dir::Etc::sourcelist=/dev/null", "-o", f"Dir::Etc::sourceparts={parts}",
               "-o", f"Dir::State::Lists={lists}", "-o", "Dir::Cache::pkgcache=", "-o", "Dir::Cache::srcpkgcache="]
    update = subprocess.run(["apt-get", "update", "-q", *options], capture_output=True, text=True, env=APT_ENV)
    if update.returncode != 0:
        return {"error": f"apt-get update with {target}'s sources failed: {update.stderr.strip()[-300:]}"}
    sim = subprocess.run(["apt-get", "-s", "full-upgrade", *options], capture_output=True, text=True, env=APT_ENV)
    removed = sorted(set(re.findall(r"^Remv (\S+)", sim.stdout, re.M)))
    pending = parse_apt_simulation(sim.stdout)
    sizes = subprocess.run(["apt-get", "full-upgrade", "--assume-no", *options], capture_output=True, text=True,
                           env=APT_ENV)
    return {"upgraded": len([p for p in pending if p["current"]]), "new": len([p for p in pending if not p["current"]]),
            "removed": removed, "postgresql": sorted({p["name"] for p in pending if re.fullmatch(r"postgresql-\d+", p["name"])}),
            **parse_apt_sizes(sizes.stdout + sizes.stderr)}


def os_release_state(spec):
    """Everything the release-upgrade plan decides from (nothing changed on the server)."""
    audit = subprocess.run(["dpkg", "--audit"], capture_output=True, text=True).stdout.strip()
    held = subprocess.run(["apt-mark", "showhold"], capture_output=True, text=True).stdout.split()
    db_bytes = 0
    with contextlib.suppress(Failure, ValueError):
        db_bytes = int(psql_as_postgres(f"SELECT pg_database_size('{spec['db']}');").stdout.strip() or 0)
    out = {
        "dpkg_audit": audit[-500:], "held": held, "sources": parse_sources(source_files()),
        "clusters": clusters(), "db_bytes": db_bytes,
        "free_bytes": {p: free_bytes(p) for p in ("/", "/var", "/var/lib/postgresql") if os.path.exists(p)},
        "lock": read_json(spec["lock_file"]), "run": read_json(spec["state_file"]),
    }
    if spec.get("target"):
        out["simulation"] = simulate(spec["target"], spec["work_dir"])
    return out


def _run_state(spec):
    return leased_state(spec, "release upgrade")


def os_lock(spec):
    """Take the release upgrade's lock (the lease the engine keeps for jobs driven from the
    workstation), or say who holds it."""
    take_lease({**spec, "fresh_state": fresh_run(spec)}, "release upgrade", "make os-upgrade")


def os_mark(spec):
    """Record facts (and a step) of the release upgrade run."""
    mark(spec, "release upgrade")


def os_sources(spec):
    """Debian's sources of the target release (deb822, as Debian 13 ships them); the old
    sources.list and every third-party source set aside (renamed, never deleted)."""
    run_state = _run_state(spec)
    if "sources" in run_state["done"]:
        print("sources already switched")
        return
    disabled = run_state.setdefault("disabled_sources", [])
    for path, _ in source_files().items():
        if path == "/etc/apt/sources.list.d/debian.sources":
            continue
        kept = f"{path}.disabled-by-os-upgrade"
        os.rename(path, kept)
        disabled.append(kept)
        print(f"  set aside {path} -> {kept}", flush=True)
    write_private("/etc/apt/sources.list.d/debian.sources", sources_for(spec["target"]), mode=0o644)
    record(spec, run_state, "sources")
    print(f"apt sources: Debian {spec['target']} (deb822); set aside: {', '.join(disabled) or 'none'}")


def os_packages(spec):
    """The upgrade itself, as Debian's release notes describe it: a minimal upgrade, then
    the full one; non-interactive, local config files kept; an interrupted dpkg finished first."""
    run_state = _run_state(spec)
    if "packages" in run_state["done"]:
        print("packages already upgraded")
        return
    wait_for_dpkg()
    subprocess.run(["dpkg", "--configure", "-a"], env=APT_ENV, check=False)
    run(["apt-get", "update", "-q"], env=APT_ENV)
    started = time.time()
    for step in (["upgrade", "--without-new-pkgs"], ["full-upgrade"]):
        print(f"  apt-get {' '.join(step)} (this takes a while)", flush=True)
        ok, output = apt_detached(step)
        if not ok:
            print(output, flush=True)
            raise Failure(f"apt-get {step[0]} failed (see above); Mattermost keeps running on the packages it has - "
                          "fix the cause and run `make os-upgrade` again to continue")
    run_state["packages_seconds"] = round(time.time() - started)
    record(spec, run_state, "packages")
    print(f"packages upgraded to Debian {spec['target']} in {run_state['packages_seconds']} s")


def os_postgresql(spec):
    """The PostgreSQL cluster moved to the new major with Debian's own pg_upgradecluster;
    Mattermost is stopped only for that. The old cluster is kept, stopped, until the
    operator drops it."""
    run_state = _run_state(spec)
    if "postgresql" in run_state["done"]:
        print("the PostgreSQL cluster is already upgraded")
        return
    found = clusters()
    installed = sorted(int(v) for v in os.listdir("/usr/lib/postgresql") if v.isdigit())
    newest = installed[-1] if installed else None
    serving = [c for c in found if c["port"] == spec.get("port", 5432) and c["name"] == spec["cluster"]]
    if not serving or newest is None or serving[0]["version"] >= newest:
        print(f"no cluster upgrade needed (serving: {serving[0]['version'] if serving else 'none'}, newest installed: {newest})")
        record(spec, run_state, "postgresql")
        return
    old = serving[0]["version"]
    fresh = [c for c in found if c["version"] == newest and c["name"] == spec["cluster"]]
    if fresh:
        # The package made an empty cluster of the new major; it must go before the upgrade.
        databases = psql_as_postgres("SELECT datname FROM pg_database WHERE datname NOT IN "
                                     "('postgres', 'template0', 'template1');", port=fresh[0]["port"]).stdout.split() \
            if fresh[0]["status"] == "online" else []
        if databases:
            raise Failure(f"a PostgreSQL {newest} cluster {spec['cluster']} with databases ({', '.join(databases)}) "
                          "already exists: move it away first; nothing was changed")
        run(["pg_dropcluster", str(newest), spec["cluster"], "--stop"])
    print(f"  stopping Mattermost for the cluster upgrade {old} -> {newest}", flush=True)
    started = time.time()
    systemctl("stop", spec["service"])
    try:
        result = subprocess.run(["pg_upgradecluster", "-m", "upgrade", "-v", str(newest), str(old), spec["cluster"]],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if result.returncode != 0:
            print(result.stdout[-3000:], flush=True)
            raise Failure(f"pg_upgradecluster {old} {spec['cluster']} failed (see above)")
    except BaseException:
        print(f"  putting PostgreSQL {old} back", flush=True)
        now = {c["version"]: c for c in clusters()}
        if newest in now and now[newest]["port"] == spec.get("port", 5432):
            subprocess.run(["pg_dropcluster", str(newest), spec["cluster"], "--stop"], check=False)
        subprocess.run(["pg_ctlcluster", str(old), spec["cluster"], "start"], check=False)
        systemctl("start", spec["service"])
        raise
    systemctl("start", spec["service"])
    wait_healthy({"url": spec["ping_url"], "version": spec["version"], "timeout": spec["timeout"],
                  "service": spec["service"]})
    run_state.update(postgresql={"from": old, "to": newest, "outage_seconds": round(time.time() - started, 1)})
    record(spec, run_state, "postgresql")
    print(f"PostgreSQL {old} -> {newest}: Mattermost was down {run_state['postgresql']['outage_seconds']} s; "
          f"the old cluster {old}/{spec['cluster']} is kept, stopped - drop it with "
          f"`pg_dropcluster {old} {spec['cluster']}` once you are satisfied")


def os_finish(spec):
    """End the run: its record as JSON (for the report), the lock released."""
    run_state = _run_state(spec)
    health = ping(spec["ping_url"])
    now = {}
    with contextlib.suppress(OSError), open("/etc/os-release") as f:
        for line in f:
            key, _, value = line.strip().partition("=")
            now[key] = value.strip('"')
    run_state.update(finished=time.time(), healthy=health["ok"], mattermost_after=health["version"],
                     release_after=now.get("VERSION_CODENAME"), clusters_after=clusters())
    print(json.dumps(run_state))
    release(spec)
