"""make rebuild [BACKUP=name]: bring a server back from the OFF-SERVER repository alone - the
newest backup there (or the one named) is fetched with restic into the backup folder and
restored (database, config.json, data, its release), then checked against what was counted
when it was taken. For a server that was lost: a fresh one, `make deploy` with the same
settings (and mattermost_version pinned to the backup's version), then `make rebuild`.

make restore-drill: the same on a scratch server (TARGET=...), as a rehearsal: it refuses
a server where people already chat, unless DRILL_REPLACE=1.
"""

from pyinfra import host, logger
from pyinfra.api import FunctionCommand, operation
from pyinfra.api.exceptions import DeployError

from tasks.backup import offsite_spec
from tasks.common import helper, run_on, settings
from tasks.state import read as read_server_state
from verbs.server_actions import require_deployed, restore_spec


def rebuild(state, host, wanted: str, drill: bool):
    s = settings()
    ok, output = run_on(host, helper("offsite-fetch", {**offsite_spec(s), "backup_dir": s.backup_dir, "backup": wanted}),
                        print_output=False)
    if not ok:
        logger.error(f"    [{host.name}] ERROR: {output.stderr.strip().removeprefix('ERROR: ')[-400:]}")
        return False
    name = output.stdout.strip().splitlines()[-1]
    logger.info(f"    [{host.name}] fetched backup {name} from {s.offsite.repository}")
    ok, _ = run_on(host, helper("restore", restore_spec(s, name)), print_output=True)
    if not ok:
        return False
    ok, _ = run_on(host, helper("restore-check", {**restore_spec(s, name), "user": s.user}), print_output=True)
    return ok


@operation(is_idempotent=False)
def rebuilt(wanted: str, drill: bool):
    yield FunctionCommand(rebuild, (), {"wanted": wanted, "drill": drill})


s = settings()
now = read_server_state(housekeeping=True)
require_deployed()
if not s.offsite.repository:
    raise DeployError(f"{host.name}: no off-server repository: set backup_offsite_repository (and RESTIC_PASSWORD) "
                      "for this server first (nothing was changed)")
drill = bool(host.data.get("restore_drill"))
people = [u for u in (now.get("housekeeping") or {}).get("users", []) if not u.get("is_bot")]
if drill and people and not host.data.get("drill_replace"):
    raise DeployError(f"{host.name}: a restore drill replaces this server's data and {len(people)} people have "
                      "accounts here: drill on a scratch server (TARGET=...), or DRILL_REPLACE=1 if this one is scratch "
                      "(nothing was changed)")
wanted = str(host.data.get("restore_backup") or "latest")
rebuilt(name=f"{'Restore drill' if drill else 'Rebuild'}: fetch backup {wanted} from {s.offsite.repository}, restore "
             "and check it", wanted=wanted, drill=drill)
