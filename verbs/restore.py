"""make restore BACKUP=<name>|latest: restore database, config.json and data from a backup
on the server, start its release, verify health. The state before the restore is kept
(renamed database and data folder) until the operator removes it."""

from pyinfra import host

from verbs.server_actions import backup_restored, require_deployed

require_deployed()
backup = str(host.data.get("restore_backup") or "latest")
backup_restored(name=f"Restore backup {backup} (database, config.json, data) and verify health", backup=backup)
