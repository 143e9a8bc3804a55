"""make offboard USER=<username>: deactivate the user (their sessions are revoked). The
run shows what it will do and asks first (YES=1 does not); done already, it says so."""

from pyinfra import host
from pyinfra.api.exceptions import DeployError

from tasks.common import settings
from tasks.housekeeping import Action, done
from tasks.state import read as read_server_state
from verbs.people import find_user, housekeeping_state
from verbs.server_actions import require_deployed

s = settings()
read_server_state(housekeeping=True)
require_deployed()
username = host.data.get("offboard_user")
if not username:
    raise DeployError("say who: make offboard USER=<username>")
user = find_user(housekeeping_state(s.host), str(username), s.host)
action = Action("deactivate-user", user["username"], {})
if user["active"]:
    done(name=action.sentence(), action=action)
else:
    print(f"    [{s.host}] {user['username']} is already deactivated: nothing to do")
