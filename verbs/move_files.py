"""make move-files [BACK=1]: the uploaded files into the bucket the settings name (BACK=1:
back to the local data folder): copied while Mattermost serves, a short stop for the final
pass, the driver switched, started, every file checked in its new place (see
mmhelper/files_move.py). Resumable after a kill; the source is kept."""

from pyinfra import host
from pyinfra.api import operation
from pyinfra.api.exceptions import DeployError

from tasks import files
from tasks.common import helper, settings, streamed
from verbs.server_actions import require_deployed


@operation(is_idempotent=False)
def files_moved(to: str):
    """Run (or continue) the move on the server."""
    yield streamed(helper("files-move", files.move_spec(settings(), to)))


require_deployed()
if not settings().files.bucket_configured:
    raise DeployError(f"{host.name}: no bucket in the settings: set files_s3_bucket, files_s3_endpoint and the keys, "
                      "then `make deploy` (nothing was changed)")
TO = "local" if host.data.get("move_back") else "s3"
files_moved(name="Move the uploaded files " + ("into the bucket" if TO == "s3" else "back to the local data folder")
            + " (copy while serving, final pass, switch, start, check every file)", to=TO)
