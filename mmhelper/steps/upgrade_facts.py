"""What the checks before an upgrade's hops read on the server (tasks/upgrade_checks.py holds
the rules): the active accounts as Mattermost counts them for its limit, whether a licence is
in force, the PostgreSQL major version, the sign-in methods and plugins switched on, plugins
installed by hand, the settings a newer version no longer has, and the disk the backup before
each hop needs. Read-only; in the one state read.
"""

import json
import os

from mmhelper.parts.common import Failure, free_bytes
from mmhelper.parts.config import get_dotted
from mmhelper.parts.pg import psql_as_postgres

# Mattermost's count for its limit: users not deleted and not bots (UserCountOptions{}: the
# zero options leave both out; channels/store/sqlstore/user_store.go Count).
ACTIVE_USERS = ("SELECT count(*) FROM users u WHERE u.deleteat = 0 AND NOT EXISTS "
                "(SELECT 1 FROM bots b WHERE b.userid = u.id)")
LICENSED = "SELECT count(*) FROM systems WHERE name = 'ActiveLicenseId' AND value <> ''"
# A plugin that Mattermost installed from its file store carries this marker in its folder
# (managedPluginFileName in channels/app/plugin.go); a folder without it was unpacked by hand.
MANAGED_MARKER = ".filestore"


def upgrade_facts(spec):
    """{active_users, licensed, postgres_major, login, plugins_enabled, plugins_unmanaged,
    settings, disk} of the server's Mattermost, or {"error": why not read}."""
    try:
        with open(spec["config_file"]) as f:
            config = json.load(f)
    except (OSError, ValueError) as e:
        return {"error": f"config.json not readable: {e}"}
    db = spec["db"]
    try:
        rows = psql_as_postgres(f"SELECT 'active', ({ACTIVE_USERS})::text UNION ALL SELECT 'licensed', ({LICENSED})::text "
                                "UNION ALL SELECT 'version', current_setting('server_version_num') UNION ALL "
                                "SELECT 'size', pg_database_size(current_database())::text;", db).stdout
    except Failure as e:
        return {"error": f"the database could not be read: {e}"}
    values = dict(line.split("|", 1) for line in rows.splitlines() if "|" in line)
    states = get_dotted(config, "PluginSettings.PluginStates")[0] or {}
    plugins_dir = spec["plugins_dir"]
    installed = sorted(name for name in os.listdir(plugins_dir) if os.path.isdir(os.path.join(plugins_dir, name))) \
        if os.path.isdir(plugins_dir) else []
    unmanaged = [name for name in installed if not os.path.exists(os.path.join(plugins_dir, name, MANAGED_MARKER))]
    # PluginStates names plugins that are not installed too (Mattermost's defaults enable the
    # prepackaged ones, e.g. playbooks): what runs is what is installed and enabled.
    playbooks = 0
    if "playbooks" in installed:
        found = psql_as_postgres("SELECT CASE WHEN to_regclass('public.ir_playbook') IS NULL THEN 0 ELSE "
                                 "(SELECT count(*) FROM ir_playbook WHERE deleteat = 0) END;", db).stdout.strip()
        playbooks = int(found) if found.isdigit() else 0
    size = int(values.get("size") or 0)
    backup_dir = spec["backup_dir"] if os.path.exists(spec["backup_dir"]) else os.path.dirname(spec["backup_dir"])
    return {
        "active_users": int(values["active"]) if values.get("active", "").isdigit() else None,
        "licensed": values.get("licensed") not in (None, "0"),
        "postgres_major": int(values["version"]) // 10000 if values.get("version", "").isdigit() else None,
        "login": {"gitlab": bool(get_dotted(config, "GitLabSettings.Enable")[0])},
        "plugins_enabled": sorted(pid for pid, state in states.items()
                                  if isinstance(state, dict) and state.get("Enable") and pid in installed),
        "playbooks": playbooks,
        "plugins_unmanaged": unmanaged,
        "settings": {key: get_dotted(config, key)[0] for key in spec.get("settings", [])
                     if get_dotted(config, key)[1]},
        "disk": {"path": backup_dir, "free": free_bytes(backup_dir), "need": size + (64 << 20)},
    }
