"""Operations for the verbs that act on a deployed server through its helper."""

from __future__ import annotations

from pyinfra.api import operation
from pyinfra.api.exceptions import DeployError

from tasks.backup import backup_spec
from tasks.common import HELPER, helper, path_info, settings, streamed
from tasks.state import read as read_server_state


def require_deployed() -> None:
    s = settings()
    read_server_state()
    if not path_info(HELPER):
        raise DeployError(f"{s.host}: the deploy has not run on this server yet: run `make deploy` first")


def restore_spec(s, backup: str | None = None) -> dict:
    return {
        "backup": backup, "backup_dir": s.backup_dir, "releases_dir": s.releases_dir,
        "install_dir": s.install_dir, "config_file": s.config_file, "data_dir": s.data_dir,
        "db": {"name": s.db_name, "owner": s.db_user}, "user": s.user, "service": "mattermost",
        "ping_url": s.ping_url, "timeout": s.health_timeout, "start_timeout": s.start_timeout, "hold_file": s.hold_file,
    }


@operation(is_idempotent=False)
def backup_taken():
    """A backup now, while Mattermost keeps serving."""
    yield streamed(helper("backup", backup_spec(settings(), kind="manual")))


@operation(is_idempotent=False)
def backup_restored(backup: str):
    """Restore a backup (database, config.json, data) and verify health."""
    yield streamed(helper("restore", restore_spec(settings(), backup)))


@operation(is_idempotent=False)
def rolled_back():
    """Back to the release before the last upgrade, with that upgrade's backup."""
    yield streamed(helper("rollback", restore_spec(settings())))


@operation(is_idempotent=False)
def hold_lifted():
    """Allow the held (failed) upgrade again."""
    yield streamed(helper("unhold", {"hold_file": settings().hold_file}))
