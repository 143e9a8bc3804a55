"""PostgreSQL for Mattermost: the role and database from the install guide, with a
password that is generated on the server (root-only file) or taken from the
workstation's MATTERMOST_DB_PASSWORD - never printed, never on a command line."""

from __future__ import annotations

import json
from pathlib import Path

from pyinfra import host, logger
from pyinfra.api import operation
from pyinfra.api.exceptions import DeployError

from mmhelper.parts.config import password_digest  # the same slow salted digest on both sides
from mmhelper.parts.pg import REMOTE_DB_FILE
from tasks.adopt import adoption_pending
from tasks.common import current, helper, managed_file, settings, upload_secret
from tasks.config import DB_CA_PATH
from tasks.db_tls import ensure_ca
from tasks.dbplace import move_pending


def password_action(now: dict, env_password: str | None) -> str | None:
    """What to do with the password file: None, "upload" (the workstation's) or "generate"."""
    pw = now["password"]
    if env_password is not None:
        if pw["exists"] and password_digest(env_password, pw["salt"]) == pw["digest"]:
            return None
        return "upload"
    if pw["exists"]:
        return None
    facts = now["install"].get("adoption") or {}
    if adoption_pending(now) and facts.get("has_password") and facts.get("engine") != "mysql":
        return None  # the adoption keeps the hand install's password (MySQL's stays MySQL's)
    return "generate"


@operation()
def password_in_place():
    """The database password file, /etc/mattermost/private/db-password (root, 0600)."""
    s, now = settings(), current()
    action = password_action(now, s.db_password)
    if action is None:
        host.noop("the database password is in place")
    elif action == "upload":
        yield from upload_secret(s.db_password + "\n", s.password_file, s.private_dir)
    else:
        yield helper("db-password", s.password_file)


def database_ok(now: dict, db_user: str, createdb: bool = False) -> bool:
    db = now["db"]
    return bool(db.get("role_exists") and db.get("db_exists") and db.get("db_owner") == db_user
                and db.get("login_ok") and (db.get("createdb") or not createdb))


@operation()
def role_and_database(password_changes: bool):
    """Create or fix the role (password from the file, via stdin) and its database."""
    s, now = settings(), current()
    createdb = s.place.role == "database"
    if database_ok(now, s.db_user, createdb) and not password_changes:
        host.noop(f"role {s.db_user} logs in to database {s.db_name}")
        return
    yield helper("database", {"user": s.db_user, "name": s.db_name, "password_file": s.password_file,
                              "createdb": createdb})


def remote_spec(s) -> dict:
    """Where the helper finds Mattermost's remote database (mmhelper.parts.pg.REMOTE_DB_FILE)."""
    return {"host": s.place.host, "port": s.place.port, "user": s.db_user, "database": s.db_name,
            "sslrootcert": DB_CA_PATH, "maintenance_db": s.place.maintenance_db, "password_file": s.password_file}


def ca_pem(s) -> str:
    """The CA an "app" server trusts for its database: the operator's file, else the deploy's own."""
    if s.place.ca_file and Path(s.place.ca_file).exists():
        return Path(s.place.ca_file).read_text()
    return ensure_ca(s.place.ca_dir).read_text()


@operation()
def remote_login(will_change: bool):
    """Mattermost's role logs in to its remote database over verify-full TLS (checked on the
    server, before config.json and the service are touched)."""
    s, now = settings(), current()
    if now["db"].get("login_ok") and not will_change:
        host.noop(f"role {s.db_user} logs in to {s.db_name} at {s.place.host} (TLS, name checked)")
        return
    yield helper("db-remote-check", remote_spec(s))


def managed_database_checked():
    """A database this deploy does not run (db_ca_file names another CA: a managed service):
    say what the deploy can do there, and refuse before any change when Mattermost's role
    cannot log in (a database server in the inventory may still be converged in this run:
    its check comes later, before config.json and the service)."""
    s, now = settings(), current()
    if not s.place.remote or s.place.own_ca:
        return
    logger.warning(f"    [{s.host}] the database at {s.place.host} is not run by this deploy (db_ca_file names "
                   f"another CA): it logs in as {s.db_user} only - it does not create the role or the database, "
                   "patch, restart or configure that server; backups dump it from here over TLS; a restore needs "
                   f"CREATEDB for {s.db_user}; `make move-database` needs pg_create_subscription there, else it "
                   "copies with dump and restore")
    db = now["db"]
    if password_action(now, s.db_password) is not None or not db.get("login_tried"):
        return  # a fresh server (no password or client there yet): checked once they are placed
    if not db.get("login_ok"):
        raise DeployError(f"{s.host}: {s.db_user} cannot log in to {s.db_name} at {s.place.host}:{s.place.port}: "
                          f"{db.get('login_error') or 'no password'} - check db_host (the name in its certificate), "
                          "db_ca_file, the database and role at the provider and MATTERMOST_DB_PASSWORD (nothing was "
                          "changed)")


def configure():
    s = settings()
    password = password_in_place(name="Keep the database password on the server (root only)")
    if not s.place.remote:
        role_and_database(name=f"Create the PostgreSQL role {s.db_user} and database {s.db_name}",
                          password_changes=password.will_change)
        return password
    ca = managed_file(name=f"Trust the CA of the database server {s.place.host}", path=DB_CA_PATH,
                      content=ca_pem(s))
    changed = password.will_change or ca.will_change
    if move_pending(s, current()):
        # Mattermost still uses this server's database: the helper's work stays local too.
        logger.warning(f"    [{s.host}] the database is still on this server: `make move-database-plan`, then "
                       f"`make move-database` moves it to {s.place.host} (until then the DataSource stays as it is)")
    else:
        where = managed_file(name=f"Tell the server-side helper where the database is ({s.place.host})",
                             path=REMOTE_DB_FILE, content=json.dumps(remote_spec(s), indent=1, sort_keys=True) + "\n")
        changed = changed or where.will_change
    remote_login(name=f"Check that {s.db_user} logs in to {s.db_name} at {s.place.host}:{s.place.port} "
                      "(TLS, CA and name checked)", will_change=changed)
    return password
