"""make rollback: return to the release before the last upgrade, with the database and
config from that upgrade's backup; the version left is held so deploys don't retry it."""

from verbs.server_actions import require_deployed, rolled_back

require_deployed()
rolled_back(name="Roll back to the release before the last upgrade")
