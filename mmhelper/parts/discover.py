"""Every Mattermost on the server, wherever and however it was installed: the deploy adopts
a hand install it can carry over and refuses by name what it cannot, before any change.

Looked at, in the one state read:
- systemd units whose ExecStart runs a Mattermost server binary (any unit name, any path;
  drop-ins applied as systemd applies them), with their WorkingDirectory, config flag and
  MM_CONFIG (Environment= or EnvironmentFile=), resolved as Mattermost resolves them;
- the processes listening on 8065 (and the port a found config names), with their unit;
- Debian packages of Mattermost (mattermost, mattermost-omnibus) and GitLab's bundled one;
- Docker or Podman containers made from a Mattermost image;
- Mattermost databases in the local MariaDB/MySQL and PostgreSQL.

How a unit runs Mattermost is read in mmhelper/parts/unit_files.py; the listings' parsing here is
pure too (containers, /proc/net/tcp, cgroups); both are tested on the workstation. The rest
reads files and asks the server's own tools.
"""

import contextlib
import glob
import json
import os
import re
import shutil
import subprocess

from mmhelper.parts.unit_files import (
    config_dsn,
    config_store_kind,
    environment_file,
    exec_argv,
    install_dir_of,
    resolve_config_file,
    server_command,
    service_settings,
)

# Where systemd reads unit files, highest precedence first (systemd.unit(5)).
UNIT_DIRS = ("/etc/systemd/system", "/run/systemd/system", "/usr/local/lib/systemd/system",
             "/lib/systemd/system", "/usr/lib/systemd/system")
MATTERMOST_PACKAGES = ("mattermost", "mattermost-omnibus")
GITLAB_PACKAGES = ("gitlab-ce", "gitlab-ee")
DEFAULT_PORT = 8065


def redact_dsn(dsn):
    """A database DSN without its password, cut as Mattermost's stripPassword cuts it (the
    first ':' after the scheme to the last '@'), for the workstation and the run's output."""
    scheme, sep, rest = dsn.partition("://")
    colon, at = rest.find(":"), rest.rfind("@")
    if not sep or colon < 0 or at < colon:
        return dsn
    return f"{scheme}://{rest[:colon]}:***{rest[at:]}"


def mattermost_image(image):
    """Whether a container image is one of Mattermost's server images (not, say, its database's)."""
    name = (image or "").lower().split("@", 1)[0]
    last = name.rsplit("/", 1)[-1].split(":", 1)[0]
    return "mattermost" in last and not any(other in last for other in ("postgres", "mysql", "mariadb", "push-proxy"))


def container_rows(text):
    """`docker ps -a --format '{{json .}}'` (one JSON object per line) or Podman's JSON array,
    as {name, image, state, ports} of the Mattermost containers."""
    text = text.strip()
    rows = []
    if text.startswith("["):
        with contextlib.suppress(ValueError):
            rows = json.loads(text)
    else:
        for line in text.splitlines():
            with contextlib.suppress(ValueError):
                rows.append(json.loads(line))
    out = []
    for row in rows:
        image = row.get("Image") or ""
        if not mattermost_image(image):
            continue
        names = row.get("Names") or row.get("Name") or ""
        names = ",".join(names) if isinstance(names, list) else names
        ports = row.get("Ports") or ""
        if isinstance(ports, list):  # podman
            ports = ", ".join(f"{p.get('host_port')}->{p.get('container_port')}" for p in ports if isinstance(p, dict))
        out.append({"name": names, "image": image, "state": (row.get("State") or row.get("Status") or "").lower(),
                    "ports": ports})
    return out


def listening_inodes(text, port):
    """Socket inodes listening on `port` in /proc/net/tcp or tcp6 (state 0A is LISTEN)."""
    inodes = set()
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 10 or parts[3] != "0A":
            continue
        local_port = int(parts[1].rsplit(":", 1)[1], 16)
        if local_port == port:
            inodes.add(parts[9])
    return inodes


def unit_of_cgroup(text):
    """The systemd unit (or container scope) a process belongs to, from /proc/PID/cgroup."""
    for line in text.splitlines():
        path = line.split(":", 2)[-1]
        for part in reversed(path.split("/")):
            if part.endswith((".service", ".scope")):
                return part
    return None


def listen_port(address):
    """ServiceSettings.ListenAddress (":8065", "127.0.0.1:8065", "[::]:8065") -> 8065."""
    match = re.search(r":(\d+)$", address or "")
    return int(match.group(1)) if match else None


# ------------------------------------------------------------------ reading the server

def _read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return None


def unit_files():
    """name -> (fragment path, [drop-in texts in order]) of every service unit file that
    mentions Mattermost's binary; the fragment from the highest-precedence folder."""
    fragments, dropins = {}, {}
    for folder in UNIT_DIRS:
        for path in glob.glob(os.path.join(folder, "*.service")):
            name = os.path.basename(path)
            if name not in fragments and not os.path.isdir(path):
                fragments[name] = path
        for path in glob.glob(os.path.join(folder, "*.service.d", "*.conf")):
            name = os.path.basename(os.path.dirname(path))[:-2]
            dropins.setdefault(name, {}).setdefault(os.path.basename(path), path)  # /etc first wins
    found = {}
    for name, path in fragments.items():
        if os.path.realpath(path) == "/dev/null":
            continue  # masked
        texts = [_read(path) or ""] + [_read(p) or "" for _, p in sorted(dropins.get(name, {}).items())]
        if any(re.search(r"(^|/|\s)(mattermost|platform)(\s|$)", t, re.M) for t in texts):
            found[name] = (path, texts, [p for _, p in sorted(dropins.get(name, {}).items())])
    return found


def unit_states(names):
    """Id -> {enabled, active, main_pid} for the named units, in one systemctl call."""
    if not names:
        return {}
    result = subprocess.run(["systemctl", "show", "-p", "Id,UnitFileState,ActiveState,MainPID", "--", *names],
                            capture_output=True, text=True)
    out, block = {}, {}
    for line in result.stdout.splitlines() + [""]:
        if not line.strip():
            if block.get("Id"):
                out[block["Id"]] = {"enabled": block.get("UnitFileState") or "", "active": block.get("ActiveState") or "",
                                    "main_pid": int(block.get("MainPID") or 0)}
            block = {}
            continue
        key, _, value = line.partition("=")
        block[key] = value
    return out


def _exists(path, kind):
    if kind == "file":
        return os.path.isfile(path)
    if kind == "dir":
        return os.path.isdir(path)
    return os.path.exists(path)


def mattermost_units():
    """Every unit that runs a Mattermost server, with where its install and config are."""
    files = unit_files()
    states = unit_states(sorted(files))
    units = []
    for name, (fragment, texts, dropin_paths) in sorted(files.items()):
        svc = service_settings(texts)
        env = {}
        for path in svc["environment_files"]:
            env.update(environment_file(_read(path.lstrip("-")) or ""))
        env.update(svc["environment"])
        cwd = (svc["working_directory"] or "").lstrip("-") or None
        if cwd and cwd.startswith("~"):
            cwd = None
        command = None
        for line in svc["exec_start"]:
            command = server_command(*exec_argv(line), working_directory=cwd)
            if command:
                break
        if not command:
            continue
        binary, args, run_dir = command
        dsn = config_dsn(args, env)
        kind = config_store_kind(dsn)
        unit = {"name": name, "fragment": fragment, "dropins": dropin_paths, "binary": binary,
                "binary_exists": bool(binary) and os.path.isfile(binary), "args": args,
                "working_directory": run_dir, "user": svc["user"],
                "install_dir": install_dir_of(binary), **states.get(name, {"enabled": "", "active": "", "main_pid": 0})}
        if kind == "database":
            unit["config"] = {"kind": "database", "engine": dsn.split("://", 1)[0], "dsn": redact_dsn(dsn)}
        else:
            path = resolve_config_file(dsn, run_dir, binary, _exists)
            unit["config"] = {"kind": "file", "path": path, "exists": bool(path) and os.path.isfile(path),
                              "given": dsn}
        units.append(unit)
    return units


def listeners(port):
    """The processes listening on `port`: pid, executable, command line and unit."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        inodes |= listening_inodes(_read(table) or "", port)
    if not inodes:
        return []
    found = []
    for pid_dir in glob.glob("/proc/[0-9]*"):
        try:
            fds = os.listdir(os.path.join(pid_dir, "fd"))
        except OSError:
            continue
        for fd in fds:
            with contextlib.suppress(OSError):
                link = os.readlink(os.path.join(pid_dir, "fd", fd))
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    pid = int(os.path.basename(pid_dir))
                    exe = None
                    with contextlib.suppress(OSError):
                        exe = os.readlink(os.path.join(pid_dir, "exe"))
                    cmdline = (_read(os.path.join(pid_dir, "cmdline")) or "").replace("\0", " ").strip()
                    found.append({"pid": pid, "exe": exe, "cmdline": cmdline[:300],
                                  "unit": unit_of_cgroup(_read(os.path.join(pid_dir, "cgroup")) or "")})
                    break
    return found


def installed_packages(text):
    """`dpkg-query -W -f '${Package} ${db:Status-Status} ${Version}'` lines -> {name: version}
    of the installed ones (a package removed but not purged says "config-files")."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] == "installed":
            out[parts[0]] = parts[2]
    return out


def gitlab_runs_mattermost(gitlab_rb):
    """Whether GitLab Omnibus' settings switch its bundled Mattermost on."""
    return bool(re.search(r"^\s*mattermost_external_url\s+['\"]", gitlab_rb, re.M)
                or re.search(r"^\s*mattermost\[['\"]enable['\"]\]\s*=\s*true", gitlab_rb, re.M))


def packages():
    """Mattermost's own Debian packages and GitLab's (which bundled a Mattermost)."""
    result = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${db:Status-Status} ${Version}\n",
                             *MATTERMOST_PACKAGES, *GITLAB_PACKAGES], capture_output=True, text=True)
    installed = installed_packages(result.stdout)
    out = [{"name": name, "version": installed[name]} for name in MATTERMOST_PACKAGES if name in installed]
    gitlab = [name for name in GITLAB_PACKAGES if name in installed]
    bundled = None
    if gitlab:
        bundled = {"package": gitlab[0], "version": installed[gitlab[0]],
                   "enabled": gitlab_runs_mattermost(_read("/etc/gitlab/gitlab.rb") or ""),
                   "data": os.path.isdir("/var/opt/gitlab/mattermost")}
    return out, bundled


def containers():
    """Containers made from a Mattermost image (Docker or Podman), or None when neither runs."""
    for tool, cmd in (("docker", ["docker", "ps", "-a", "--no-trunc", "--format", "{{json .}}"]),
                      ("podman", ["podman", "ps", "-a", "--format", "json"])):
        if not shutil.which(tool):
            continue
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=15)
        except subprocess.TimeoutExpired:
            return {"tool": tool, "error": f"`{' '.join(cmd[:3])}` did not answer within 15 s", "found": []}
        if result.returncode != 0:
            return {"tool": tool, "error": (result.stderr.strip().splitlines() or ["failed"])[-1][:200], "found": []}
        return {"tool": tool, "error": None, "found": container_rows(result.stdout)}
    return None


MYSQL_MATTERMOST_SCHEMAS = (
    "SELECT TABLE_SCHEMA FROM information_schema.TABLES WHERE LOWER(TABLE_NAME) IN ('systems', 'posts', 'users') "
    "GROUP BY TABLE_SCHEMA HAVING COUNT(*) = 3")


def mysql_databases():
    """Mattermost databases in the local MariaDB/MySQL (root through its socket, as Debian
    sets it up): ([{engine, name, posts}], why not looked at or None)."""
    if not shutil.which("mysql"):
        return [], None
    active = any(subprocess.run(["systemctl", "is-active", name], capture_output=True, text=True).stdout.strip()
                 == "active" for name in ("mariadb", "mysql"))
    if not active:
        return [], "MariaDB/MySQL is installed but not running: its databases were not looked at"
    result = subprocess.run(["mysql", "--protocol=socket", "-N", "-B", "-e", MYSQL_MATTERMOST_SCHEMAS],
                            capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        return [], f"MariaDB/MySQL refused root's login through its socket ({result.stderr.strip()[:120]})"
    out = []
    for name in result.stdout.split():
        count = subprocess.run(["mysql", "--protocol=socket", "-N", "-B", "-e",
                                f"SELECT COUNT(*) FROM `{name.replace('`', '``')}`.Posts"],
                               capture_output=True, text=True, timeout=30).stdout.strip()
        out.append({"engine": "mysql", "name": name, "posts": int(count) if count.isdigit() else None})
    return out, None


def postgres_databases():
    """Mattermost databases in the local PostgreSQL cluster (as its postgres superuser)."""
    if not shutil.which("psql") or subprocess.run(["systemctl", "is-active", "postgresql"], capture_output=True,
                                                  text=True).stdout.strip() != "active":
        return [], None

    def psql(database, sql):
        return subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-t", "-A", "-d", database,
                               "-c", sql], capture_output=True, text=True, timeout=30)

    listing = psql("postgres", "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate")
    if listing.returncode != 0:
        return [], f"PostgreSQL could not be asked for its databases ({listing.stderr.strip()[:120]})"
    out = []
    for name in listing.stdout.split():
        if name == "postgres":
            continue
        found = psql(name, "SELECT CASE WHEN to_regclass('public.systems') IS NOT NULL AND to_regclass('public.posts') "
                           "IS NOT NULL AND to_regclass('public.users') IS NOT NULL THEN (SELECT count(*) FROM "
                           "public.posts)::text ELSE 'no' END").stdout.strip()
        if found and found != "no":
            out.append({"engine": "postgres", "name": name, "posts": int(found) if found.isdigit() else None})
    return out, None


def discover(ports=(DEFAULT_PORT,)):
    """Everything the deploy looks at before it installs, adopts or refuses."""
    units = mattermost_units()
    pkgs, gitlab = packages()
    mysql_found, mysql_note = mysql_databases()
    pg_found, pg_note = postgres_databases()
    wanted = sorted({*ports, DEFAULT_PORT})
    return {
        "units": units,
        "listeners": {str(port): listeners(port) for port in wanted},
        "packages": pkgs,
        "gitlab": gitlab,
        "containers": containers(),
        "databases": mysql_found + pg_found,
        "databases_not_read": [note for note in (mysql_note, pg_note) if note],
    }
