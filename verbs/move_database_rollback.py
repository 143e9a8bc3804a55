"""make move-database-rollback [DISCARD=1]: back to the local database the move left as it
was at the stop - config.json points at it again, Mattermost started and checked. Refused
when Mattermost was upgraded since, or (without DISCARD=1) when people posted on the remote
database since the switch."""

from pyinfra import host
from pyinfra.api import operation

from tasks import db_move
from tasks.common import helper, settings, streamed
from verbs.server_actions import require_deployed


@operation(is_idempotent=False)
def back_on_local():
    """Switch Mattermost back to the local database and check its health."""
    yield streamed(helper("db-move-rollback", db_move.spec(settings(), discard=bool(host.data.get("discard")))))


require_deployed()
back_on_local(name="Go back to this server's database (untouched since the move)")
