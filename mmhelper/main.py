"""Server-side helper of the Mattermost deploy (installed by the deploy; stdlib only).

pyinfra runs it over SSH for the steps that must happen ON the server and must not leave
it half-done: reading the server's state in one round trip, downloading and verifying a
release before anything is unpacked, merging the deploy's keys into config.json,
adopting a hand-installed /opt/mattermost, waiting for a healthy ping.

Every subcommand either completes or leaves the server as it was, and ends a failure
with one line `ERROR: what happened: what to do`. Secrets (the database password) are
read from root-only files and never printed or put on a command line.

    mmhelper.py state QUERY_JSON
    mmhelper.py fetch-release SPEC_JSON
    mmhelper.py adopt SPEC_JSON
    mmhelper.py db-password PASSWORD_FILE
    mmhelper.py database SPEC_JSON
    mmhelper.py db-remote-check SPEC_JSON
    mmhelper.py merge-config SPEC_JSON
    mmhelper.py switch SPEC_JSON
    mmhelper.py wait-healthy SPEC_JSON
    mmhelper.py start SPEC_JSON
    mmhelper.py backup SPEC_JSON|@FILE
    mmhelper.py offsite-fetch|restore-check SPEC_JSON
    mmhelper.py upgrade SPEC_JSON
    mmhelper.py restore SPEC_JSON
    mmhelper.py rollback SPEC_JSON
    mmhelper.py unhold SPEC_JSON
    mmhelper.py patch-lock|patch-upgrade|patch-restart|patch-mark|patch-finish|patch-after-database SPEC_JSON
    mmhelper.py os-lock|os-mark|os-sources|os-packages|os-postgresql|os-finish SPEC_JSON
    mmhelper.py acme-issue SPEC_JSON
    mmhelper.py housekeeping|bot-token|emoji-upload|export|retention SPEC_JSON
    mmhelper.py notices|notices-setup|notify SPEC_JSON|@FILE
    mmhelper.py db-migrate-plan|db-migrate|db-migrate-rollback SPEC_JSON
    mmhelper.py files-move-plan|files-move SPEC_JSON
    mmhelper.py db-move-plan|db-move|db-move-rollback SPEC_JSON
    mmhelper.py security-report SPEC_JSON
"""

import json
import sys

from mmhelper.jobs.db_migrate import migrate, plan
from mmhelper.jobs.db_migrate import rollback as db_rollback
from mmhelper.jobs.db_move import move as db_move
from mmhelper.jobs.db_move import plan as db_move_plan
from mmhelper.jobs.db_move import rollback as db_move_rollback
from mmhelper.jobs.files_move import move as files_move
from mmhelper.jobs.files_move import plan as files_move_plan
from mmhelper.jobs.os_release import os_finish, os_lock, os_mark, os_packages, os_postgresql, os_sources
from mmhelper.jobs.patching import after_database, patch_finish, patch_lock, patch_mark, patch_restart, patch_upgrade
from mmhelper.jobs.restore import restore, restore_check, rollback, unhold
from mmhelper.jobs.upgrade import upgrade
from mmhelper.parts.common import Failure
from mmhelper.parts.config import merge_config_file
from mmhelper.parts.service import start_service, wait_healthy
from mmhelper.steps.acme import acme_issue
from mmhelper.steps.adopt import adopt
from mmhelper.steps.backup import backup
from mmhelper.steps.database import database, db_password, db_remote_check
from mmhelper.steps.export import export
from mmhelper.steps.housekeeping import bot_token, emoji_upload, housekeeping
from mmhelper.steps.notices import notices_setup, notify, run_notices
from mmhelper.steps.offsite import offsite_fetch
from mmhelper.steps.release import client_writable, fetch_release, switch
from mmhelper.steps.retention import retention
from mmhelper.steps.security import security_report
from mmhelper.steps.state import state

COMMANDS = {
    "fetch-release": fetch_release,
    "adopt": adopt,
    "client-writable": client_writable,
    "database": database,
    "db-remote-check": db_remote_check,
    "merge-config": merge_config_file,
    "switch": switch,
    "wait-healthy": wait_healthy,
    "start": start_service,
    "backup": backup,
    "upgrade": upgrade,
    "restore": restore,
    "rollback": rollback,
    "unhold": unhold,
    "acme-issue": acme_issue,
    "housekeeping": housekeeping,
    "bot-token": bot_token,
    "emoji-upload": emoji_upload,
    "export": export,
    "retention": retention,
    "patch-lock": patch_lock,
    "patch-upgrade": patch_upgrade,
    "patch-restart": patch_restart,
    "patch-mark": patch_mark,
    "patch-finish": patch_finish,
    "patch-after-database": after_database,
    "os-lock": os_lock,
    "os-mark": os_mark,
    "os-sources": os_sources,
    "os-packages": os_packages,
    "os-postgresql": os_postgresql,
    "os-finish": os_finish,
    "offsite-fetch": offsite_fetch,
    "restore-check": restore_check,
    "notices": run_notices,
    "notices-setup": notices_setup,
    "notify": notify,
    "db-migrate-plan": plan,
    "db-migrate": migrate,
    "db-migrate-rollback": db_rollback,
    "files-move-plan": files_move_plan,
    "db-move-plan": db_move_plan,
    "db-move": db_move,
    "db-move-rollback": db_move_rollback,
    "files-move": files_move,
    "security-report": security_report,
}


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    command, arg = argv
    try:
        if command == "state":
            print(json.dumps(state(json.loads(arg))))
        elif command == "db-password":
            db_password(arg)
        elif command in COMMANDS:
            if arg.startswith("@"):  # a spec kept in a file (the nightly backup timer)
                with open(arg[1:]) as f:
                    arg = f.read()
            COMMANDS[command](json.loads(arg))
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except Failure as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    return 0
