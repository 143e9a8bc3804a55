"""make db-migrate: move the server's MySQL/MariaDB database to PostgreSQL at the installed
Mattermost version (see mmhelper/db_migrate.py: backup, schema by Mattermost's own binary,
pgloader, every table checked, switch, health); resumable after a kill; the MySQL database
stays untouched for `make db-migrate-rollback`. Then `make deploy` (or `make upgrade`) runs
the upgrade chain on PostgreSQL."""

from pyinfra import host
from pyinfra.api import operation
from pyinfra.api.exceptions import DeployError

from tasks import db_migrate
from tasks.common import current, helper, on_mysql, settings, streamed
from verbs.server_actions import require_deployed, single_server_only


@operation(is_idempotent=False)
def moved_to_postgresql():
    """Run (or continue) the migration on the server."""
    unfinished = (current().get("db_migrate") or {}).get("status") == "running"
    if not on_mysql(current()) and not unfinished:
        host.noop("the database is PostgreSQL already: nothing to migrate")
        return
    yield streamed(helper("db-migrate", db_migrate.spec(settings())))


if single_server_only("the move from MySQL to PostgreSQL"):
    raise DeployError(single_server_only("the move from MySQL to PostgreSQL"))
require_deployed()
moved_to_postgresql(name="Move the MySQL database to PostgreSQL (stop, copy, check every table, switch, start)")
