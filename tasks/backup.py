"""Backups beyond upgrades: the backup folder (root only), the spec the helper reads,
and a nightly systemd timer with retention (`mattermost_backup_schedule`)."""

from __future__ import annotations

import json

from pyinfra import host
from pyinfra.api import StringCommand, operation

from tasks.base import folders
from tasks.common import HELPER, current, managed_file, path_info, render, settings

SPEC_FILE = "/etc/mattermost/backup.json"
SERVICE = "/etc/systemd/system/mattermost-backup.service"
TIMER = "/etc/systemd/system/mattermost-backup.timer"


def backup_spec(s, kind: str = "nightly") -> dict:
    return {"kind": kind, "backup_dir": s.backup_dir, "keep": s.backup_keep, "install_dir": s.install_dir,
            "config_file": s.config_file, "data_dir": s.data_dir, "db": {"name": s.db_name}}


@operation()
def timer_enabled(reload_units: bool):
    """Enable and start the nightly backup timer."""
    timer = current()["backup_timer"]
    if not reload_units and timer["enabled"] == "enabled" and timer["active"] == "active":
        host.noop("the nightly backup timer is enabled")
        return
    yield "systemctl daemon-reload && systemctl enable -q --now mattermost-backup.timer"


@operation()
def timer_removed():
    """No schedule: stop and remove the nightly backup timer if it exists."""
    if not path_info(TIMER):
        host.noop("no nightly backup timer")
        return
    yield StringCommand("systemctl", "disable", "--now", "mattermost-backup.timer", "2>/dev/null;",
                        "rm", "-f", TIMER, SERVICE, "&&", "systemctl", "daemon-reload")


def configure():
    s = settings()
    folders(name=f"Create the backup folder {s.backup_dir} (root only)",
            wanted=[(s.backup_dir, "root", "root", 0o700)])
    spec = managed_file(name="Write the nightly backup's settings", path=SPEC_FILE,
                        content=json.dumps(backup_spec(s), indent=2, sort_keys=True) + "\n")
    if not s.backup_schedule:
        timer_removed(name="Remove the nightly backup timer (mattermost_backup_schedule is None)")
        return
    units = [
        managed_file(name="Install the backup service unit", path=SERVICE,
                     content=render("etc/systemd/system/mattermost-backup.service.j2", s=s, helper=HELPER)),
        managed_file(name="Install the nightly backup timer", path=TIMER,
                     content=render("etc/systemd/system/mattermost-backup.timer.j2", s=s)),
    ]
    timer_enabled(name=f"Enable the nightly backup ({s.backup_schedule})",
                  reload_units=any(op.will_change for op in [spec, *units]))
