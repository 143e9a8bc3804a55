"""`make move-database`: the local PostgreSQL database to the database server named by
db_host (mattermost_role "app"), by logical replication while Mattermost serves; the helper
tells the story (mmhelper/jobs/db_move.py). Until the move, an "app" server whose Mattermost still
uses its local database is *pending*: the deploy leaves its DataSource, its local PostgreSQL
and the unit's tie to it alone, and says so."""

from __future__ import annotations

import json

from mmhelper.parts.pg import REMOTE_DB_FILE
from tasks.config import DB_CA_PATH, datasource_parts
from tasks.database import remote_spec
from tasks.plans import plan_ending

# Where the move finds the TLS key and certificate the verb uploads for the replication link.
TLS_UPLOAD_DIR = "/etc/mattermost/private/db-move-tls"
# On a database server this deploy runs: its CA, to check this server's certificate on the link.
DB_SERVER_CA = "/etc/postgresql/mattermost-tls/ca.crt"


def spec(s, discard: bool = False) -> dict:
    """What the helper needs; paths and names only, never a secret."""
    return {
        "config_file": s.config_file, "install_dir": s.install_dir, "user": s.user, "service": "mattermost",
        "db": {"name": s.db_name, "owner": s.db_user},
        "remote": remote_spec(s), "remote_datasource": datasource_parts(s),
        "remote_file_content": json.dumps(remote_spec(s), indent=1, sort_keys=True) + "\n",
        "source_address": s.place.move_source_address, "method": s.place.move_method,
        "link_sslmode": "verify-full" if s.place.own_ca else "require",
        "link_sslrootcert": DB_SERVER_CA if s.place.own_ca else None,
        "tls_upload_dir": TLS_UPLOAD_DIR,
        "replication_password_file": f"{s.private_dir}/db-move-replication-password",
        "saved_datasource_file": f"{s.private_dir}/local-datasource.json",
        "ping_url": s.ping_url, "timeout": s.health_timeout, "start_timeout": s.start_timeout,
        "lock_file": f"{s.deploy_state_dir}/db-move.lock", "state_file": f"{s.deploy_state_dir}/db-move.json",
        "discard": discard, "ca_path": DB_CA_PATH, "remote_file": REMOTE_DB_FILE,
    }


def _mb(n: int) -> str:
    return f"{n / (1 << 20):.1f} MB"


def plan_text(host: str, plan: dict) -> str:
    lines = [f"{host}:"]
    local, remote = plan.get("local") or {}, plan.get("remote") or {}
    if plan.get("current") and plan["current"] != "local":
        lines.append(f"  Mattermost's database is at {plan['current']} already")
    if local:
        lines.append(f"  from: PostgreSQL {local['version']} on this server, {local['tables']} tables, "
                     f"{_mb(local['bytes'])} (wal_level {local['wal_level']})")
    if remote:
        how = ("copied by its own logical replication while Mattermost serves" if plan.get("method") == "replication"
               else "copied with pg_dump | pg_restore while Mattermost is stopped")
        lines.append(f"  to: PostgreSQL {remote['version']} at the database server ({remote['tables']} tables there "
                     f"now) - {how}")
    if plan.get("estimated_outage_s") is not None:
        lines.append(f"  users wait about {plan['estimated_outage_s']:.0f} s: stop, catch-up, every table's count and "
                     "digest compared on both sides, switch, start")
    if plan.get("state") in ("running", "failed"):
        lines.append(f"  an earlier move {plan['state']}: `make move-database` goes on or starts it anew")
    lines += plan_ending(plan, plan.get("notes", []), "`make move-database` (the local database stays as it is at "
                                                      "the stop; `make move-database-rollback` goes back to it)")
    return "\n".join(lines)
