"""make retention [APPLY=1]: Team Edition has no retention policies - this deletes posts
and their files older than mattermost_retention_days, as a database job. Without APPLY
it only counts (a dry run that runs); with APPLY=1 it asks, backs up, then deletes."""

from pyinfra import host
from pyinfra.api import operation
from pyinfra.api.exceptions import DeployError

from tasks.backup import backup_spec
from tasks.common import helper, settings, streamed
from tasks.files import bucket_spec
from verbs.server_actions import require_deployed


@operation(is_idempotent=False)
def retention_run(days: int, apply: bool):
    s = settings()
    yield streamed(helper("retention", {"days": days, "apply": apply, "db": s.db_name, "data_dir": s.data_dir,
                                        "config_file": s.config_file, "files": bucket_spec(s, writer=True)}))


@operation(is_idempotent=False)
def backed_up():
    yield streamed(helper("backup", backup_spec(settings(), kind="pre-retention")))


s = settings()
require_deployed()
if not s.retention_days:
    raise DeployError("retention is off: set mattermost_retention_days (e.g. 365) for this server first")
if host.data.get("retention_apply"):
    backed_up(name="Back up before deleting old posts")
    retention_run(name=f"Delete posts and files older than {s.retention_days} days", days=s.retention_days,
                  apply=True)
else:
    retention_run(name=f"Count posts and files older than {s.retention_days} days (dry run: nothing is deleted)",
                  days=s.retention_days, apply=False)
