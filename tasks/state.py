"""The run's one read of the server, composed here from what each task manages: the
paths it keeps (type, owner, mode, checksum), the config keys it owns, the housekeeping
and OS-update parts. deploy.py and the verbs call read() first; the tasks then decide from
tasks.common.current(). The tasks never import this module (no import circle: this module
stands above them).
"""

from __future__ import annotations

import json

from mmhelper.parts.pg import REMOTE_DB_FILE
from tasks import (
    backup,
    base,
    db_server,
    email,
    files,
    firewall,
    hardening,
    nginx,
    notices,
    os_updates,
    secrets,
    security,
    service,
    ssh_access,
)
from tasks.common import HELPER, MYSQL_MIGRATION_PACKAGES, packages, read_state, settings
from tasks.config import DB_CA_PATH, desired_config
from tasks.database import ca_pem, remote_spec
from tasks.housekeeping import declared, helper_spec
from tasks.os_release import NEXT
from tasks.settings import Settings
from tasks.upgrade_checks import removed_settings


def read(os_updates: str | None = None, housekeeping: bool = False, os_release: bool = False) -> dict:
    """What the server is now, read once per run; the first call decides what it holds.

    os_updates: None (not needed), "cached" (pending upgrades from the server's own package
    lists) or "refresh" (lists refreshed first, into a private folder).
    housekeeping: also read teams, channels, users and emoji (reports); the deploy reads them
    anyway when housekeeping is declared.
    os_release: also what a Debian release upgrade would do (simulated against the next
    release's package lists in a private folder)."""
    s = settings()
    if s.place.role == "database":
        return db_server.read_state_of(s, os_updates)
    return read_state(query(s, os_updates, housekeeping, os_release))


def managed_paths(s: Settings) -> list[str]:
    """Every path whose type, owner, mode and checksum the state query reports: the
    files and folders each task manages, named where that task defines them."""
    return [
        HELPER, s.managed_config_file, service.UNIT, service.client_root_html(s), base.PROFILE,
        *(folder for folder, *_ in base.wanted_folders(s)),
        nginx.SITE, nginx.ENABLED, nginx.DEFAULT_SITE, nginx.CACHE_DIR, nginx.WEBROOT, nginx.ACME_CA,
        nginx.CERTBOT_DROPIN, s.self_signed_certificate, s.self_signed_key,
        s.backup_dir, backup.SPEC_FILE, backup.SERVICE, backup.TIMER, s.offsite_known_hosts_file,
        notices.SPEC_FILE, notices.SERVICE, notices.TIMER,
        os_updates.NEEDRESTART_CONF, os_updates.AUTO_UPGRADES, os_updates.UNATTENDED_CONF,
        firewall.CONF, firewall.STOP_DROPIN, ssh_access.SUDOERS, ssh_access.SSHD_DROPIN,
        files.CA_PATH, DB_CA_PATH, REMOTE_DB_FILE,
        *security.PATHS, *hardening.PATHS,
    ]


def query(s: Settings, os_updates: str | None = None, housekeeping: bool = False, os_release: bool = False) -> str:
    read_housekeeping = housekeeping or declared(s)
    return json.dumps({
        "packages": packages(s) + MYSQL_MIGRATION_PACKAGES,  # the latter installed on MySQL servers only
        "user": s.user,
        "paths": managed_paths(s),
        "file_keys": hardening.query_keys(),
        "install_dir": s.install_dir,
        "adopt_path": s.adopt_path,
        "releases_dir": s.releases_dir,
        "config_file": s.config_file,
        "desired_config": desired_config(s),
        "password_file": s.password_file,
        "db": {"user": s.db_user, "name": s.db_name, "remote": remote_spec(s) if s.place.remote else None,
               "ca_pem": ca_pem(s) if s.place.remote else None},
        "service": "mattermost",
        "ping_url": s.ping_url,
        "hold_file": s.hold_file,
        "upgrade_facts": {"config_file": s.config_file, "db": s.db_name, "plugins_dir": f"{s.state_dir}/plugins",
                          "backup_dir": s.backup_dir, "settings": removed_settings()},
        "db_migrate_state_file": f"{s.deploy_state_dir}/db-migrate.json",
        "secret_files": secrets.secret_paths(s),
        "smtp_probe": email.probe(s),
        "files_probe": files.probe_spec(s.files, s.private_dir),
        "notices": {"checks": notices.checks_spec(s), "full": notices.spec(s) if s.notices.channel else None},
        "offsite_status_file": s.offsite_status_file if s.offsite.repository else None,
        "backup_dir": s.backup_dir,
        "acme_domain": s.domain if s.acme_email else None,
        "housekeeping": helper_spec(s) if read_housekeeping else None,
        "ssh_admin_user": s.ssh.admin_user,
        "os_release": os_release and {"next": NEXT, "lock_file": s.os_upgrade_lock_file, "db": s.db_name,
                                      "state_file": s.os_upgrade_state_file,
                                      "work_dir": f"{s.deploy_state_dir}/os-upgrade-sim"},
        "os": os_updates and {"refresh": os_updates == "refresh", "lists_dir": f"{s.deploy_state_dir}/apt-lists",
                              "lock_file": s.patch_lock_file, "state_file": s.patch_state_file},
    }, sort_keys=True)


