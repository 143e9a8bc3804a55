"""Operations for the verbs that act on a deployed server through its helper."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from pyinfra import host, logger
from pyinfra.api import FunctionCommand, operation
from pyinfra.api.exceptions import DeployError

from tasks.backup import backup_spec
from tasks.common import HELPER, ROOT, helper, path_info, run_on, settings, streamed
from tasks.files import bucket_spec
from tasks.state import read as read_server_state


def require_deployed() -> None:
    s = settings()
    if s.place.role == "database":
        raise DeployError(f"{s.host} is a database server (mattermost_role \"database\"): this verb works on its "
                          "Mattermost server - run it with --limit <that server> (nothing was changed)")
    read_server_state()
    if not path_info(HELPER):
        raise DeployError(f"{s.host}: the deploy has not run on this server yet: run `make deploy` first")


def single_server_only(what: str) -> str | None:
    """Why `what` is refused on a server of a split layout (mattermost_role "app" or "database"),
    else None: these moves are built and tested for one server holding both parts."""
    s = settings()
    if s.place.role == "all":
        return None
    return (f"{s.host}: {what} is built for one server holding Mattermost and PostgreSQL; this one has "
            f"mattermost_role {s.place.role!r} - not supported yet (nothing was changed)")


def restore_spec(s, backup: str | None = None) -> dict:
    return {
        "backup": backup, "backup_dir": s.backup_dir, "releases_dir": s.releases_dir,
        "install_dir": s.install_dir, "config_file": s.config_file, "data_dir": s.data_dir,
        "db": {"name": s.db_name, "owner": s.db_user}, "user": s.user, "service": "mattermost",
        "ping_url": s.ping_url, "timeout": s.health_timeout, "start_timeout": s.start_timeout, "hold_file": s.hold_file,
        "files": bucket_spec(s, writer=True),
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


REBOOT_MARKER = "/run/mattermost-deploy.before-reboot"  # /run is emptied by a reboot


def _run(host_, command, print_output: bool = False) -> tuple[bool, str]:
    status, output = run_on(host_, command, print_output)
    return status, output.stdout


def reboot_and_wait(state, host, expected: bool, timeout: int, version: str, mark, verb: str):
    """Reboot when required (or planned), then wait for SSH, systemd and a healthy
    Mattermost, and record it on the server (`mark`, a helper command). A marker in /run
    tells a rebooted server from one that is not down yet. For patch night and the
    release upgrade (`verb` is what the operator re-runs after a failure)."""
    s = settings()
    _, flag = _run(host, "test -e /run/reboot-required && echo required || echo not-required")
    if not expected and flag.strip() != "required":
        logger.info(f"    [{host.name}] no reboot required")
        return True
    logger.info(f"    [{host.name}] rebooting ({'planned' if expected else 'the upgrade asks for it'})")
    _run(host, f"touch {REBOOT_MARKER} && (sleep 1 && systemctl reboot) </dev/null >/dev/null 2>&1 &")
    time.sleep(3)
    host.disconnect()
    deadline = time.time() + timeout
    while True:
        host.connect(show_errors=False)
        if host.connected:
            _, marker = _run(host, f"test -e {REBOOT_MARKER} && echo before || echo after")
            if marker.strip() == "after":
                break
            host.disconnect()
        if time.time() > deadline:
            logger.error(f"    [{host.name}] ERROR: the server did not come back within {timeout}s of the reboot: "
                         f"check its console; then re-run `{verb}` to continue")
            return False
        time.sleep(2)
    logger.info(f"    [{host.name}] back after the reboot; waiting for systemd and "
                f"{'PostgreSQL' if s.place.role == 'database' else 'Mattermost'}")
    _run(host, f"timeout {timeout} systemctl is-system-running --wait >/dev/null 2>&1; true")
    if s.place.role == "database":
        status, _ = _run(host, "systemctl is-active --quiet postgresql", print_output=True)
        if not status:
            logger.error(f"    [{host.name}] ERROR: PostgreSQL is not running after the reboot: check "
                         f"`journalctl -u postgresql@*`; then re-run `{verb}` to continue")
    else:
        spec = {"url": s.ping_url, "version": version, "timeout": s.health_timeout, "service": "mattermost"}
        status, _ = _run(host, helper("wait-healthy", spec), print_output=True)
    if status:
        status, _ = _run(host, mark)
    return status


def save_report(kind: str, host_name: str, record: dict, text: str) -> str:
    """A run's report kept on the workstation: reports/<kind>-<host>-<start>.txt and its record
    beside it as .json; shown at the end of the run. Returns the stamp of its name."""
    s = settings()
    folder = Path(s.reports_dir) if Path(s.reports_dir).is_absolute() else ROOT / s.reports_dir
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(record.get("started", time.time())))
    path = folder / f"{kind}-{host_name}-{stamp}.txt"
    path.write_text(text + "\n")
    path.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    shown = "\n" + text + f"\n  report: {path}\n"
    if logger.isEnabledFor(logging.INFO):
        logger.info(shown)
    else:  # a verb's own script (verbs/session.py keeps pyinfra's logger at warnings)
        print(shown, flush=True)
    return stamp


@operation(is_idempotent=False)
def reported(report, plan):
    """The run's end on the workstation: `report(state, host, plan)` reads the record, writes
    the report and says whether the run succeeded."""
    yield FunctionCommand(report, (plan,), {})


@operation()
def nothing_to_do(reason: str):
    host.noop(reason)
    return
    yield
