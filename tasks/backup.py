"""Backups beyond upgrades: the backup folder (root only), the spec the helper reads,
a nightly systemd timer with retention (`mattermost_backup_schedule`), and the off-server
copies with restic (`backup_offsite_*`): its credentials placed root-only on the server,
the repository host's key pinned."""

from __future__ import annotations

import json

from tasks.base import folders
from tasks.common import HELPER, managed_file, render, settings, timer_off, timer_on
from tasks.files import bucket_spec
from tasks.secrets import offsite_secrets, secret_in_place

SPEC_FILE = "/etc/mattermost/backup.json"
SERVICE = "/etc/systemd/system/mattermost-backup.service"
TIMER = "/etc/systemd/system/mattermost-backup.timer"


def backup_spec(s, kind: str = "nightly") -> dict:
    return {"kind": kind, "backup_dir": s.backup_dir, "keep": s.backup_keep, "install_dir": s.install_dir,
            "config_file": s.config_file, "data_dir": s.data_dir, "db": {"name": s.db_name},
            "offsite": offsite_spec(s), "files": bucket_spec(s)}


def offsite_spec(s) -> dict | None:
    """How the server reaches the off-server repository: paths of root-only files, never
    their contents."""
    if not s.offsite.repository:
        return None
    sftp = s.offsite.repository.startswith("sftp:")
    return {"repository": s.offsite.repository, "password_file": s.offsite_password_file,
            "ssh_key": s.offsite_key_file if sftp else None, "known_hosts": s.offsite_known_hosts_file if sftp else None,
            "env_file": s.offsite_env_file if s.offsite.env else None, "keep": s.offsite.keep, "host": s.host,
            "status_file": s.offsite_status_file, "cache_dir": "/var/cache/restic"}


def configure():
    s = settings()
    folders(name=f"Create the backup folder {s.backup_dir} (root only)",
            wanted=[(s.backup_dir, "root", "root", 0o700)])
    spec = managed_file(name="Write the nightly backup's settings", path=SPEC_FILE,
                        content=json.dumps(backup_spec(s), indent=2, sort_keys=True) + "\n")
    if s.offsite.repository:
        names = {s.offsite_password_file: "the restic repository password", s.offsite_key_file: "the SFTP key",
                 s.offsite_env_file: "the repository's credentials (restic.env)"}
        for path in sorted(offsite_secrets(s)):
            secret_in_place(name=f"Keep {names[path]} on the server (root only)", path=path, what=names[path])
        if s.offsite.known_hosts:
            managed_file(name="Pin the SFTP repository host's key", path=s.offsite_known_hosts_file,
                         content=s.offsite.known_hosts)
    if not s.backup_schedule:
        timer_off(name="Remove the nightly backup timer (mattermost_backup_schedule is None)",
                  timer="mattermost-backup.timer", files=[TIMER, SERVICE], what="nightly backup timer")
        return
    units = [
        managed_file(name="Install the backup service unit", path=SERVICE,
                     content=render("etc/systemd/system/mattermost-backup.service.j2", s=s, helper=HELPER)),
        managed_file(name="Install the nightly backup timer", path=TIMER,
                     content=render("etc/systemd/system/mattermost-backup.timer.j2", s=s)),
    ]
    timer_on(name=f"Enable the nightly backup ({s.backup_schedule})", timer="mattermost-backup.timer",
             state_key="backup_timer", what="the nightly backup timer", reload_units=any(op.will_change for op in [spec, *units]))
