"""make unhold: allow again an upgrade that failed and was rolled back."""

from verbs.server_actions import hold_lifted, require_deployed

require_deployed()
hold_lifted(name="Lift the hold on a failed upgrade")
