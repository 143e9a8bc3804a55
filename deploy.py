"""Converge a Debian/Ubuntu server to a running, safe Mattermost.

    pyinfra inventory.py deploy.py                 # apply (make deploy)
    pyinfra inventory.py deploy.py --dry --diff    # what would change (make diff)

Reads the server's state once and decides the version (policy vs GitHub's releases),
then, in order: base packages and folders, the verified release(s), adoption of a hand
install, PostgreSQL, config.json, the service (or the upgrade), nginx, backups, the
declared channels, users and emoji, the operations notices,
OS update settings (needrestart, unattended-upgrades), the firewall, fail2ban, the OS hardening
(lynis), SSH access.
Releases are downloaded and verified before anything touches the running service.

A database server of other machines (mattermost_role "database", tasks/db_server.py) gets
PostgreSQL, its TLS, pg_hba and firewall instead - converged before the Mattermost servers
in the same run, so they find it ready.
"""

from tasks import (
    adopt,
    backup,
    base,
    config,
    database,
    db_server,
    firewall,
    hardening,
    housekeeping,
    nginx,
    notices,
    os_updates,
    release,
    security,
    service,
    ssh_access,
    state,
)
from tasks.common import after_database_servers, settings

s = settings()  # bad settings or a missing secret stop here, before any change
state.read()  # one round trip: what the server is now
if s.place.role == "database":
    db_server.configure()
else:
    adopt.checked()  # a Mattermost this deploy cannot adopt is refused here by name, before any change
    database.managed_database_checked()  # a managed database that refuses stops here, before any change
    release.decision()  # which version, and whether an upgrade is due or refused
    base.configure()
    release.configure()
    adopted = adopt.configure()
# Every server passes here: a Mattermost server goes on only once the database servers of the
# run are converged (pyinfra orders each server's operations; this shared one joins them).
after_database_servers(name="Database servers of this run converged first")
if s.place.role != "database":
    password = database.configure()
    merged = config.configure(password)
    service.configure([adopted, password, merged])
    nginx.configure()
    backup.configure()
    housekeeping.configure()
    notices.configure()
    os_updates.configure()
    firewall.configure()
    security.configure()
    hardening.configure()
    ssh_access.configure()
