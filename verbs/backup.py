"""make backup: a backup now - database dump, config.json, data snapshot - while
Mattermost keeps serving; kept with the nightly ones (mattermost_backup_keep)."""

from verbs.server_actions import backup_taken, require_deployed

require_deployed()
backup_taken(name="Back up the database, config.json and the data folder now")
