"""make db-migrate-rollback [DISCARD=1]: back to the MySQL database the migration left
untouched - config.json points at it again, Mattermost started and checked. Refused when
Mattermost was upgraded since, or (without DISCARD=1) when posts were written on PostgreSQL
since the switch."""

from pyinfra import host
from pyinfra.api import operation

from tasks import db_migrate
from tasks.common import helper, settings, streamed
from verbs.server_actions import require_deployed


@operation(is_idempotent=False)
def back_on_mysql():
    """Switch Mattermost back to the MySQL database and check its health."""
    yield streamed(helper("db-migrate-rollback", db_migrate.spec(settings(), discard=bool(host.data.get("discard")))))


require_deployed()
back_on_mysql(name="Go back to the MySQL database (untouched since the migration)")
