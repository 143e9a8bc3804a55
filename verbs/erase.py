"""make erase USER=<username>: erase the user permanently, with all their posts (the
right to erasure). Needs the username typed again as confirmation (CONFIRM=<username>
without a terminal); takes a backup first."""

from pyinfra import host
from pyinfra.api.exceptions import DeployError

from tasks.common import settings
from tasks.housekeeping import Action, backed_up_before_deletion, done
from tasks.state import read as read_server_state
from verbs.people import find_user, housekeeping_state
from verbs.server_actions import require_deployed

s = settings()
read_server_state(housekeeping=True)
require_deployed()
username = str(host.data.get("erase_user") or "")
if not username:
    raise DeployError("say who: make erase USER=<username>")
if str(host.data.get("erase_confirmed") or "") != username:
    raise DeployError(f"erasing {username} is permanent: confirm by typing the username (CONFIRM={username}); "
                      "nothing was changed")
user = find_user(housekeeping_state(s.host), username, s.host)
action = Action("erase-user", user["username"], {})
backed_up_before_deletion(name="Back up before permanent deletion")
done(name=action.sentence(), action=action)
