#!/usr/bin/python3
"""Server-side helper of the Mattermost deploy (installed by the deploy; stdlib only).

pyinfra runs it over SSH for the steps that must happen ON the server and must not leave
it half-done: reading the server's state in one round trip, downloading and verifying a
release before anything is unpacked, merging the deploy's keys into config.json,
adopting a hand-installed /opt/mattermost, waiting for a healthy ping.

Every subcommand either completes or leaves the server as it was, and ends a failure
with one line `ERROR: what happened: what to do`. Secrets (the database password) are
read from root-only files and never printed or put on a command line.

    mmhelper.py state QUERY_JSON
    mmhelper.py fetch-release SPEC_JSON
    mmhelper.py adopt SPEC_JSON
    mmhelper.py db-password PASSWORD_FILE
    mmhelper.py database SPEC_JSON
    mmhelper.py merge-config SPEC_JSON
    mmhelper.py switch SPEC_JSON
    mmhelper.py wait-healthy SPEC_JSON
    mmhelper.py backup SPEC_JSON|@FILE
    mmhelper.py upgrade SPEC_JSON
    mmhelper.py restore SPEC_JSON
    mmhelper.py rollback SPEC_JSON
    mmhelper.py unhold SPEC_JSON
    mmhelper.py patch-lock|patch-upgrade|patch-restart|patch-mark|patch-finish SPEC_JSON
    mmhelper.py acme-issue SPEC_JSON
    mmhelper.py housekeeping|bot-token|emoji-upload|export|retention SPEC_JSON
"""

import contextlib
import fcntl
import fnmatch
import grp
import hashlib
import http.client
import json
import os
import pwd
import re
import secrets
import shutil
import socket
import stat
import string
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

HELPER_VERSION = 1
MASK = "********"


class Failure(Exception):
    """A failure the operator can act on: printed as one line, exit status 1."""


# ================================================================== pure functions (unit-tested)

SECRET_KEYS = ("DataSource", "DataSourceReplicas", "DataSourceSearchReplicas", "AtRestEncryptKey",
               "PublicLinkSalt", "SMTPPassword", "Secret", "AmazonS3SecretAccessKey", "Password")


def is_secret_key(dotted):
    return any(dotted.split(".")[-1].endswith(k) for k in SECRET_KEYS)


def parse_datasource(value):
    """postgres://user:pw@host:port/db?params -> parts; the password is kept separately."""
    url = urllib.parse.urlsplit(value or "")
    if url.scheme not in ("postgres", "postgresql"):
        return None
    return {
        "user": urllib.parse.unquote(url.username or ""),
        "password": urllib.parse.unquote(url.password or ""),
        "host": url.hostname or "localhost",
        "port": url.port or 5432,
        "database": url.path.lstrip("/"),
        "params": url.query,
    }


def build_datasource(spec, password):
    """The DataSource Mattermost's install guide describes, from non-secret parts + password."""
    return "postgres://{}:{}@{}:{}/{}?{}".format(
        urllib.parse.quote(spec["user"], safe=""), urllib.parse.quote(password, safe=""),
        spec["host"], spec["port"], urllib.parse.quote(spec["database"], safe=""), spec["params"])


def mask_datasource(value):
    parts = parse_datasource(value)
    if not parts:
        return MASK
    return "postgres://{}:{}@{}:{}/{}?{}".format(parts["user"], MASK, parts["host"], parts["port"],
                                                 parts["database"], parts["params"])


def resolve_desired(desired, password):
    """Replace {"$datasource": {...}} markers with the real DataSource."""
    resolved = {}
    for key, value in desired.items():
        if isinstance(value, dict) and "$datasource" in value:
            if password is None:
                raise Failure("no database password on the server yet: run the full deploy "
                              "(it creates one), or set MATTERMOST_DB_PASSWORD")
            value = build_datasource(value["$datasource"], password)
        resolved[key] = value
    return resolved


def get_dotted(config, dotted):
    node = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None, False
        node = node[part]
    return node, True


def set_dotted(config, dotted, value):
    parts = dotted.split(".")
    node = config
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def applicable(config, desired):
    """The owned keys that apply to this config. A value marked {"$if_section": v} is owned
    only where the config has that section: Mattermost drops sections a version no longer
    knows (e.g. NotificationLogSettings, gone in v11) when it saves, so owning one there
    would never converge."""
    result = {}
    for key, value in desired.items():
        if isinstance(value, dict) and "$if_section" in value:
            if key.split(".")[0] not in config:
                continue
            value = value["$if_section"]
        result[key] = value
    return result


def config_differences(config, desired):
    """Keys of `desired` whose value in `config` differs (missing counts as different)."""
    def same(a, b):  # JSON equality: 0 is not false, 1 is not "1"
        return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)

    result = []
    for key, value in applicable(config, desired).items():
        current, present = get_dotted(config, key)
        if not present or not same(current, value):
            result.append(key)
    return sorted(result)


def merge_config(config, desired):
    """Set only the owned keys; every other setting stays as the admin left it."""
    changed = config_differences(config, desired)
    desired = applicable(config, desired)
    for key in changed:
        set_dotted(config, key, desired[key])
    return changed


def display_value(key, value):
    if value is None:
        return None
    if key.endswith("DataSource") and isinstance(value, str):
        return mask_datasource(value)
    if is_secret_key(key):
        return MASK
    return value


def parse_gpg_status(status_text, pinned_fingerprint):
    """Decide from `gpg --status-fd` output whether a signature is good and made by the
    pinned key. Returns None when good, else the reason as a sentence."""
    pinned = pinned_fingerprint.replace(" ", "").upper()
    tokens = [line.split()[1:] for line in status_text.splitlines() if line.startswith("[GNUPG:] ")]
    kinds = {t[0]: t[1:] for t in tokens if t}
    if "EXPKEYSIG" in kinds:
        return ("the signing key has expired: refresh it (Mattermost extends its expiry; "
                "check mattermost_signing_key_url) - verification is never skipped")
    if "REVKEYSIG" in kinds:
        return "the signing key has been revoked"
    if "EXPSIG" in kinds:
        return "the signature has expired"
    if "BADSIG" in kinds:
        return "BAD signature: the file does not match its signature (corrupt or tampered download)"
    if "ERRSIG" in kinds or "NO_PUBKEY" in kinds:
        return "the signature was not made by the pinned signing key"
    if "VALIDSIG" not in kinds or "GOODSIG" not in kinds:
        return "no valid signature found"
    valid = kinds["VALIDSIG"]
    primary = (valid[9] if len(valid) > 9 else valid[0]).upper()
    if primary != pinned and valid[0].upper() != pinned:
        return f"signed by key {primary}, not by the pinned key {pinned}"
    return None


def password_digest(password, salt):
    """A slow salted digest, so the workstation can tell whether the password it holds is
    the one on the server without the password (or a cheap hash of it) crossing over."""
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), 200_000).hex()


def parse_version_output(text):
    match = re.search(r"^Version:\s*(\d+\.\d+\.\d+)", text, re.M)
    return match.group(1) if match else None


def parse_version_header(value):
    """X-Version-Id: {Version}.{BuildNumber}.{ConfigHash}.{Enterprise} -> Version."""
    match = re.match(r"^(\d+\.\d+\.\d+)(?:\.|$)", value or "")
    return match.group(1) if match else None


def check_tar_members(members):
    """Refuse a release whose files would land outside mattermost/ or that holds devices."""
    for m in members:
        name = m.name
        if name.startswith("/") or ".." in name.split("/"):
            raise Failure(f"release archive holds an unsafe path {name!r}: refusing to unpack")
        if not (name == "mattermost" or name.startswith("mattermost/")):
            raise Failure(f"release archive has {name!r} outside mattermost/: not a Mattermost release")
        if not (m.isfile() or m.isdir() or m.issym()):
            raise Failure(f"release archive holds a special file {name!r}: refusing to unpack")
        if m.issym() and (m.linkname.startswith("/") or ".." in m.linkname.split("/")):
            raise Failure(f"release archive holds a link {name!r} pointing outside: refusing")
    if not any(m.name == "mattermost/bin/mattermost" for m in members):
        raise Failure("release archive has no mattermost/bin/mattermost: not a Mattermost release")


def parse_checksum_file(text, filename):
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 1 and re.fullmatch(r"[0-9a-fA-F]{64}", parts[0]):
            return parts[0].lower()
        if len(parts) >= 2 and parts[-1].lstrip("*") == filename:
            return parts[0].lower()
    return None


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


# ================================================================== small system helpers

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


def psql_as_postgres(sql, database="postgres"):
    return run(["runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-t", "-A",
                "-v", "ON_ERROR_STOP=1", "-d", database], input=sql)


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


# ================================================================== state (the deploy's one fact)

def run_release_binary(release_dir, config, user, *args, env=None, in_release=False):
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
                              timeout=120)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def installed_version(release_dir, user):
    """What a release's own binary says it is."""
    if not os.path.exists(os.path.join(release_dir, "bin", "mattermost")):
        return None
    config = os.path.join(release_dir, "config", "config.json")
    if not os.path.exists(config):
        config = os.path.join(release_dir, "config.dist", "config.json")
    return parse_version_output(run_release_binary(release_dir, config, user, "version").stdout)


def _user_exists(user):
    try:
        pwd.getpwnam(user)
        return True
    except KeyError:
        return False


def state(query):
    out = {"helper_version": HELPER_VERSION}
    osr = {}
    with contextlib.suppress(OSError), open("/etc/os-release") as f:
        for line in f:
            key, _, value = line.strip().partition("=")
            osr[key] = value.strip('"')
    out["os"] = {"id": osr.get("ID"), "version_id": osr.get("VERSION_ID"), "codename": osr.get("VERSION_CODENAME")}

    wanted = query.get("packages", [])
    installed = set()
    if wanted:
        result = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${db:Status-Status}\n", *wanted],
                                capture_output=True, text=True)
        installed = {line.split()[0] for line in result.stdout.splitlines() if line.endswith(" installed")}
    out["packages_missing"] = [p for p in wanted if p not in installed]

    user = query.get("user", "mattermost")
    out["user_exists"] = _user_exists(user)
    out["paths"] = {p: file_info(p) for p in query.get("paths", [])}

    # The release in use and the releases on disk.
    install_dir, releases_dir = query["install_dir"], query["releases_dir"]
    info = file_info(install_dir)
    install = {"kind": info["type"] if info else "missing"}
    if install["kind"] == "link":
        target = os.path.realpath(install_dir)
        install["target"] = target
        if os.path.dirname(target) == os.path.realpath(releases_dir):
            install["version"] = os.path.basename(target)
    elif install["kind"] == "dir":
        install["version"] = installed_version(install_dir, user)
        install["adoption"] = adoption_facts(install_dir)
    out["install"] = install
    releases, staging = [], []
    with contextlib.suppress(FileNotFoundError):
        for name in sorted(os.listdir(releases_dir)):
            (staging if name.startswith(".") else releases).append(name)
    out["releases"], out["staging_leftovers"] = releases, staging

    # config.json: which owned keys differ (values shown masked, for --diff).
    password = read_password(query["password_file"])
    salt = secrets.token_hex(16)
    out["password"] = {"exists": password is not None, "salt": salt,
                       "digest": password_digest(password, salt) if password else None}
    config_file = query["config_file"]
    config_out = {"exists": os.path.exists(config_file), "differs": [], "current": {}}
    if config_out["exists"]:
        try:
            with open(config_file) as f:
                config = json.load(f)
            desired = resolve_desired(query.get("desired_config", {}), password or "")
            config_out["differs"] = config_differences(config, desired)
            config_out["current"] = {k: display_value(k, get_dotted(config, k)[0]) for k in config_out["differs"]}
        except ValueError as e:
            config_out["error"] = f"{config_file} is not valid JSON: {e}"
    out["config"] = config_out

    # PostgreSQL: role, database, and whether the password in the file logs in.
    db = query["db"]
    db_out = {"server_active": systemctl("is-active", "postgresql").stdout.strip() == "active"}
    if db_out["server_active"] and shutil.which("psql"):
        result = psql_as_postgres(
            f"SELECT 'role', rolname FROM pg_roles WHERE rolname = {literal(db['user'])} UNION ALL "
            f"SELECT 'db', pg_get_userbyid(datdba) FROM pg_database WHERE datname = {literal(db['name'])};")
        rows = dict(line.split("|", 1) for line in result.stdout.splitlines() if "|" in line)
        db_out["role_exists"] = "role" in rows
        db_out["db_exists"] = "db" in rows
        db_out["db_owner"] = rows.get("db")
        spec = {"user": db["user"], "database": db["name"], "host": db.get("host", "localhost"),
                "port": db.get("port", 5432)}
        db_out["login_ok"] = bool(password) and db_out["db_exists"] and psql_login_ok(spec, password)
    out["db"] = db_out

    service = query.get("service", "mattermost")
    out["service"] = {
        "enabled": systemctl("is-enabled", service).stdout.strip(),
        "active": systemctl("is-active", service).stdout.strip(),
        "need_reload": unit_property(service, "NeedDaemonReload") == "yes",
    }
    out["nginx"] = {"active": systemctl("is-active", "nginx").stdout.strip()}
    out["firewall"] = {
        "table": bool(shutil.which("nft")) and subprocess.run(
            ["nft", "list", "table", "inet", "mattermost_deploy"], capture_output=True).returncode == 0,
        "enabled": systemctl("is-enabled", "nftables").stdout.strip(),
    }
    out["backup_timer"] = {"enabled": systemctl("is-enabled", "mattermost-backup.timer").stdout.strip(),
                           "active": systemctl("is-active", "mattermost-backup.timer").stdout.strip()}
    out["hold"] = read_json(query["hold_file"]) if query.get("hold_file") else None
    if query.get("os"):
        out["os_updates"] = os_state(query["os"])
    if query.get("housekeeping"):
        out["housekeeping"] = housekeeping_state(query["housekeeping"])
    if query.get("ssh_admin_user"):
        out["ssh"] = ssh_admin_state(query["ssh_admin_user"])
    if query.get("acme_domain"):
        out["acme"] = acme_state(query["acme_domain"])
    names = backup_names(query["backup_dir"]) if query.get("backup_dir") else []
    out["backups"] = {"count": len(names), "newest": names[-1] if names else None,
                      "newest_manifest": read_json(os.path.join(query["backup_dir"], names[-1], "manifest.json"))
                      if names else None}
    out["health"] = ping(query["ping_url"]) if out["service"]["active"] == "active" else {
        "ok": False, "error": "service not running", "version": None}
    return out


def ssh_admin_state(user):
    try:
        home = pwd.getpwnam(user).pw_dir
    except KeyError:
        return {"admin_exists": False, "admin_keys": None}
    keys = None
    with contextlib.suppress(OSError), open(os.path.join(home, ".ssh", "authorized_keys")) as f:
        keys = f.read()
    return {"admin_exists": True, "admin_keys": keys}


def adoption_facts(install_dir):
    """What a hand-installed /opt/mattermost holds (no secrets)."""
    facts = {"config": None}
    config_file = os.path.join(install_dir, "config", "config.json")
    if os.path.exists(config_file):
        with open(config_file) as f:
            config = json.load(f)
        ds = parse_datasource(get_dotted(config, "SqlSettings.DataSource")[0])
        facts["config"] = config_file
        facts["datasource"] = {k: v for k, v in (ds or {}).items() if k != "password"} or None
        facts["has_password"] = bool(ds and ds["password"])
        facts["files_dir"] = get_dotted(config, "FileSettings.Directory")[0]
        facts["driver"] = get_dotted(config, "FileSettings.DriverName")[0]
    return facts


# ================================================================== fetch-release

def download(url, dest, what):
    request = urllib.request.Request(url, headers={"User-Agent": "mattermost-deploy"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response, open(dest, "wb") as f:
            total = int(response.headers.get("Content-Length") or 0)
            done, next_report = 0, 0.25
            while True:
                chunk = response.read(1 << 20)
                if not chunk:
                    break
                f.write(chunk)
                done += len(chunk)
                if total > 10 << 20 and done / total >= next_report:
                    print(f"  {what}: {done * 100 // total}% of {total >> 20} MB", flush=True)
                    next_report += 0.25
            if total and done != total:
                raise Failure(f"download of {url} stopped after {done} of {total} bytes: try again")
    except urllib.error.HTTPError as e:
        if e.code == 404:
            raise Failure(f"{what} not found at {url} (HTTP 404): check mattermost_version "
                          "and mattermost_release_url") from None
        raise Failure(f"download of {url} failed (HTTP {e.code}): the release server or mirror "
                      "has a problem; try again later") from None
    except (urllib.error.URLError, OSError) as e:
        raise Failure(f"cannot download {url} ({getattr(e, 'reason', e)}): check the server's "
                      "network and mattermost_release_url") from None


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fetch_release(spec):
    """Download, verify (checksum when known, signature always) and unpack one release
    into releases_dir/VERSION. Nothing is unpacked before both checks pass; on any
    failure the staging folder is removed and no release folder appears."""
    version, releases_dir = spec["version"], spec["releases_dir"]
    final = os.path.join(releases_dir, version)
    if os.path.isdir(final):
        print(f"release {version} is already unpacked")
        return
    os.makedirs(releases_dir, mode=0o755, exist_ok=True)
    for name in os.listdir(releases_dir):
        if name.startswith(".staging-"):
            shutil.rmtree(os.path.join(releases_dir, name), ignore_errors=True)
    staging = tempfile.mkdtemp(prefix=f".staging-{version}-", dir=releases_dir)
    try:
        _fetch_into(spec, staging)
        os.rename(os.path.join(staging, "mattermost"), final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"release {version} verified and unpacked into {final}")


def _fetch_into(spec, staging):
    version = spec["version"]
    tarball = os.path.join(staging, os.path.basename(urllib.parse.urlsplit(spec["url"]).path))
    sig = tarball + ".sig"

    # Preflight: room for the download and the unpacked copy.
    with contextlib.suppress(OSError, ValueError):
        request = urllib.request.Request(spec["url"], method="HEAD", headers={"User-Agent": "mattermost-deploy"})
        with urllib.request.urlopen(request, timeout=30) as response:
            size = int(response.headers.get("Content-Length") or 0)
            need, have = 3 * size, free_bytes(staging)
            if size and have < need:
                raise Failure(f"not enough free disk in {spec['releases_dir']}: need {need >> 20} MB "
                              f"for release {version}, have {have >> 20} MB; free some space")

    # The signing key: refreshed from its URL, accepted only with the pinned fingerprint.
    gnupg = os.path.join(staging, "gnupg")
    os.mkdir(gnupg, 0o700)
    key_file = os.path.join(staging, "signing-key.asc")
    cached_key = spec.get("key_cache")
    try:
        download(spec["key_url"], key_file, "signing key")
    except Failure as e:
        if not (cached_key and os.path.exists(cached_key)):
            raise
        print(f"  warning: {e}; using the cached signing key", flush=True)
        shutil.copyfile(cached_key, key_file)
    gpg = ["gpg", "--homedir", gnupg, "--batch", "--no-tty", "--no-autostart"]
    run(gpg + ["--import", key_file])
    listing = run(gpg + ["--with-colons", "--fingerprint"]).stdout
    fingerprints = [line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:")]
    pinned = spec["fingerprint"].replace(" ", "").upper()
    if pinned not in (f.upper() for f in fingerprints):
        raise Failure(f"the key at {spec['key_url']} is not the pinned signing key {pinned} "
                      f"(it has {', '.join(fingerprints) or 'no keys'}): check mattermost_signing_key_url")
    if cached_key:
        shutil.copyfile(key_file, cached_key)

    print(f"  downloading Mattermost {version} from {spec['url']}", flush=True)
    download(spec["url"], tarball, f"release {version}")
    download(spec["sig_url"], sig, f"signature of release {version}")

    h = hashlib.sha256()
    with open(tarball, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    actual = h.hexdigest()
    expected = spec.get("sha256")
    if not expected and spec.get("checksum_url"):
        checksum_file = tarball + ".sha256"
        download(spec["checksum_url"], checksum_file, f"checksum of release {version}")
        with open(checksum_file) as f:
            expected = parse_checksum_file(f.read(), os.path.basename(tarball))
        if not expected:
            raise Failure(f"{spec['checksum_url']} has no SHA-256 for {os.path.basename(tarball)}")
    if expected and expected.lower() != actual:
        raise Failure(f"SHA-256 mismatch for {os.path.basename(tarball)}: expected {expected}, got "
                      f"{actual}; the download is corrupt or tampered - nothing was installed")
    print(f"  SHA-256 {actual} {'matches' if expected else '(no published checksum to compare)'}", flush=True)

    result = subprocess.run(gpg + ["--status-fd", "1", "--verify", sig, tarball],
                            capture_output=True, text=True)
    problem = parse_gpg_status(result.stdout, pinned)
    if problem or result.returncode != 0:
        raise Failure(f"signature check of release {version} failed: "
                      f"{problem or result.stderr.strip()[-200:]}; nothing was installed")
    print(f"  signature good, made by the pinned key {pinned}", flush=True)

    with tarfile.open(tarball) as tar:
        check_tar_members(tar.getmembers())
        tar.extractall(staging, numeric_owner=True)
    os.unlink(tarball)
    release = os.path.join(staging, "mattermost")
    _wire_release(release, spec)
    # Root owns the release; the service user may read and run it, never change it.
    for root, dirs, files in os.walk(release):
        for name in dirs + files:
            path = os.path.join(root, name)
            os.lchown(path, 0, 0)
            if not os.path.islink(path):
                os.chmod(path, os.stat(path).st_mode & ~0o022)
    os.chown(release, 0, 0)
    os.chmod(release, 0o755)
    client_writable({"release_dir": release, "user": spec["user"]})
    os.chmod(staging, 0o755)
    found = installed_version(release, spec["user"])
    if found != version:
        raise Failure(f"the release downloaded for {version} says it is version {found}: "
                      "check mattermost_release_url")
    with open(os.path.join(release, ".mattermost-deploy.json"), "w") as f:
        json.dump({"version": version, "sha256": actual, "signed_by": pinned,
                   "source": spec["url"], "unpacked_at": int(time.time())}, f, indent=1)


def _wire_release(release, spec):
    """Point the release's state folders at their places outside it, before it is
    published: the release folder is never changed after this, and the familiar paths
    (`/opt/mattermost/config/config.json`, `data/`, `logs/`) keep working."""
    config = os.path.join(release, "config")
    if os.path.isdir(config) and not os.path.islink(config):
        os.rename(config, os.path.join(release, "config.dist"))
    client_plugins = os.path.join(release, "client", "plugins")
    if os.path.isdir(client_plugins) and not os.path.islink(client_plugins):
        os.rename(client_plugins, os.path.join(release, "client", "plugins.dist"))
    for name, target in spec["links"].items():
        path = os.path.join(release, name)
        if os.path.lexists(path):
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.symlink(target, path)


def client_files(release_dir):
    """The web app files Mattermost rewrites at start for the SiteURL's path and its
    Content-Security-Policy (channels/utils/subpath.go, UpdateAssetsSubpathInDir): root.html,
    every manifest.json and *.css under client/ (client/plugins is a link and not followed)."""
    client = os.path.join(release_dir, "client")
    found = []
    for root, dirs, files in os.walk(client):
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]
        for name in files:
            if name in ("root.html", "manifest.json") or name.endswith(".css"):
                if root == client or name != "root.html":
                    found.append(os.path.join(root, name))
    return found


def client_writable(spec):
    """Give those files (only those) to the service user, so Mattermost can do what it does
    at every start; the unit makes <install_dir>/client writable for it. Everything else in
    the release stays root's and read-only."""
    account = pwd.getpwnam(spec["user"])
    changed = 0
    for path in client_files(spec["release_dir"]):
        st = os.lstat(path)
        if (st.st_uid, st.st_gid) != (account.pw_uid, account.pw_gid):
            os.chown(path, account.pw_uid, account.pw_gid)
            changed += 1
    print(f"web app files Mattermost rewrites at start: {changed} given to {spec['user']}")


# ================================================================== adoption of a hand install

def adopt(spec):
    """Move a hand-installed /opt/mattermost (official tarball guide) into the managed
    layout: config, data, plugins and logs are copied into the state folders, the old
    folder is renamed (kept until the operator deletes it) and /opt/mattermost becomes
    the link to the verified release. Undone completely when a step fails."""
    install_dir, state_dir, log_dir = spec["install_dir"], spec["state_dir"], spec["log_dir"]
    if os.path.islink(install_dir) or not os.path.isdir(install_dir):
        print(f"{install_dir} is not a hand-installed folder; nothing to adopt")
        return
    old_config = os.path.join(install_dir, "config", "config.json")
    if not os.path.exists(old_config):
        raise Failure(f"{install_dir} has no config/config.json: not a Mattermost install this deploy can adopt")
    with open(old_config) as f:
        config = json.load(f)
    ds = parse_datasource(get_dotted(config, "SqlSettings.DataSource")[0])
    if not ds:
        raise Failure(f"{old_config} has no PostgreSQL DataSource: only PostgreSQL installs can be adopted")
    files_dir = get_dotted(config, "FileSettings.Directory")[0] or "./data/"
    data_src = os.path.normpath(os.path.join(install_dir, files_dir))
    if not data_src.startswith(install_dir.rstrip("/") + "/"):
        raise Failure(f"FileSettings.Directory is {files_dir}, outside {install_dir}: set "
                      "mattermost_config 'FileSettings.Directory' to it before adopting")

    stamp = time.strftime("%Y%m%d-%H%M%S")
    kept = f"{install_dir}.adopted-{stamp}"
    user = pwd.getpwnam(spec["user"])
    service = spec.get("service", "mattermost")
    was_active = systemctl("is-active", service).stdout.strip() == "active"
    copied = []
    print(f"  stopping {service} to take a consistent copy", flush=True)
    systemctl("stop", service)
    try:
        # Copies, never hard links: Mattermost rewrites some stored files in place (O_TRUNC in
        # platform/shared/filestore/localstore.go), which would change the kept old folder too.
        # --reflink=auto makes the copy instant where the file system can share blocks.
        pairs = [
            (os.path.join(install_dir, "config"), os.path.join(state_dir, "config")),
            (data_src, os.path.join(state_dir, "data")),
            (os.path.join(install_dir, "plugins"), os.path.join(state_dir, "plugins")),
            (os.path.join(install_dir, "client", "plugins"), os.path.join(state_dir, "client-plugins")),
            (os.path.join(install_dir, "logs"), log_dir),
        ]
        for src, dest in pairs:
            if not os.path.isdir(src):
                continue
            if os.path.isdir(dest) and os.listdir(dest):
                raise Failure(f"{dest} is not empty: adoption would mix two installs; move it away first")
            print(f"  copying {src} -> {dest}", flush=True)
            os.makedirs(dest, exist_ok=True)
            copied.append(dest)
            dest_mode = stat.S_IMODE(os.stat(dest).st_mode)
            run(["cp", "-a", "--reflink=auto", "--", src + "/.", dest])
            run(["chown", "-R", f"{user.pw_uid}:{user.pw_gid}", dest])
            os.chmod(dest, dest_mode)  # cp -a carried the old folder's mode over
        # The password goes where the deploy keeps it; the role keeps working unchanged.
        if ds["password"] and read_password(spec["password_file"]) is None:
            write_private(spec["password_file"], ds["password"] + "\n")
        unit = spec.get("unit_file")
        if unit and os.path.exists(unit):
            shutil.copy2(unit, os.path.join(install_dir, os.path.basename(unit) + ".orig"))
        os.rename(install_dir, kept)
        link_release(install_dir, os.path.join(spec["releases_dir"], spec["version"]))
    except BaseException:
        print("  adoption failed: putting the old install back", flush=True)
        if os.path.islink(install_dir):
            os.unlink(install_dir)
        if os.path.isdir(kept) and not os.path.exists(install_dir):
            os.rename(kept, install_dir)
        for dest in copied:
            shutil.rmtree(dest, ignore_errors=True)
            os.makedirs(dest, exist_ok=True)
        if was_active:
            systemctl("start", service)
        raise
    print(f"adopted {install_dir}; the old folder is kept as {kept} - delete it once you are satisfied")


def link_release(link, target):
    tmp = f"{link}.new-link"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, link)


# ================================================================== database

def db_password(path):
    """Generate the database password once, on the server, readable by root only."""
    if read_password(path):
        print("database password already present")
        return
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    alphabet = string.ascii_letters + string.digits
    write_private(path, "".join(secrets.choice(alphabet) for _ in range(32)) + "\n")
    print(f"generated a database password in {path} (root only)")


def database(spec):
    """Role with the password from the root-only file (fed on stdin, never on a command
    line), and the database owned by it."""
    password = read_password(spec["password_file"])
    if not password:
        raise Failure(f"{spec['password_file']} is missing or empty: run the full deploy")
    user, name = spec["user"], spec["name"]
    role_exists = psql_as_postgres(f"SELECT 1 FROM pg_roles WHERE rolname = {literal(user)};").stdout.strip()
    verb = "ALTER" if role_exists else "CREATE"
    psql_as_postgres(f"{verb} ROLE {ident(user)} WITH LOGIN PASSWORD {literal(password)};")
    if not database_exists(name):
        psql_as_postgres(f"CREATE DATABASE {ident(name)} WITH OWNER {ident(user)} ENCODING 'UTF8' "
                         "LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8' TEMPLATE template0;")
    else:
        psql_as_postgres(f"ALTER DATABASE {ident(name)} OWNER TO {ident(user)};")
    psql_as_postgres(f"GRANT ALL ON SCHEMA public TO {ident(user)};", database=name)
    print(f"role {user} and database {name} are in place")


# ================================================================== config.json

def merge_config_file(spec):
    """Merge the owned keys into config.json; seeded from the release defaults on a
    fresh install. Written atomically, 0600, owned by the service user; only when a key
    differs. Prints the names of the keys it set, never their values."""
    with open(spec["desired_file"]) as f:
        desired = resolve_desired(json.load(f), read_password(spec["password_file"]))
    path = spec["config_file"]
    if os.path.exists(path):
        with open(path) as f:
            try:
                config = json.load(f)
            except ValueError as e:
                raise Failure(f"{path} is not valid JSON ({e}): fix or restore it, then re-run") from None
    else:
        with open(spec["seed_file"]) as f:
            config = json.load(f)
        print(f"  new {path} from the release defaults", flush=True)
    changed = merge_config(config, desired)
    user = pwd.getpwnam(spec["user"])
    if changed or not os.path.exists(path):
        write_private(path, json.dumps(config, indent=4) + "\n", user.pw_uid, user.pw_gid)
    else:
        os.chown(path, user.pw_uid, user.pw_gid)
        os.chmod(path, 0o600)
    print("config.json: set " + (", ".join(changed) if changed else "nothing"))


# ================================================================== switch, health

def switch(spec):
    link, target = spec["install_dir"], os.path.join(spec["releases_dir"], spec["version"])
    if not os.path.isdir(target):
        raise Failure(f"release folder {target} is missing: the download step did not run")
    if os.path.exists(link) and not os.path.islink(link):
        raise Failure(f"{link} is a real folder: it must be adopted first (run the full deploy)")
    link_release(link, target)
    print(f"{link} -> {target}")


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


# ================================================================== backups, upgrade, restore

BACKUP_NAME = re.compile(r"^\d{8}-\d{6}-\d+\.\d+\.\d+-[a-z-]+$")


def backup_names(backup_dir):
    """Published backups, oldest first (names start with their UTC time)."""
    try:
        names = os.listdir(backup_dir)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if BACKUP_NAME.match(n)
                  and os.path.exists(os.path.join(backup_dir, n, "manifest.json")))


def prune_backups(backup_dir, keep):
    names = backup_names(backup_dir)
    for name in names[:max(0, len(names) - keep)]:
        shutil.rmtree(os.path.join(backup_dir, name), ignore_errors=True)
        print(f"  removed old backup {name} (keeping {keep})", flush=True)


def prune_releases(releases_dir, keep, in_use):
    versions = sorted((v for v in os.listdir(releases_dir) if re.fullmatch(r"\d+\.\d+\.\d+", v)),
                      key=lambda v: tuple(int(x) for x in v.split(".")))
    for version in versions[:max(0, len(versions) - keep)]:
        if version not in in_use:
            shutil.rmtree(os.path.join(releases_dir, version), ignore_errors=True)
            print(f"  removed old release folder {version} (keeping {keep})", flush=True)


def dir_size(path):
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def database_size(name):
    out = psql_as_postgres(f"SELECT pg_database_size({literal(name)});").stdout.strip()
    return int(out or 0)


def pg_dump(database_name, dest):
    """pg_dump -Fc as the postgres user, written by root into a root-only file."""
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        result = subprocess.run(["runuser", "-u", "postgres", "--", "pg_dump", "-Fc", "-d", database_name],
                                stdout=f, stderr=subprocess.PIPE, text=False)
    if result.returncode != 0:
        raise Failure(f"pg_dump of {database_name} failed: {result.stderr.decode(errors='replace').strip()[-300:]}")


def snapshot_data(data_dir, dest, previous=None):
    """A copy of the data folder that never shares a file with the live one: Mattermost's
    local file store rewrites files in place (os.O_TRUNC in platform/shared/filestore/
    localstore.go: profile images, plugin bundles), so a hard link into the live folder would
    change the backup with it. A file unchanged since the `previous` backup's copy (same
    size and modification time) is hard-linked to THAT copy instead (rsync --link-dest
    style): backups share files only among themselves, and nothing writes into a backup."""
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    if not os.path.isdir(data_dir):
        os.makedirs(dest)
        return {"copied": 0, "linked": 0}
    counts = {"copied": 0, "linked": 0}
    same_fs = previous and os.path.isdir(previous) and os.stat(previous).st_dev == os.stat(os.path.dirname(dest)).st_dev
    for root, dirs, files in os.walk(data_dir):
        rel = os.path.relpath(root, data_dir)
        target = os.path.normpath(os.path.join(dest, rel))
        os.makedirs(target, exist_ok=True)
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            src, dst = os.path.join(root, name), os.path.join(target, name)
            st = os.lstat(src)
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(src), dst)
                os.lchown(dst, st.st_uid, st.st_gid)
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            old = os.path.join(previous, rel, name) if same_fs else None
            try:
                old_st = os.lstat(old) if old else None
            except FileNotFoundError:
                old_st = None
            if (old_st and stat.S_ISREG(old_st.st_mode) and old_st.st_size == st.st_size
                    and old_st.st_mtime_ns == st.st_mtime_ns):
                os.link(old, dst)
                counts["linked"] += 1
                continue
            try:
                shutil.copy2(src, dst)
            except FileNotFoundError:  # removed while we copied (the server keeps serving)
                continue
            os.chown(dst, st.st_uid, st.st_gid)
            counts["copied"] += 1
    # Folders last: their owners, modes and times as in the source.
    for root, dirs, _ in os.walk(data_dir, topdown=False):
        for path in [root] + [os.path.join(root, d) for d in dirs if not os.path.islink(os.path.join(root, d))]:
            rel = os.path.relpath(path, data_dir)
            target = os.path.normpath(os.path.join(dest, rel))
            with contextlib.suppress(FileNotFoundError):
                st = os.stat(path)
                os.chown(target, st.st_uid, st.st_gid)
                shutil.copystat(path, target)
    return counts


class BackupWriter:
    """A backup folder that appears under its final name only when complete."""

    def __init__(self, backup_dir, version, kind):
        os.makedirs(backup_dir, mode=0o700, exist_ok=True)
        os.chmod(backup_dir, 0o700)
        self.backup_dir = backup_dir
        self.name = f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{version}-{kind}"
        self.partial = os.path.join(backup_dir, f".partial-{self.name}")
        shutil.rmtree(self.partial, ignore_errors=True)
        os.makedirs(self.partial, mode=0o700)
        self.manifest = {"name": self.name, "version": version, "kind": kind,
                         "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    def config(self, config_file):
        shutil.copy2(config_file, os.path.join(self.partial, "config.json"))
        os.chmod(os.path.join(self.partial, "config.json"), 0o600)

    def data(self, data_dir):
        names = backup_names(self.backup_dir)
        previous = os.path.join(self.backup_dir, names[-1], "data") if names else None
        counts = snapshot_data(data_dir, os.path.join(self.partial, "data"), previous)
        self.manifest["data_files"] = counts

    def database(self, database_name):
        pg_dump(database_name, os.path.join(self.partial, "database.dump"))

    def publish(self, **extra):
        self.manifest.update(extra)
        self.manifest["database_dump_bytes"] = os.path.getsize(os.path.join(self.partial, "database.dump"))
        with open(os.path.join(self.partial, "manifest.json"), "w") as f:
            json.dump(self.manifest, f, indent=1)
        final = os.path.join(self.backup_dir, self.name)
        os.rename(self.partial, final)
        return final

    def discard(self):
        shutil.rmtree(self.partial, ignore_errors=True)


def backup(spec):
    """A backup while Mattermost keeps serving: pg_dump (a consistent snapshot of the
    database), config.json, then the data folder - taken after the dump, so it holds
    every file the dump refers to. Published complete or not at all; old ones pruned."""
    version = spec.get("version") or os.path.basename(os.path.realpath(spec["install_dir"]))
    writer = BackupWriter(spec["backup_dir"], version, spec.get("kind", "manual"))
    try:
        print(f"  dumping database {spec['db']['name']}", flush=True)
        writer.database(spec["db"]["name"])
        writer.config(spec["config_file"])
        writer.data(spec["data_dir"])
        final = writer.publish()
    except BaseException:
        writer.discard()
        raise
    prune_backups(spec["backup_dir"], spec["keep"])
    print(f"backup {writer.name} written to {final}")


# A database address nothing answers on: `db migrate --dry-run` then loads and checks the
# config and stops when it tries to connect - the live database is never touched.
PREFLIGHT_DATASOURCE = "postgres://preflight@127.0.0.1:1/preflight?sslmode=disable&connect_timeout=2"


def parse_config_check(output):
    """What `mattermost db migrate --dry-run` said about the config: None when the config
    was accepted (it went on to the database), else the server's reason. In
    server/cmd/mattermost/commands/db.go (migrateCmdF) a config the server rejects fails
    with "failed to load configuration: invalid config: ..." before any database work."""
    marker = "failed to load configuration"
    for line in output.splitlines():
        if marker in line:
            reason = line[line.index(marker) + len(marker):].lstrip(": ")
            return reason.removeprefix("invalid config: ").strip() or line.strip()
    return None


def check_config_with(release_dir, config_file, user):
    """Let the NEW release's own binary load and validate the live config (Mattermost v10/v11
    have no `config validate`; `db migrate` loads the config through the same store the
    server uses, with its IsValid checks). Returns the server's reason or None."""
    result = run_release_binary(release_dir, config_file, user, "db", "migrate", "--dry-run",
                                env={"MM_SQLSETTINGS_DATASOURCE": PREFLIGHT_DATASOURCE}, in_release=True)
    return parse_config_check(result.stdout + "\n" + result.stderr)


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
        raise Failure(f"Mattermost {version} failed to start (see `journalctl -u {service}`)")
    wait_healthy({"url": spec["ping_url"], "version": version, "timeout": spec["timeout"], "service": service})


def upgrade(spec):
    """Upgrade with a short outage and an automatic way back.

    While the old version serves: preflight (folders, disk), the new binary checks the
    config, the data folder and config.json are snapshotted. Then: stop, copy the
    database inside PostgreSQL (CREATE DATABASE ... TEMPLATE: no dump during the outage),
    switch /opt/mattermost, start, wait for a healthy ping of the new version. On success
    the pre-upgrade database copy is dumped (pg_dump -Fc) into the backup while the new
    version serves. On failure: stop, put the pre-upgrade database back (a rename), switch
    back, start, verify the old version, hold the failed version, exit 1 with a report."""
    old, new = spec["from"], spec["to"]
    db, owner = spec["db"]["name"], spec["db"]["owner"]
    releases, link = spec["releases_dir"], spec["install_dir"]
    old_dir, new_dir = os.path.join(releases, old), os.path.join(releases, new)
    for folder in (old_dir, new_dir):
        if not os.path.isdir(folder):
            raise Failure(f"release folder {folder} is missing: nothing was changed")
    snapshot = f"{db}_before_{new.replace('.', '_')}"[:63]

    # Preflight: Mattermost asks for twice the install size plus the database.
    need = 2 * dir_size(new_dir) + database_size(db)
    os.makedirs(spec["backup"]["backup_dir"], mode=0o700, exist_ok=True)
    for path in (spec["backup"]["backup_dir"], "/var/lib/postgresql"):
        have = free_bytes(path) if os.path.exists(path) else need
        if have < need:
            raise Failure(f"not enough free disk in {path} for the upgrade: need {need >> 20} MB "
                          f"(twice the release plus the database), have {have >> 20} MB; nothing was changed")
    problem = check_config_with(new_dir, spec["config_file"], spec["user"])
    if problem:
        raise Failure(f"Mattermost {new} rejects the current config.json ({problem}); fix the setting "
                      "first - nothing was changed")

    writer = BackupWriter(spec["backup"]["backup_dir"], old, "upgrade")
    writer.config(spec["config_file"])
    writer.data(spec["backup"]["data_dir"])
    print(f"  stopping Mattermost {old}", flush=True)
    t0 = time.time()
    stopped = False
    try:
        systemctl("stop", spec["service"])
        stopped = True
        t_stopped = time.time()
        # One psql session for the whole snapshot: every process start here is outage.
        psql_as_postgres(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = {literal(db)};\n"
            f"DROP DATABASE IF EXISTS {ident(snapshot)};\n"
            f"CREATE DATABASE {ident(snapshot)} WITH TEMPLATE {ident(db)} OWNER {ident(owner)};\n")
        link_release(link, new_dir)
        t_snapshot = time.time()
        print(f"  starting Mattermost {new} (database migrations run now)", flush=True)
        start_and_verify(spec, new)
    except BaseException as e:
        reason = str(e) if isinstance(e, Failure) else f"{type(e).__name__}: {e}"
        print(f"  upgrade to {new} failed: {reason}", flush=True)
        if not stopped:
            writer.discard()
            raise
        _roll_back(spec, old, new, db, snapshot, reason, writer)
        raise Failure(f"upgrade {old} -> {new} failed ({reason}); rolled back: the database was restored "
                      f"to its state before the upgrade, Mattermost {old} runs and is healthy; {new} is held "
                      "until `make unhold`") from None
    now = time.time()
    print(f"  Mattermost {new} is serving: stop {t_stopped - t0:.2f}s, database snapshot {t_snapshot - t_stopped:.2f}s, "
          f"start and health {now - t_snapshot:.2f}s; saving the pre-upgrade backup", flush=True)
    try:
        writer.database(snapshot)
        final = writer.publish(upgraded_to=new)
    except BaseException:
        writer.discard()
        raise
    psql_as_postgres(f"DROP DATABASE {ident(snapshot)};")
    prune_backups(spec["backup"]["backup_dir"], spec["backup"]["keep"])
    prune_releases(releases, spec["keep_releases"], {old, new})
    print(f"upgraded {old} -> {new}; pre-upgrade backup {final}")


def _roll_back(spec, old, new, db, snapshot, reason, writer):
    print(f"  rolling back to {old}", flush=True)
    try:
        systemctl("stop", spec["service"])
        if database_exists(snapshot):
            put_database_back(snapshot, db)
            print(f"  database {db} restored to its state before the upgrade", flush=True)
        link_release(spec["install_dir"], os.path.join(spec["releases_dir"], old))
        start_and_verify(spec, old)
        writer.database(db)
        writer.publish(upgrade_failed=new, reason=reason)
    except BaseException as e:
        raise Failure(f"upgrade {old} -> {new} failed ({reason}) AND the rollback failed ({e}): the "
                      f"pre-upgrade database is kept as {snapshot} if it was made; config and data are in "
                      f"{writer.partial}; see `journalctl -u {spec['service']}`") from None
    write_hold(spec["hold_file"], new, f"the upgrade from {old} failed: {reason}")


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


def find_backup(backup_dir, wanted):
    names = backup_names(backup_dir)
    if not names:
        raise Failure(f"no backup in {backup_dir}: take one with `make backup`")
    if wanted in (None, "", "latest"):
        return names[-1]
    name = os.path.basename(wanted.rstrip("/"))
    if name not in names:
        raise Failure(f"no backup {name!r} in {backup_dir}; there are: {', '.join(names[-5:])}")
    return name


def restore(spec):
    """Bring back a backup: database (pg_restore into a new database; the current one is
    kept renamed), config.json (keeping today's DataSource), the data folder (the current
    one kept renamed) unless restore_data is false, and the backup's release. Verified by
    a healthy ping; undone when any step fails."""
    name = find_backup(spec["backup_dir"], spec.get("backup"))
    folder = os.path.join(spec["backup_dir"], name)
    manifest = read_json(os.path.join(folder, "manifest.json")) or {}
    version = manifest.get("version")
    db, owner = spec["db"]["name"], spec["db"]["owner"]
    release = os.path.join(spec["releases_dir"], version or "?")
    if not os.path.isdir(release):
        raise Failure(f"backup {name} is of Mattermost {version}, whose release folder is gone: run the deploy "
                      f"with mattermost_version = \"{version}\" first; nothing was changed")
    if not os.path.exists(os.path.join(folder, "database.dump")):
        raise Failure(f"backup {name} has no database.dump: not restorable")
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
    kept_db = f"{db}_before_restore"[:63]
    data_dir = spec["data_dir"].rstrip("/")
    kept_data = f"{data_dir}.before-restore-{stamp}"
    previous_link = os.path.realpath(spec["install_dir"])
    with open(spec["config_file"]) as f:
        live_config = json.load(f)
    print(f"  restoring backup {name} (Mattermost {version}, {manifest.get('kind')}, {manifest.get('created')})",
          flush=True)
    systemctl("stop", spec["service"])
    steps = []
    try:
        terminate_connections(db)
        if database_exists(kept_db):
            psql_as_postgres(f"DROP DATABASE {ident(kept_db)};")
        psql_as_postgres(f"ALTER DATABASE {ident(db)} RENAME TO {ident(kept_db)};")
        steps.append("db")
        psql_as_postgres(f"CREATE DATABASE {ident(db)} WITH OWNER {ident(owner)} ENCODING 'UTF8' "
                         "LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8' TEMPLATE template0;")
        with open(os.path.join(folder, "database.dump"), "rb") as dump:
            result = subprocess.run(["runuser", "-u", "postgres", "--", "pg_restore", "--no-owner",
                                     f"--role={owner}", "--exit-on-error", "-d", db], stdin=dump,
                                    capture_output=True)
        if result.returncode != 0:
            raise Failure(f"pg_restore failed: {result.stderr.decode(errors='replace').strip()[-300:]}")
        restored = read_json(os.path.join(folder, "config.json"))
        if restored:
            restored.setdefault("SqlSettings", {})["DataSource"] = live_config["SqlSettings"]["DataSource"]
            account = pwd.getpwnam(spec["user"])
            write_private(spec["config_file"], json.dumps(restored, indent=4) + "\n", account.pw_uid, account.pw_gid)
            steps.append("config")
        if spec.get("restore_data", True) and os.path.isdir(os.path.join(folder, "data")):
            os.rename(data_dir, kept_data)
            steps.append("data")
            snapshot_data(os.path.join(folder, "data"), data_dir)
            account = pwd.getpwnam(spec["user"])
            run(["chown", "-R", f"{account.pw_uid}:{account.pw_gid}", data_dir])
        link_release(spec["install_dir"], release)
        start_and_verify(spec, version)
    except BaseException as e:
        print(f"  restore failed ({e}); putting everything back", flush=True)
        systemctl("stop", spec["service"])
        if "data" in steps:
            shutil.rmtree(data_dir, ignore_errors=True)
            os.rename(kept_data, data_dir)
        if "config" in steps:
            account = pwd.getpwnam(spec["user"])
            write_private(spec["config_file"], json.dumps(live_config, indent=4) + "\n", account.pw_uid, account.pw_gid)
        if "db" in steps:
            put_database_back(kept_db, db)
        link_release(spec["install_dir"], previous_link)
        systemctl("start", spec["service"])
        raise
    if spec.get("hold"):
        write_hold(spec["hold_file"], spec["hold"], "rolled back by the operator (make rollback)")
    kept = f"database {kept_db}" + (f" and {kept_data}" if "data" in steps else "")
    print(f"restored backup {name}: Mattermost {version} is healthy; the state before the restore is kept as "
          f"{kept} - remove it once you are satisfied")


def rollback(spec):
    """Return to the release before the last upgrade, with that upgrade's backup
    (database and config; files uploaded since stay). Holds the version left."""
    current = os.path.basename(os.path.realpath(spec["install_dir"]))
    candidates = [n for n in backup_names(spec["backup_dir"])
                  if (read_json(os.path.join(spec["backup_dir"], n, "manifest.json")) or {}).get("upgraded_to") == current]
    if not candidates:
        raise Failure(f"no upgrade backup leads to the running {current}: nothing to roll back to "
                      "(use `make restore BACKUP=...` for a chosen backup)")
    restore({**spec, "backup": candidates[-1], "restore_data": False, "hold": current})


def unhold(spec):
    path = spec["hold_file"]
    hold = read_json(path)
    if not hold:
        print("no upgrade is held")
        return
    os.unlink(path)
    print(f"the hold on {hold.get('version')} is lifted: the next deploy may upgrade to it again")


# ================================================================== patch night

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
    path, holder = spec["lock_file"], spec["holder"]
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    lock = read_json(path)
    if lock and lock.get("holder") != holder and not spec.get("break"):
        since = lock.get("since", 0)
        minutes = int((time.time() - since) // 60)
        raise Failure(f"patch night is already running: held by {lock.get('holder')} since "
                      f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(since))} ({minutes} min ago); "
                      "if that run is dead, run `make patch-night BREAK_LOCK=1`")
    if lock and lock.get("holder") != holder:
        print(f"  breaking the lock of {lock.get('holder')}", flush=True)
    run_state = read_json(spec["state_file"])
    if lock and lock.get("holder") == holder and run_state:
        print(f"  continuing the unfinished run started {run_state.get('started_text')}: done so far: "
              f"{', '.join(run_state.get('done', [])) or 'nothing'}", flush=True)
    else:
        run_state = {"started": time.time(), "started_text": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                     "holder": holder, "done": [], "upgraded": [], "restarted": [], "deferred": [],
                     "rebooted": False, "mattermost_before": spec.get("mattermost_before")}
        write_private(spec["state_file"], json.dumps(run_state))
    since = lock["since"] if lock and lock.get("holder") == holder and lock.get("since") else time.time()
    write_private(path, json.dumps({"holder": holder, "since": since}))
    print(f"patch night lock held by {holder}")


def _run_state(spec):
    state_ = read_json(spec["state_file"])
    if state_ is None:
        raise Failure("no patch night in progress on this server (the lock step did not run)")
    return state_


def _save_run(spec, run_state, step=None):
    if step and step not in run_state["done"]:
        run_state["done"].append(step)
    write_private(spec["state_file"], json.dumps(run_state))


def wait_for_dpkg(timeout=900):
    """Wait while another apt/dpkg (say, the run that was killed) still holds dpkg's lock."""
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
    _save_run(spec, run_state)
    if pending:
        print(f"  upgrading {len(pending)} packages: " + ", ".join(f"{p['name']} {p['new']}" for p in pending),
              flush=True)
        result = subprocess.run(["apt-get", "-y", "-q", *APT_KEEP_CONFIG, "upgrade", "--with-new-pkgs"],
                                env=APT_ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if result.returncode != 0:
            print(result.stdout[-3000:], flush=True)
            raise Failure("apt-get upgrade failed (see above); Mattermost keeps running - fix the cause and "
                          "re-run `make patch-night` to continue")
    _save_run(spec, run_state, "packages")
    print(f"packages upgraded: {len(pending)}")


def restart_service(spec, service, run_state):
    mm = spec["service"]
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
    _save_run(spec, run_state)
    print(f"  restarted {service}", flush=True)


def patch_restart(spec):
    """Restart what needrestart lists (Mattermost cleanly, with a health check), unless a
    reboot follows anyway; services never restarted at run time wait for the next reboot."""
    run_state = _run_state(spec)
    if os.path.exists("/run/reboot-required") or spec.get("reboot_expected"):
        run_state["restarts_by_reboot"] = True
        _save_run(spec, run_state, "restarts")
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
    _save_run(spec, run_state, "restarts")
    print(f"services restarted: {', '.join(run_state['restarted']) or 'none needed'}")


def patch_mark(spec):
    run_state = _run_state(spec)
    run_state.update(spec.get("set", {}))
    _save_run(spec, run_state, spec.get("step"))


def patch_finish(spec):
    """End the run: print its record as JSON (for the report) and release the lock."""
    run_state = _run_state(spec)
    health = ping(spec["ping_url"])
    run_state.update(finished=time.time(), mattermost_after=health["version"], healthy=health["ok"],
                     reboot_still_required=os.path.exists("/run/reboot-required"))
    print(json.dumps(run_state))
    for path in (spec["state_file"], spec["lock_file"]):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


# ================================================================== ACME certificates

def acme_state(domain):
    """The certbot lineage for `domain`: present, from which ACME server, valid until."""
    renewal = f"/etc/letsencrypt/renewal/{domain}.conf"
    live = f"/etc/letsencrypt/live/{domain}/fullchain.pem"
    server, not_after = None, None
    with contextlib.suppress(OSError), open(renewal) as f:
        for line in f:
            key, _, value = line.partition("=")
            if key.strip() == "server":
                server = value.strip()
    if os.path.exists(live):
        out = subprocess.run(["openssl", "x509", "-noout", "-enddate", "-in", live], capture_output=True, text=True)
        not_after = out.stdout.strip().partition("=")[2] or None
    return {"present": os.path.exists(live) and server is not None, "server": server, "not_after": not_after}


def acme_issue(spec):
    """Obtain the certificate with certbot (webroot through nginx); renewals then run from
    certbot's timer and reload nginx. A failure says why; nothing else is changed."""
    env = dict(os.environ)
    if spec.get("ca_bundle"):
        env["REQUESTS_CA_BUNDLE"] = spec["ca_bundle"]
    os.makedirs(spec["webroot"], exist_ok=True)
    cmd = ["certbot", "certonly", "--non-interactive", "--agree-tos", "--email", spec["email"],
           "--server", spec["server"], "--webroot", "-w", spec["webroot"], "-d", spec["domain"],
           "--cert-name", spec["domain"], "--keep-until-expiring", "--deploy-hook", "systemctl reload nginx"]
    print(f"  asking {spec['server']} for a certificate for {spec['domain']}", flush=True)
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if result.returncode != 0:
        detail = [line.strip() for line in (result.stdout + result.stderr).splitlines() if line.strip()]
        reason = next((line for line in detail if "Detail:" in line or "Error" in line), detail[-1] if detail else "")
        raise Failure(f"no certificate for {spec['domain']} from {spec['server']} ({reason[:300]}); the self-signed "
                      "certificate stays in place, so the site keeps working - check that the name points at this "
                      "server and port 80 is reachable, see /var/log/letsencrypt/letsencrypt.log")
    print(f"certificate for {spec['domain']} obtained")


# ================================================================== housekeeping (channels, users, emoji, export, retention)

class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=30):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


def _answer(method, path, status, data):
    if status >= 400:
        try:
            message = json.loads(data).get("message")
        except (ValueError, AttributeError):
            message = None
        raise Failure(f"Mattermost refused {method} {path}: HTTP {status} {message or ''}".strip())
    return json.loads(data or b"null")


def local_api(spec, method, path, body=None):
    """The local-mode socket: fully authorised, like `mmctl --local`. Only the routes that
    server/channels/api4/*_local.go registers exist there (e.g. no GET /channels/{id}/stats,
    no POST /bots, no emoji routes)."""
    conn = UnixHTTPConnection(spec["socket"])
    try:
        payload = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=payload, headers={"Content-Type": "application/json"} if payload else {})
        response = conn.getresponse()
        return _answer(method, path, response.status, response.read())
    finally:
        conn.close()


def local_pages(spec, path, per_page=200):
    """Every item of a paged list route (page=0,1,... until a short page)."""
    items, page = [], 0
    while True:
        batch = local_api(spec, "GET", f"{path}{'&' if '?' in path else '?'}page={page}&per_page={per_page}") or []
        items += batch
        if len(batch) < per_page:
            return items
        page += 1


def mmctl(spec, *args):
    """`mmctl --local ARGS` as the service user, for the commands an operator would type."""
    cmd = ["runuser", "-u", spec["user"], "--", os.path.join(spec["install_dir"], "bin", "mmctl"), "--local", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, MMCTL_LOCAL_SOCKET_PATH=spec["socket"]))
    if result.returncode != 0:
        raise Failure(f"mmctl {' '.join(args[:3])} failed: {(result.stderr or result.stdout).strip()[-300:]}")
    return result.stdout


def api_with_token(spec, method, path, body=None, content_type="application/json"):
    """The REST API on 127.0.0.1 with the deploy's bot token (emoji have no local route)."""
    token = read_password(spec["token_file"])
    if not token:
        raise Failure("the deploy's bot token is missing: run the full deploy")
    request = urllib.request.Request(f"http://127.0.0.1:8065{path}", data=body, method=method,
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as e:
        return _answer(method, path, e.code, e.read())


def bot_token_works(spec):
    if not read_password(spec["token_file"]):
        return False
    try:
        return bool(api_with_token(spec, "GET", "/api/v4/users/me"))
    except (Failure, OSError):
        return False


def housekeeping_state(spec):
    """Teams with their channels (type, archived, last post, messages, members), users
    (active or not, last activity), custom emoji and whether the deploy's bot token works -
    what the declared housekeeping and the reports compare against. Read over the local
    socket and, for the two things it does not serve, from the database."""
    if not os.path.exists(spec["socket"]):
        return {"error": "Mattermost is not running (no local-mode socket yet)"}
    try:
        teams = local_pages(spec, "/api/v4/teams")  # getAllTeams (api4/team_local.go)
        # getAllChannels (api4/channel_local.go): public and private channels of every team, with team_name.
        channels = local_pages(spec, "/api/v4/channels?include_deleted=true")
        db = spec["db"]
        # The local socket has no channel stats route: members counted in the channelmembers table.
        out = psql_as_postgres("SELECT channelid, count(*) FROM channelmembers GROUP BY channelid;", db).stdout
        members = dict(line.split("|") for line in out.splitlines() if "|" in line)
        # No local emoji route either: the emoji table (deleted emoji keep their row with deleteat set).
        emoji = psql_as_postgres("SELECT name FROM emoji WHERE deleteat = 0 ORDER BY name;", db).stdout.split()
        by_team = {t["name"]: [] for t in teams}
        for c in channels:
            by_team.setdefault(c.get("team_name"), []).append({
                "name": c["name"], "display_name": c["display_name"], "type": c["type"],
                "archived": bool(c["delete_at"]), "create_at": c["create_at"], "last_post_at": c["last_post_at"],
                "messages": c["total_msg_count"], "members": int(members.get(c["id"], 0))})
        teams_out = [{"name": t["name"], "display_name": t["display_name"],
                      "channels": sorted(by_team.get(t["name"], []), key=lambda c: c["name"])} for t in teams]
        users = [{"username": u["username"], "email": u.get("email", ""), "active": not u["delete_at"],
                  "is_bot": bool(u.get("is_bot")), "last_activity_at": u.get("last_activity_at") or None}
                 for u in local_pages(spec, "/api/v4/users")]  # localGetUsers: active and deactivated
        return {"teams": teams_out, "users": users, "emoji": emoji,
                "email_configured": email_configured(spec), "bot_token": bot_token_works(spec)}
    except (Failure, OSError, ValueError, KeyError) as e:
        return {"error": str(e)}


def email_configured(spec):
    """Whether Mattermost can send e-mail: the SMTP server config.json names answers with
    its greeting. (An empty EmailSettings.SMTPServer becomes "localhost" port 10025 when
    Mattermost saves its config - public/model/config.go SetDefaults - so the setting
    alone says nothing.) Without it no password e-mail can reach a new user."""
    config = read_json(spec.get("config_file") or "") or {}
    return smtp_answers(config)


def smtp_answers(config, timeout=5):
    server = get_dotted(config, "EmailSettings.SMTPServer")[0] or ""
    port = get_dotted(config, "EmailSettings.SMTPPort")[0] or "25"
    if not server:
        return False
    try:
        with socket.create_connection((server, int(port)), timeout=timeout) as sock:
            if get_dotted(config, "EmailSettings.ConnectionSecurity")[0] == "TLS":  # implicit TLS
                import ssl
                sock = ssl._create_unverified_context().wrap_socket(sock, server_hostname=server)
            sock.settimeout(timeout)
            return sock.recv(512).startswith(b"220")
    except (OSError, ValueError):
        return False


def find_user(spec, username):
    try:
        return local_api(spec, "GET", f"/api/v4/users/username/{urllib.parse.quote(username)}")
    except Failure:
        return None


def housekeeping(spec):
    """One declared action, checked against the server just before it is done, so a run
    repeated after a failure does only what is still missing."""
    action, target = spec["action"], spec["target"]
    now = housekeeping_state(spec)
    if now.get("error"):
        raise Failure(f"cannot read channels and users: {now['error']}")
    channels = {f"{t['name']}:{c['name']}": c for t in now["teams"] for c in t["channels"]}
    users = {u["username"]: u for u in now["users"]}
    if action in ("archive-channel", "delete-channel"):
        channel = channels.get(target)
        if channel is None:
            print(f"channel {target} does not exist (already deleted?)")
            return
        if action == "archive-channel":
            if channel["archived"]:
                print(f"channel {target} is already archived")
                return
            mmctl(spec, "channel", "archive", target)
        else:
            mmctl(spec, "channel", "delete", target, "--confirm")
    elif action == "create-user":
        if target in users:
            print(f"user {target} exists")
            return
        if not now["email_configured"]:
            raise Failure(f"{target} could never set a password: the SMTP server in config.json "
                          "(EmailSettings.SMTPServer, SMTPPort) does not answer, so the password e-mail cannot leave; "
                          "configure e-mail first - the user was not created")
        # A password nobody knows, sent in the request body (never on a command line); the
        # user sets their own through the e-mail. createUser and sendPasswordReset are local
        # routes (api4/user_local.go); `mmctl user reset-password` takes e-mail addresses.
        user = {"username": target, "email": spec["email"], "password": secrets.token_urlsafe(24) + "aA1!"}
        if spec.get("first_name"):
            user["first_name"] = spec["first_name"]
        local_api(spec, "POST", "/api/v4/users", user)
        local_api(spec, "POST", "/api/v4/users/password/reset/send", {"email": spec["email"]})
        print(f"user {target} created; the password e-mail went to {spec['email']}")
    elif action == "deactivate-user":
        if target not in users or not users[target]["active"]:
            print(f"user {target} is already deactivated (or gone)")
            return
        mmctl(spec, "user", "deactivate", target)
    elif action == "erase-user":
        if target not in users:
            print(f"user {target} does not exist (already erased?)")
            return
        # Measured on the real 10.3 and 11.4 builds: local mode deletes with
        # ServiceSettings.EnableAPIUserDeletion false (deleteUsersCmdF in cmd/mmctl/commands/
        # user.go has no config check; localDeleteUser in api4/user_local.go neither).
        mmctl(spec, "user", "delete", target, "--confirm")
        if find_user(spec, target):
            raise Failure(f"mmctl reported {target} deleted but the user is still there")
    else:
        raise Failure(f"unknown housekeeping action {action}")
    print(f"{action} {target}: done")


def bot_token(spec):
    """The deploy's bot and its access token, kept root-only (for the emoji API).

    `mmctl bot create` refuses local mode (cmd/mmctl/commands/bot.go: disableLocalPrecheck)
    and the local API has no POST /bots; it does create users, convert a user to a bot and
    make a bot's token (api4/user_local.go: POST /users, /users/{id}/convert_to_bot,
    /users/{id}/tokens). A bot cannot log in with a password. The deploy keeps
    EnableUserAccessTokens on while emoji are declared: the real 10.3 server refused this
    token without it (11.4 did not)."""
    if bot_token_works(spec):
        print("the deploy's bot token is in place")
        return
    bot = find_user(spec, spec["bot"])
    if bot is None:
        bot = local_api(spec, "POST", "/api/v4/users", {
            "username": spec["bot"], "email": f"{spec['bot']}@localhost",
            "password": secrets.token_urlsafe(24) + "aA1!", "first_name": "Mattermost deploy"})
    if not bot.get("is_bot"):
        local_api(spec, "POST", f"/api/v4/users/{bot['id']}/convert_to_bot")
    token = local_api(spec, "POST", f"/api/v4/users/{bot['id']}/tokens", {"description": "custom emoji uploads"})
    os.makedirs(os.path.dirname(spec["token_file"]), mode=0o700, exist_ok=True)
    write_private(spec["token_file"], token["token"] + "\n")
    print(f"bot {spec['bot']} has a token in {spec['token_file']} (root only)")


def emoji_body(name, creator_id, filename, image, boundary):
    """The multipart body of POST /api/v4/emoji: a JSON part `emoji` and the `image`."""
    return (f"--{boundary}\r\nContent-Disposition: form-data; name=\"emoji\"\r\n\r\n"
            + json.dumps({"name": name, "creator_id": creator_id})
            + f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{filename}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + image + f"\r\n--{boundary}--\r\n".encode()


def emoji_upload(spec):
    """Upload one image from the staging folder as custom emoji `name`, unless it exists."""
    name, path = spec["name"], spec["path"]
    existing = housekeeping_state(spec).get("emoji") or []
    if name in existing:
        print(f"emoji :{name}: exists")
        return
    me = api_with_token(spec, "GET", "/api/v4/users/me")
    with open(path, "rb") as f:
        image = f.read()
    boundary = "mmdeploy" + secrets.token_hex(8)
    api_with_token(spec, "POST", "/api/v4/emoji", emoji_body(name, me["id"], os.path.basename(path), image, boundary),
                   f"multipart/form-data; boundary={boundary}")
    print(f"emoji :{name}: uploaded")


def export(spec):
    """Mattermost's bulk export (data portability); prints the file's path once the job
    has finished. The export job streams straight into <jobId>_export.zip
    (channels/jobs/export_process), so the file exists long before it is complete: wait for
    the job's status, then take that job's file."""
    job = local_api(spec, "POST", "/api/v4/jobs", {"type": "export_process",
                                                   "data": {"include_attachments": "true"}})
    print(f"  export job {job['id']} started", flush=True)
    deadline, status = time.time() + spec.get("timeout", 3600), job.get("status")
    while time.time() < deadline:
        job = local_api(spec, "GET", f"/api/v4/jobs/{job['id']}")
        status = job.get("status")
        if status == "success":
            path = os.path.join(spec["data_dir"], "export", f"{job['id']}_export.zip")
            if not os.path.exists(path):
                raise Failure(f"the export job {job['id']} finished but {path} is missing")
            print(path)
            return
        if status in ("error", "canceled", "cancel_requested"):
            raise Failure(f"the export job {job['id']} ended with status {status}: "
                          f"{(job.get('data') or {}).get('error', 'see the Mattermost log')}")
        time.sleep(1)
    raise Failure(f"the export job {job['id']} did not finish in time (status {status}): see "
                  "`mmctl --local export job list`")


RETENTION_TABLES = {  # table -> column holding the post id, for rows that belong to deleted posts
    "reactions": "postid", "threadmemberships": "postid", "threads": "postid", "fileinfo": "postid",
}


def retention(spec):
    """Team Edition has no retention policies; Mattermost's advice is a database script.
    Counts (dry run) or deletes posts older than N days with their files and reactions."""
    days, apply = int(spec["days"]), bool(spec.get("apply"))
    cutoff = int((time.time() - days * 86400) * 1000)
    db = spec["db"]
    tables = set(psql_as_postgres("SELECT tablename FROM pg_tables WHERE schemaname = 'public';", db).stdout.split())
    old = f"SELECT id FROM posts WHERE createat < {cutoff}"
    posts = int(psql_as_postgres(f"SELECT count(*) FROM ({old}) o;", db).stdout.strip() or 0)
    files = []
    if "fileinfo" in tables:
        out = psql_as_postgres(f"SELECT path FROM fileinfo WHERE postid IN ({old});", db).stdout
        files = [line for line in out.splitlines() if line]
    print(json.dumps({"cutoff": cutoff, "days": days, "posts": posts, "files": len(files), "applied": apply}))
    if not apply or not posts:
        return
    sql = "BEGIN;\n" + "".join(f"DELETE FROM {t} WHERE {col} IN ({old});\n" for t, col in RETENTION_TABLES.items()
                               if t in tables) + f"DELETE FROM posts WHERE createat < {cutoff};\nCOMMIT;\n"
    psql_as_postgres(sql, db)
    data_dir = os.path.realpath(spec["data_dir"])
    for rel in files:
        path = os.path.realpath(os.path.join(data_dir, rel))
        if path.startswith(data_dir + "/"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


# ================================================================== entry point

COMMANDS = {
    "fetch-release": fetch_release,
    "adopt": adopt,
    "client-writable": client_writable,
    "database": database,
    "merge-config": merge_config_file,
    "switch": switch,
    "wait-healthy": wait_healthy,
    "backup": backup,
    "upgrade": upgrade,
    "restore": restore,
    "rollback": rollback,
    "unhold": unhold,
    "acme-issue": acme_issue,
    "housekeeping": housekeeping,
    "bot-token": bot_token,
    "emoji-upload": emoji_upload,
    "export": export,
    "retention": retention,
    "patch-lock": patch_lock,
    "patch-upgrade": patch_upgrade,
    "patch-restart": patch_restart,
    "patch-mark": patch_mark,
    "patch-finish": patch_finish,
}


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    command, arg = argv
    try:
        if command == "state":
            print(json.dumps(state(json.loads(arg))))
        elif command == "db-password":
            db_password(arg)
        elif command in COMMANDS:
            if arg.startswith("@"):  # a spec kept in a file (the nightly backup timer)
                with open(arg[1:]) as f:
                    arg = f.read()
            COMMANDS[command](json.loads(arg))
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except Failure as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
