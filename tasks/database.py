"""PostgreSQL for Mattermost: the role and database from the install guide, with a
password that is generated on the server (root-only file) or taken from the
workstation's MATTERMOST_DB_PASSWORD - never printed, never on a command line."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import operation

from mmhelper.config import password_digest  # the same slow salted digest on both sides
from tasks.adopt import adoption_pending
from tasks.common import current, helper, settings, upload_secret


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


def database_ok(now: dict, db_user: str) -> bool:
    db = now["db"]
    return bool(db.get("role_exists") and db.get("db_exists") and db.get("db_owner") == db_user
                and db.get("login_ok"))


@operation()
def role_and_database(password_changes: bool):
    """Create or fix the role (password from the file, via stdin) and its database."""
    s, now = settings(), current()
    if database_ok(now, s.db_user) and not password_changes:
        host.noop(f"role {s.db_user} logs in to database {s.db_name}")
        return
    yield helper("database", {"user": s.db_user, "name": s.db_name, "password_file": s.password_file})


def configure():
    s = settings()
    password = password_in_place(name="Keep the database password on the server (root only)")
    role_and_database(name=f"Create the PostgreSQL role {s.db_user} and database {s.db_name}",
                      password_changes=password.will_change)
    return password
