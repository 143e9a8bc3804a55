"""Small system helpers every step uses: running commands, files, PostgreSQL, systemd, HTTP
health, and the one failure type (a sentence for the operator).
"""

import contextlib
import grp
import hashlib
import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

HELPER_VERSION = 1


MASK = "********"


class Failure(Exception):
    """A failure the operator can act on: printed as one line, exit status 1."""


def parse_version_output(text):
    match = re.search(r"^Version:\s*(\d+\.\d+\.\d+)", text, re.M)
    return match.group(1) if match else None


def parse_version_header(value):
    """X-Version-Id: {Version}.{BuildNumber}.{ConfigHash}.{Enterprise} -> Version."""
    match = re.match(r"^(\d+\.\d+\.\d+)(?:\.|$)", value or "")
    return match.group(1) if match else None


def run(cmd, check=True, **kwargs):
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    result = subprocess.run(cmd, **kwargs)
    if check and result.returncode != 0:
        raise Failure(f"{' '.join(cmd[:3])} failed: {(result.stderr or result.stdout).strip()[-300:]}")
    return result


def file_info(path):
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    info = {"mode": stat.S_IMODE(st.st_mode), "owner": _user_name(st.st_uid),
            "group": _group_name(st.st_gid), "type": _kind(st)}
    if stat.S_ISREG(st.st_mode):
        with open(path, "rb") as f:
            info["sha256"] = hashlib.sha256(f.read()).hexdigest()
    elif stat.S_ISLNK(st.st_mode):
        info["target"] = os.readlink(path)
    return info


def _kind(st):
    if stat.S_ISLNK(st.st_mode):
        return "link"
    if stat.S_ISDIR(st.st_mode):
        return "dir"
    return "file" if stat.S_ISREG(st.st_mode) else "other"


def _user_name(uid):
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group_name(gid):
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def read_password(path):
    try:
        with open(path) as f:
            return f.read().strip() or None
    except FileNotFoundError:
        return None


def write_private(path, data, uid=0, gid=0, mode=0o600):
    """Atomic write of a file that only its owner may read."""
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        os.fchmod(fd, mode)
        os.fchown(fd, uid, gid)
        with os.fdopen(fd, "w") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def systemctl(*args):
    return subprocess.run(["systemctl", *args], capture_output=True, text=True)


def unit_property(unit, prop):
    return systemctl("show", unit, "-p", prop, "--value").stdout.strip()


# On a Mattermost server whose database is elsewhere (mattermost_role "app"), the deploy
# writes where it is (no password: that stays in the root-only password file).
REMOTE_DB_FILE = "/etc/mattermost/db-remote.json"


def remote_db():
    """{host, port, user, database, sslrootcert, maintenance_db, password_file} when this
    server's database is on another machine, else None (the local cluster)."""
    return read_json(REMOTE_DB_FILE)


def pg_command(program, database, *args):
    """(argv, env) for a PostgreSQL client program against Mattermost's database server: the
    local cluster as the postgres superuser, or the remote one as Mattermost's own role over
    TLS with the CA and the name checked (sslmode=verify-full), its password in the
    environment, never in argv. "postgres" means the maintenance database."""
    conn = remote_db()
    if not conn:
        return ["runuser", "-u", "postgres", "--", program, *args, "-d", database], None
    password = read_password(conn["password_file"])
    if password is None:
        raise Failure(f"{conn['password_file']} is missing: run the full deploy (MATTERMOST_DB_PASSWORD)")
    env = dict(os.environ, PGHOST=conn["host"], PGPORT=str(conn["port"]), PGUSER=conn["user"],
               PGSSLMODE="verify-full", PGSSLROOTCERT=conn["sslrootcert"], PGPASSWORD=password,
               PGCONNECT_TIMEOUT="10", PGAPPNAME="mattermost-deploy")
    if database == "postgres":
        database = conn.get("maintenance_db") or "postgres"
    return [program, *args, "-d", database], env


def psql_as_postgres(sql, database="postgres", port=None):
    """SQL as the database's administrator: the postgres superuser on the local cluster, the
    owner role on a remote one (which may create, rename and drop its own databases)."""
    if port:
        return run(["runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1",
                    "-d", database, "-p", str(port)], input=sql)
    cmd, env = pg_command("psql", database, "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1")
    return run(cmd, input=sql, env=env)


def ident(name):
    """A PostgreSQL identifier, quoted."""
    return '"' + name.replace('"', '""') + '"'


def literal(text):
    """A PostgreSQL string literal, quoted (standard_conforming_strings is on)."""
    return "'" + text.replace("'", "''") + "'"


def terminate_connections(database_name):
    psql_as_postgres(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     f"WHERE datname = {literal(database_name)} AND pid <> pg_backend_pid();")


def put_database_back(kept, db):
    """Replace database `db` by the copy `kept` (a rename: instant, whatever the size)."""
    terminate_connections(db)
    psql_as_postgres(f"DROP DATABASE IF EXISTS {ident(db)};")
    psql_as_postgres(f"ALTER DATABASE {ident(kept)} RENAME TO {ident(db)};")


def database_exists(name):
    return bool(psql_as_postgres(f"SELECT 1 FROM pg_database WHERE datname = {literal(name)};").stdout.strip())


def psql_login_ok(spec, password):
    env = dict(os.environ, PGPASSWORD=password, PGCONNECT_TIMEOUT="5", PGSSLMODE="disable")
    return subprocess.run(
        ["psql", "-X", "-q", "-t", "-A", "-h", str(spec["host"]), "-p", str(spec["port"]),
         "-U", spec["user"], "-d", spec["database"], "-c", "SELECT 1"],
        env=env, capture_output=True).returncode == 0


def http_get(url, timeout=5.0):
    request = urllib.request.Request(url, headers={"User-Agent": "mattermost-deploy"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def ping(url, timeout=5.0):
    """Health as the deploy judges it: HTTP 200, status OK, database OK, the version."""
    try:
        code, headers, body = http_get(url, timeout)
    except OSError as e:
        return {"ok": False, "error": f"no answer ({getattr(e, 'reason', e)})", "version": None}
    version = parse_version_header(headers.get("X-Version-Id"))
    try:
        payload = json.loads(body or b"{}")
    except ValueError:
        payload = {}
    ok = code == 200 and payload.get("status") == "OK" and payload.get("database_status", "OK") == "OK"
    error = None if ok else f"HTTP {code}, status {payload.get('status')}, database {payload.get('database_status')}"
    return {"ok": ok, "error": error, "version": version}


def run_release_binary(release_dir, config, user, *args, env=None, in_release=False, timeout=120):
    """Run `bin/mattermost ARGS` of a release as the service user (never root), on a
    private copy of `config` so nothing in the install or state folders is touched."""
    tmp = tempfile.mkdtemp(prefix="mm-run-")
    try:
        env = dict(os.environ, **(env or {}), MM_CONFIG=os.path.join(tmp, "config.json"))
        if config and os.path.exists(config):
            shutil.copyfile(config, env["MM_CONFIG"])
        cmd = [os.path.join(release_dir, "bin", "mattermost"), *args]
        if _user_exists(user):
            account = pwd.getpwnam(user)
            for path in (tmp, env["MM_CONFIG"]):
                if os.path.exists(path):
                    os.chown(path, account.pw_uid, account.pw_gid)
            cmd = ["runuser", "-u", user, "--", *cmd]
        # in_release: run from the release folder (read-only for the user), where the binary
        # finds its i18n/ and so explains itself in words rather than message ids.
        return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=release_dir if in_release else tmp,
                              timeout=timeout)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def installed_version(release_dir, user, config=None):
    """What a release's own binary says it is (with a private copy of `config`, by default
    its own config/config.json). Mattermost 5 and 6 start the whole server
    (and wait for its database) for `version` unless given --skip-server-start
    (cmd/mattermost/commands/version.go of mattermost-server v5/v6); 8 and later no longer
    know the flag and print the version at once: so the flag first, then without it."""
    if not os.path.exists(os.path.join(release_dir, "bin", "mattermost")):
        return None
    config = config or os.path.join(release_dir, "config", "config.json")
    if not os.path.exists(config):
        config = os.path.join(release_dir, "config.dist", "config.json")
    for args in (("version", "--skip-server-start"), ("version",)):
        found = parse_version_output(run_release_binary(release_dir, config, user, *args).stdout)
        if found:
            return found
    return None


def _user_exists(user):
    try:
        pwd.getpwnam(user)
        return True
    except KeyError:
        return False


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def link_release(link, target):
    tmp = f"{link}.new-link"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, link)


def wait_healthy(spec):
    deadline = time.time() + spec["timeout"]
    last, shown = None, 0.0
    while True:
        result = ping(spec["url"])
        if result["ok"] and result["version"] == spec["version"]:
            print(f"Mattermost {result['version']} is healthy")
            return
        last = result["error"] or f"running version {result['version']}, expected {spec['version']}"
        if time.time() > deadline:
            raise Failure(f"Mattermost is not healthy after {spec['timeout']}s ({last}): "
                          f"see `journalctl -u {spec.get('service', 'mattermost')} -n 50`")
        if time.time() - shown > 10:
            print(f"  waiting for a healthy ping: {last}", flush=True)
            shown = time.time()
        time.sleep(0.5)


def dir_size(path):
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


ERROR_LEVELS = ("error", "fatal", "critical", "panic")
SYSTEMD_GENERIC = ("Failed to start ", "Failed with result", "Scheduled restart job", "Stopped ", "Starting ",
                   "Consumed ", "Deactivated successfully")


def last_error(lines):
    """The last error a unit's journal gives, in one line: Mattermost's own (its JSON log
    lines: msg and error; or the plain console form `error [time] msg err=...`), else
    systemd's last specific word about the unit (how its process exited)."""
    fallback = None
    for line in reversed([line.strip() for line in lines if line.strip()]):
        if line.startswith("{"):
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if str(entry.get("level", "")).lower() in ERROR_LEVELS:
                detail = entry.get("error") or entry.get("err")
                return f"{entry.get('msg', '').strip()}{': ' + str(detail) if detail else ''}"[:400]
            continue
        plain = re.match(r"^(?:error|fatal|critical|panic)\s+\[[^\]]*\]\s+(?P<rest>.*)$", line, re.I)
        if plain:
            return plain.group("rest")[:400]
        if fallback is None and not any(word in line for word in SYSTEMD_GENERIC):
            fallback = line[:400]
    return fallback or "its journal says nothing more"


def journal_error(service, since=None):
    """The last error in the unit's journal (since a time, when given)."""
    cmd = ["journalctl", "-u", service, "--no-pager", "-o", "cat", "-n", "300"]
    if since:
        cmd += ["--since", f"@{int(since) - 1}"]
    return last_error(subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines())


def unit_name(service):
    return service if "." in service else f"{service}.service"


def start_service(spec):
    """(Re)start the service and wait for a healthy ping of the wanted version; a failure
    names the unit and the last error its journal gives."""
    service, since = spec.get("service", "mattermost"), time.time()
    try:
        result = subprocess.run(["systemctl", "restart" if spec.get("restart", True) else "start", service],
                                capture_output=True, text=True, timeout=spec.get("start_timeout", 3600))
    except subprocess.TimeoutExpired:
        raise Failure(f"{unit_name(service)} did not report ready within {spec.get('start_timeout', 3600)}s: "
                      f"{journal_error(service, since)}") from None
    if result.returncode != 0:
        raise Failure(f"{unit_name(service)} failed to start: {journal_error(service, since)}")
    try:
        wait_healthy(spec)
    except Failure as e:
        raise Failure(f"{e}; the last error of {unit_name(service)}: {journal_error(service, since)}") from None


def journal_tail(service, lines=8):
    out = subprocess.run(["journalctl", "-u", service, "-n", str(lines), "--no-pager", "-o", "cat"],
                         capture_output=True, text=True).stdout
    return out.strip()


def start_and_verify(spec, version):
    """Start and wait: `systemctl start` returns once a Type=notify service is ready
    (migrations included, up to start_timeout) or has failed; then a healthy ping."""
    service = spec["service"]
    try:
        result = subprocess.run(["systemctl", "start", service], capture_output=True, text=True,
                                timeout=spec.get("start_timeout", 3600))
    except subprocess.TimeoutExpired:
        raise Failure(f"Mattermost {version} did not report ready within {spec.get('start_timeout', 3600)}s") from None
    if result.returncode != 0:
        print("  last lines of its log:\n    " + journal_tail(service).replace("\n", "\n    "), flush=True)
        raise Failure(f"Mattermost {version} failed to start ({unit_name(service)}: {journal_error(service)}; "
                      f"see `journalctl -u {service}`)")
    wait_healthy({"url": spec["ping_url"], "version": version, "timeout": spec["timeout"], "service": service})


def write_hold(path, version, reason):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"version": version, "reason": reason[:300],
                   "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, f)


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
