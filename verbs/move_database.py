"""make move-database: Mattermost's database from this server to the one in db_host, by
PostgreSQL's logical replication while Mattermost serves, then a short stop for the
catch-up and the check of every table, the DataSource switched, started (see
mmhelper/db_move.py). Resumable after a kill; the local database is kept as the way back."""

from pyinfra import host
from pyinfra.api import operation
from pyinfra.api.exceptions import DeployError

from tasks import db_move
from tasks.common import helper, settings, streamed, upload_secret
from tasks.db_tls import server_certificate
from verbs.server_actions import require_deployed


@operation(is_idempotent=False)
def link_certificate():
    """A key and certificate from the deploy's CA naming this server's private address, for the
    replication link (root-only files; the helper hands them to the local PostgreSQL)."""
    s = settings()
    cert, key = server_certificate(s.place.ca_dir, s.place.move_source_address)
    yield from upload_secret(key, f"{db_move.TLS_UPLOAD_DIR}/server.key", db_move.TLS_UPLOAD_DIR)
    yield from upload_secret(cert, f"{db_move.TLS_UPLOAD_DIR}/server.crt", db_move.TLS_UPLOAD_DIR)


@operation(is_idempotent=False)
def database_moved():
    """Run (or continue) the move on the server."""
    yield streamed(helper("db-move", db_move.spec(settings())))


require_deployed()
s = settings()
if not s.place.remote or not s.place.move_source_address:
    raise DeployError(f"{host.name}: set mattermost_role = \"app\", db_host and db_move_source_address for the move, "
                      "and `make deploy` (nothing was changed)")
link_certificate(name=f"Place the replication link's TLS key and certificate (for {s.place.move_source_address})")
database_moved(name=f"Move the database to {s.place.host} (copy while serving, stop, catch up, check every table, "
                    "switch, start)")
