"""Patch night on the server: pending upgrades, the lock, the upgrade, restarts, the record.
"""

import contextlib
import fcntl
import fnmatch
import json
import os
import re
import shutil
import subprocess
import time

from mmhelper.jobs.engine import leased_state, mark, record, release, take_lease
from mmhelper.parts.common import Failure, free_bytes, ping, read_json, run
from mmhelper.parts.service import systemctl, wait_healthy
from mmhelper.steps.offsite import offsite_state


def parse_apt_simulation(text):
    """`apt-get -s upgrade` lines -> pending upgrades. Example line:
    Inst libssl3 [3.0.15-1~deb12u1] (3.0.17-1~deb12u2 Debian-Security:12/stable-security [amd64])"""
    pending = []
    for line in text.splitlines():
        m = re.match(r"^Inst (\S+) (?:\[(\S+)\] )?\((\S+) (.*?)(?: \[[^\]]+\])?\)", line)
        if m:
            name, current, new, origin = m.groups()
            pending.append({"name": name, "current": current, "new": new, "origin": origin,
                            "security": "security" in origin.lower()})
    return pending


def parse_needrestart(text):
    """`needrestart -b` -> kernel status (1 current, 2/3 a newer kernel is pending; None
    when needrestart cannot tell, e.g. in a container) and the services to restart."""
    kernel, services = None, []
    for line in text.splitlines():
        key, _, value = line.partition(":")
        value = value.strip()
        if key == "NEEDRESTART-KSTA" and value.isdigit():
            kernel = int(value)
        elif key == "NEEDRESTART-SVC" and value:
            services.append(value)
    return {"kernel_status": kernel, "services": services}


APT_ENV = dict(os.environ, DEBIAN_FRONTEND="noninteractive", APT_LISTCHANGES_FRONTEND="none",
               NEEDRESTART_MODE="l")


APT_KEEP_CONFIG = ["-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold"]


def private_lists(lists_dir):
    """apt options that read package lists from a private folder: a plan refreshes what
    it reads without touching the system's own lists or caches."""
    os.makedirs(os.path.join(lists_dir, "partial"), mode=0o755, exist_ok=True)
    return ["-o", f"Dir::State::Lists={lists_dir}", "-o", "Dir::Cache::pkgcache=", "-o", "Dir::Cache::srcpkgcache="]


def os_state(spec):
    """Pending upgrades (security ones marked), holds, reboot flag, needrestart's view,
    free disk, and any patch night lock or unfinished run."""
    options = []
    if spec.get("refresh"):
        options = private_lists(spec["lists_dir"])
        result = subprocess.run(["apt-get", "update", "-q", *options], capture_output=True, text=True, env=APT_ENV)
        if result.returncode != 0:
            return {"error": f"apt-get update failed: {result.stderr.strip()[-300:]}"}
    sim = subprocess.run(["apt-get", "-s", "upgrade", "--with-new-pkgs", *options], capture_output=True,
                         text=True, env=APT_ENV)
    pending = parse_apt_simulation(sim.stdout)
    held = subprocess.run(["apt-mark", "showhold"], capture_output=True, text=True).stdout.split()
    reboot_pkgs = []
    with contextlib.suppress(OSError), open("/run/reboot-required.pkgs") as f:
        reboot_pkgs = sorted(set(f.read().split()))
    needrestart = {"kernel_status": None, "services": [], "installed": bool(shutil.which("needrestart"))}
    if needrestart["installed"]:
        needrestart.update(parse_needrestart(subprocess.run(["needrestart", "-b"], capture_output=True,
                                                            text=True).stdout))
    return {
        "pending": pending,
        "count": len(pending),
        "security": sum(1 for p in pending if p["security"]),
        "held": held,
        "reboot_required": os.path.exists("/run/reboot-required"),
        "reboot_packages": reboot_pkgs,
        "needrestart": needrestart,
        "free_bytes": {p: free_bytes(p) for p in ("/", "/var") if os.path.exists(p)},
        "lock": read_json(spec["lock_file"]),
        "run": read_json(spec["state_file"]),
    }


def patch_lock(spec):
    """Take the patch night lock, or say who holds it and since when. The same holder
    (a run that was killed) may take it again and continue; `break` takes it anyway."""
    take_lease({**spec, "fresh_state": fresh_run(spec)}, "patch night", "make patch-night")


def fresh_run(spec):
    """What a new run of patch night (or of the release upgrade) records from its start."""
    return {"upgraded": [], "restarted": [], "deferred": [], "rebooted": False,
            "mattermost_before": spec.get("mattermost_before")}


def _run_state(spec):
    return leased_state(spec, "patch night")


APT_UNIT = "mattermost-deploy-apt"
APT_LOG = "/var/log/mattermost-deploy/apt.log"


def _apt_unit_running():
    state = subprocess.run(["systemctl", "is-active", f"{APT_UNIT}.service"], capture_output=True, text=True)
    return state.stdout.strip() in ("active", "activating", "deactivating", "reloading")


def apt_detached(args):
    """`apt-get -y -q ARGS` as a transient service of systemd, not as a child of this SSH
    session: a lost connection (the helper dies with it, and its pipe with it) leaves dpkg to
    finish instead of killing it in the middle of an unpack. Measured: a Debian 11 -> 12 run
    killed while dpkg unpacked the C library left a server on which no program started
    (`GLIBC_2.35 not found`). Output in APT_LOG; returns (ok, the log's last 3000 characters).
    A run again waits for the one still going (wait_for_dpkg)."""
    wait_for_dpkg()
    os.makedirs(os.path.dirname(APT_LOG), mode=0o755, exist_ok=True)
    with open(APT_LOG, "w"):
        pass
    subprocess.run(["systemctl", "reset-failed", f"{APT_UNIT}.service"], capture_output=True, check=False)
    env = [f"--setenv={k}={APT_ENV[k]}" for k in ("DEBIAN_FRONTEND", "APT_LISTCHANGES_FRONTEND", "NEEDRESTART_MODE")]
    result = subprocess.run(["systemd-run", "--quiet", "--collect", "--wait", f"--unit={APT_UNIT}", *env,
                             f"--property=StandardOutput=append:{APT_LOG}", f"--property=StandardError=append:{APT_LOG}",
                             "apt-get", "-y", "-q", *APT_KEEP_CONFIG, *args], capture_output=True, text=True)
    with open(APT_LOG, errors="replace") as f:
        out = f.read()
    return result.returncode == 0, (out + result.stderr)[-3000:]


def wait_for_dpkg(timeout=900):
    """Wait while another apt/dpkg (say, the run that was killed) still holds dpkg's lock, and
    while the deploy's own apt run (apt_detached) of a killed run goes on, however long."""
    if _apt_unit_running():
        print(f"  waiting for the package run of the interrupted run to finish ({APT_UNIT}.service, log {APT_LOG})",
              flush=True)
        while _apt_unit_running():
            time.sleep(2)
    deadline, told = time.time() + timeout, False
    while True:
        try:
            fd = os.open("/var/lib/dpkg/lock-frontend", os.O_RDWR | os.O_CREAT, 0o640)
        except OSError:
            return
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.lockf(fd, fcntl.LOCK_UN)
            return
        except OSError:
            if time.time() > deadline:
                raise Failure("another apt/dpkg run still holds the package lock; let it finish, then re-run "
                              "`make patch-night`") from None
            if not told:
                print("  waiting for another apt/dpkg run (perhaps the interrupted one) to finish", flush=True)
                told = True
            time.sleep(2)
        finally:
            os.close(fd)


def patch_upgrade(spec):
    """Upgrade every package non-interactively, keeping local config files; finishes a
    dpkg run that was interrupted first. What is upgraded is recorded for the report."""
    run_state = _run_state(spec)
    wait_for_dpkg()
    subprocess.run(["dpkg", "--configure", "-a"], env=APT_ENV, check=False)
    run(["apt-get", "update", "-q"], env=APT_ENV)
    pending = parse_apt_simulation(run(["apt-get", "-s", "upgrade", "--with-new-pkgs"], env=APT_ENV).stdout)
    known = {p["name"] for p in run_state["upgraded"]}
    run_state["upgraded"] += [p for p in pending if p["name"] not in known]
    record(spec, run_state)
    if pending:
        print(f"  upgrading {len(pending)} packages: " + ", ".join(f"{p['name']} {p['new']}" for p in pending),
              flush=True)
        ok, output = apt_detached(["upgrade", "--with-new-pkgs"])
        if not ok:
            print(output, flush=True)
            raise Failure("apt-get upgrade failed (see above); Mattermost keeps running - fix the cause and "
                          "re-run `make patch-night` to continue")
    record(spec, run_state, "packages")
    print(f"packages upgraded: {len(pending)}")


def restart_service(spec, service, run_state):
    mm = spec["service"]  # None on a database server of other machines
    if service.startswith("postgresql") and mm is None:
        result = systemctl("restart", service)
        if result.returncode != 0:
            raise Failure(f"restarting {service} failed: {result.stderr.strip()}; re-run `make patch-night`")
        run_state["restarted"].append(service)
        record(spec, run_state)
        print(f"  restarted {service} (the Mattermost servers are checked after this server's part)", flush=True)
        return
    if service.startswith("postgresql"):
        systemctl("restart", service)
        print(f"  restarted {service}; starting Mattermost again (it is bound to PostgreSQL)", flush=True)
        service = mm
    if service == mm:
        systemctl("restart", mm)
        wait_healthy({"url": spec["ping_url"], "version": spec["version"], "timeout": spec["timeout"], "service": mm})
    elif service == "systemd-manager":
        systemctl("daemon-reexec")
    else:
        result = systemctl("restart", service)
        if result.returncode != 0:
            raise Failure(f"restarting {service} failed: {result.stderr.strip()}; re-run `make patch-night` "
                          "to continue")
    run_state["restarted"].append(service)
    record(spec, run_state)
    print(f"  restarted {service}", flush=True)


def patch_restart(spec):
    """Restart what needrestart lists (Mattermost cleanly, with a health check), unless a
    reboot follows anyway; services never restarted at run time wait for the next reboot."""
    run_state = _run_state(spec)
    if os.path.exists("/run/reboot-required") or spec.get("reboot_expected"):
        run_state["restarts_by_reboot"] = True
        record(spec, run_state, "restarts")
        print("restarts left to the reboot that follows")
        return
    listed = parse_needrestart(run(["needrestart", "-b"]).stdout)["services"] if shutil.which("needrestart") else []
    never = spec.get("never_restart", [])
    for service in listed:
        if any(fnmatch.fnmatch(service, pattern) for pattern in never):
            if service not in run_state["deferred"]:
                run_state["deferred"].append(service)
            continue
        if service not in run_state["restarted"]:
            restart_service(spec, service, run_state)
    record(spec, run_state, "restarts")
    print(f"services restarted: {', '.join(run_state['restarted']) or 'none needed'}")


def patch_mark(spec):
    mark(spec, "patch night")


def patch_finish(spec):
    """End the run: print its record as JSON (for the report) and release the lock."""
    run_state = _run_state(spec)
    if spec.get("ping_url") is None:  # a database server: PostgreSQL is what must run
        active = systemctl("is-active", "postgresql").stdout.strip() == "active"
        health = {"version": None, "ok": active}
        run_state["role"] = "database"
    else:
        health = ping(spec["ping_url"])
    offsite = offsite_state({"status_file": spec["offsite_status_file"]}) if spec.get("offsite_status_file") else None
    run_state.update(finished=time.time(), mattermost_after=health["version"], healthy=health["ok"], offsite=offsite,
                     reboot_still_required=os.path.exists("/run/reboot-required"))
    print(json.dumps(run_state))
    release(spec)


def after_database(spec):
    """On a Mattermost server whose database server was just patched: Mattermost answers
    (it reconnects by itself), or is restarted and checked."""
    deadline = time.time() + spec.get("grace", 60)
    while time.time() < deadline:
        if ping(spec["ping_url"])["ok"]:
            print("Mattermost answers with its database (reconnected by itself)")
            return
        time.sleep(2)
    print("  Mattermost did not get its database back by itself: restarting it", flush=True)
    systemctl("restart", spec["service"])
    wait_healthy({"url": spec["ping_url"], "version": spec.get("version"), "timeout": spec["timeout"],
                  "service": spec["service"]})
    print("Mattermost restarted and healthy")
