"""make archive-stale: archive the channels `make channels` marks stale (no post for
mattermost_stale_days). The run lists them and asks first (YES=1 does not)."""

from pyinfra import host

from tasks.common import settings
from tasks.housekeeping import Action, done
from tasks.reports import stale_channels
from tasks.state import read as read_server_state
from verbs.people import housekeeping_state
from verbs.server_actions import require_deployed

s = settings()
read_server_state(housekeeping=True)
require_deployed()
stale = stale_channels(housekeeping_state(s.host), s.stale_days)
if not stale:
    print(f"    [{host.name}] no stale channels (nothing posted for {s.stale_days} days)")
for ref in stale:
    action = Action("archive-channel", ref, {})
    done(name=f"{action.sentence()} (stale: no post for {s.stale_days} days)", action=action)
