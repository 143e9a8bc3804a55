"""The deploy's one fact: everything the workstation decides from, read in one round trip.
"""

import contextlib
import json
import os
import pwd
import re
import secrets
import shutil
import subprocess
import tempfile
import time

from mmhelper.jobs.os_release import os_release_state
from mmhelper.jobs.patching import os_state
from mmhelper.parts.common import HELPER_VERSION, _user_exists, file_info, key_values, ping, read_json, read_password
from mmhelper.parts.config import config_differences, display_value, get_dotted, password_digest, resolve_desired, smtp_check
from mmhelper.parts.discover import DEFAULT_PORT, discover, listeners
from mmhelper.parts.pg import literal, psql_as_postgres, psql_login_ok, remote_login
from mmhelper.parts.s3 import files_probe
from mmhelper.parts.service import systemctl, unit_property
from mmhelper.steps.acme import acme_state
from mmhelper.steps.adopt import database_of, hand_installs
from mmhelper.steps.backup import backup_names
from mmhelper.steps.housekeeping import housekeeping_state
from mmhelper.steps.notices import notices_state
from mmhelper.steps.offsite import offsite_state
from mmhelper.steps.upgrade_facts import upgrade_facts


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
    # Lines the deploy keeps in files it does not own (login.defs): {path: {key: value or None}}.
    out["file_keys"] = {p: key_values(p, keys) for p, keys in (query.get("file_keys") or {}).items()}

    # The release in use and the releases on disk; or every Mattermost the server has that
    # the deploy did not install (hand installs anywhere, packages, containers, databases).
    releases_dir = query["releases_dir"]
    out["install"] = install = installation(query, user)
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
    # Other root-only secrets the deploy places (off-server backup credentials): the same
    # salted digest of each whole file, so the workstation can tell without reading it.
    out["secrets"] = {path: secret_digest(path, salt) for path in query.get("secret_files", [])}
    config_file = query["config_file"]
    config_out = {"exists": os.path.exists(config_file), "differs": [], "current": {}}
    # Which database Mattermost uses: the live config.json, or the hand install's before adoption.
    adoption = (install.get("adoption") or {}) if install["kind"] == "dir" else {}
    out["database_engine"] = {"engine": adoption.get("engine"), "datasource": adoption.get("datasource")}
    if config_out["exists"]:
        try:
            with open(config_file) as f:
                config = json.load(f)
            engine, ds = database_of(config)
            out["files_driver"] = get_dotted(config, "FileSettings.DriverName")[0] or "local"
            out["database_engine"] = {"engine": engine, "datasource": {k: v for k, v in (ds or {}).items()
                                                                       if k != "password"} or None}
            desired = resolve_desired(query.get("desired_config", {}), password or "", missing_secret="\0missing")
            config_out["differs"] = config_differences(config, desired)
            config_out["current"] = {k: display_value(k, get_dotted(config, k)[0]) for k in config_out["differs"]}
        except ValueError as e:
            config_out["error"] = f"{config_file} is not valid JSON: {e}"
    out["config"] = config_out
    # The SMTP server the settings name: does it answer as configured (connection and TLS;
    # the login is tried when the settings are merged, with the password on the server)?
    if query.get("smtp_probe"):
        out["smtp"] = {"problem": smtp_check(query["smtp_probe"], login=False)}
    # The bucket the settings name, with Mattermost's key as it is on the server: write, read
    # and delete a probe object (the run stops before any change when that fails).
    if query.get("files_probe"):
        out["files_probe"] = files_probe(query["files_probe"])

    # PostgreSQL: role, database, and whether the password in the file logs in.
    db = query["db"]
    db_out = {"server_active": systemctl("is-active", "postgresql").stdout.strip() == "active"}
    if db.get("remote"):
        # Mattermost's database is on another machine: only Mattermost's own role is known
        # here; what counts is that it logs in over verify-full TLS as Mattermost will.
        remote = db["remote"]
        login = None
        if password and shutil.which("psql"):
            # with the CA the settings name now (the workstation's file), before the deploy places it
            with tempfile.NamedTemporaryFile("w", suffix=".crt") as ca:
                ca.write(db.get("ca_pem") or "")
                ca.flush()
                login = remote_login({**remote, "sslrootcert": ca.name if db.get("ca_pem") else remote["sslrootcert"]},
                                     password)
        db_out.update(remote=True, login_ok=login is True, login_tried=login is not None,
                      login_error=None if login is True else (login or "no password or psql on the server yet"))
        if login is True:
            db_out.update(role_exists=True, db_exists=True, db_owner=db["user"])
    elif db_out["server_active"] and shutil.which("psql"):
        result = psql_as_postgres(
            f"SELECT 'role', rolname FROM pg_roles WHERE rolname = {literal(db['user'])} UNION ALL "
            f"SELECT 'createdb', rolcreatedb::text FROM pg_roles WHERE rolname = {literal(db['user'])} UNION ALL "
            f"SELECT 'subscriber', count(*)::text FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid JOIN "
            f"pg_roles u ON u.oid = m.member WHERE r.rolname = 'pg_create_subscription' AND u.rolname = "
            f"{literal(db['user'])} UNION ALL "
            f"SELECT 'subscribable', count(*)::text FROM pg_roles WHERE rolname = 'pg_create_subscription' UNION ALL "
            f"SELECT 'db', pg_get_userbyid(datdba) FROM pg_database WHERE datname = {literal(db['name'])};")
        rows = dict(line.split("|", 1) for line in result.stdout.splitlines() if "|" in line)
        db_out["role_exists"] = "role" in rows
        db_out["db_exists"] = "db" in rows
        db_out["db_owner"] = rows.get("db")
        db_out["createdb"] = rows.get("createdb") == "true" and (
            rows.get("subscriber") == "1" or rows.get("subscribable") == "0")  # PostgreSQL 16+: may subscribe
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
    out["nginx"] = {"active": systemctl("is-active", "nginx").stdout.strip(), "version": package_version("nginx")}
    out["fail2ban"] = {"active": systemctl("is-active", "fail2ban").stdout.strip(),
                       "enabled": systemctl("is-enabled", "fail2ban").stdout.strip()}
    out["lynis_timer"] = {"active": systemctl("is-active", "mattermost-lynis.timer").stdout.strip(),
                          "enabled": systemctl("is-enabled", "mattermost-lynis.timer").stdout.strip()}
    # The workstation's address as this SSH session arrived (sshd sets SSH_CLIENT): never banned.
    out["ssh_client"] = (os.environ.get("SSH_CLIENT") or "").split(" ")[0] or None
    out["firewall"] = {
        "table": bool(shutil.which("nft")) and subprocess.run(
            ["nft", "list", "table", "inet", "mattermost_deploy"], capture_output=True).returncode == 0,
        "enabled": systemctl("is-enabled", "nftables").stdout.strip(),
    }
    out["backup_timer"] = {"enabled": systemctl("is-enabled", "mattermost-backup.timer").stdout.strip(),
                           "active": systemctl("is-active", "mattermost-backup.timer").stdout.strip()}
    out["hold"] = read_json(query["hold_file"]) if query.get("hold_file") else None
    migration = read_json(query["db_migrate_state_file"]) if query.get("db_migrate_state_file") else None
    out["db_migrate"] = {k: migration.get(k) for k in ("status", "done", "version", "outage_s", "failed")} \
        if migration else None
    if query.get("os"):
        out["os_updates"] = os_state(query["os"])
    if query.get("housekeeping"):
        out["housekeeping"] = housekeeping_state(query["housekeeping"])
    if query.get("ssh_admin_user"):
        out["ssh"] = ssh_admin_state(query["ssh_admin_user"])
    if query.get("offsite_status_file"):
        out["offsite"] = offsite_state({"status_file": query["offsite_status_file"]})
    if query.get("os_release"):
        spec = query["os_release"]
        out["os_release"] = os_release_state({**spec, "target": spec["next"].get(out["os"]["codename"])})
    if query.get("acme_domain"):
        out["acme"] = acme_state(query["acme_domain"])
    names = backup_names(query["backup_dir"]) if query.get("backup_dir") else []
    out["backups"] = {"count": len(names), "newest": names[-1] if names else None,
                      "newest_manifest": read_json(os.path.join(query["backup_dir"], names[-1], "manifest.json"))
                      if names else None}
    out["health"] = ping(query["ping_url"]) if out["service"]["active"] == "active" else {
        "ok": False, "error": "service not running", "version": None}
    if query.get("notices"):
        out["notices"] = notices_state(query["notices"])
        out["notices_timer"] = {"enabled": systemctl("is-enabled", "mattermost-notices.timer").stdout.strip(),
                                "active": systemctl("is-active", "mattermost-notices.timer").stdout.strip()}
    if query.get("postgresql_files") is not None:
        out["postgresql"] = postgresql_facts(query["postgresql_files"])
    if query.get("upgrade_facts") and install["kind"] == "link" and config_out["exists"] and \
            out["database_engine"].get("engine") == "postgres":
        out["upgrade_facts"] = upgrade_facts(query["upgrade_facts"])
    elif query.get("upgrade_facts"):
        # Not on PostgreSQL yet (MySQL, a hand install): the PostgreSQL this server has or would
        # install is what the hops after `make db-migrate` will run on.
        version = package_version("postgresql") or ""
        major = version.split("+")[0].split(".")[0]
        out["upgrade_facts"] = {"postgres_major": int(major) if major.isdigit() else None, "partial": True}
    out["now"] = time.time()
    return out


def installation(query, user):
    """The managed release in use (install_dir links into releases_dir), else the hand
    install to adopt ("dir": exactly one found, or named by adopt_path), several of them, or
    none ("missing"); with what the discovery found, for the workstation to adopt or refuse."""
    install_dir, releases_dir = query["install_dir"], query["releases_dir"]
    info = file_info(install_dir)
    found = discover()
    install = {"kind": "missing", "existing": found}
    if info and info["type"] == "link":
        target = os.path.realpath(install_dir)
        if os.path.dirname(target) == os.path.realpath(releases_dir):
            install.update(kind="link", target=target, version=os.path.basename(target))
    installs = hand_installs(found, install_dir, releases_dir, query.get("adopt_path"), user)
    install["hand_installs"] = installs
    if install["kind"] != "link":
        chosen = [i for i in installs if i["path"] == (query.get("adopt_path") or "").rstrip("/")] or installs
        if len(chosen) == 1:
            install.update(kind="dir", **chosen[0])
        elif chosen:
            install["kind"] = "several"
    ports = {i["adoption"].get("port") for i in installs if i["adoption"].get("port")}
    found["listeners"] = {str(port): listeners(port) for port in sorted({DEFAULT_PORT, *ports})}
    return install


def postgresql_facts(wanted_files):
    """The PostgreSQL major version the server runs or would install (Debian's postgresql
    package: "17+278" -> 17), its main cluster's folder, and the managed files in it."""
    version = package_version("postgresql") or ""
    major = version.split("+")[0] if version else None
    conf_dir = f"/etc/postgresql/{major}/main" if major else None
    return {"major": major, "conf_dir": conf_dir,
            "files": {name: file_info(f"{conf_dir}/{name}") if conf_dir else None for name in wanted_files}}


def secret_digest(path, salt):
    try:
        with open(path) as f:
            return password_digest(f.read(), salt)
    except FileNotFoundError:
        return None


def package_version(package):
    """The installed version of a Debian package, else the version apt would install (the
    candidate), else None - so the deploy can write a config for the version that will run."""
    installed = subprocess.run(["dpkg-query", "-W", "-f", "${db:Status-Status} ${Version}", package],
                               capture_output=True, text=True).stdout.split()
    if len(installed) == 2 and installed[0] == "installed":
        return installed[1]
    policy = subprocess.run(["apt-cache", "policy", package], capture_output=True, text=True).stdout
    match = re.search(r"^\s*Candidate:\s*(\S+)", policy, re.M)
    return match.group(1) if match and match.group(1) != "(none)" else None


def ssh_admin_state(user):
    try:
        home = pwd.getpwnam(user).pw_dir
    except KeyError:
        return {"admin_exists": False, "admin_keys": None}
    keys = None
    with contextlib.suppress(OSError), open(os.path.join(home, ".ssh", "authorized_keys")) as f:
        keys = f.read()
    return {"admin_exists": True, "admin_keys": keys}
