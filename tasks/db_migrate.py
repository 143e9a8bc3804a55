"""Moving an old server's MySQL/MariaDB database to PostgreSQL (`make db-migrate-plan`,
`make db-migrate`, `make db-migrate-rollback`): the settings of the move, the spec the
server-side helper runs (mmhelper/jobs/db_migrate.py tells the story), and the plan as the
operator reads it. Pure functions; the verbs in verbs/ run them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from tasks.plans import plan_ending

TABLES_FILE = Path(__file__).with_name("mattermost_tables.txt")
EXTRA_TABLES = ("refuse", "copy", "leave")


@dataclass(frozen=True)
class MigrationSettings:
    """settings.migration: what the move does with tables Mattermost did not make."""

    extra_tables: str = "refuse"


def migration_settings(get) -> tuple[MigrationSettings, list[str]]:
    """The group from host data (`get(key)`), and the problems with it."""
    extra = get("db_migrate_extra_tables") or "refuse"
    problems = [] if extra in EXTRA_TABLES else [
        f"db_migrate_extra_tables must be one of {', '.join(EXTRA_TABLES)}, not {extra!r}"]
    return MigrationSettings(extra_tables=extra), problems


@cache
def known_tables() -> tuple[str, ...]:
    return tuple(line.strip() for line in TABLES_FILE.read_text().splitlines()
                 if line.strip() and not line.startswith("#"))


def spec(s, discard: bool = False) -> dict:
    """What the helper needs; paths and names only, never a secret."""
    return {
        "config_file": s.config_file, "install_dir": s.install_dir, "releases_dir": s.releases_dir,
        "user": s.user, "service": "mattermost", "data_dir": s.data_dir,
        "db": {"name": s.db_name, "owner": s.db_user}, "password_file": s.password_file,
        # The DataSource the deploy builds (tasks/config.py), so the next deploy finds it as wanted.
        "pg_datasource": {"user": s.db_user, "host": "localhost", "port": 5432, "database": s.db_name,
                          "params": "sslmode=disable&connect_timeout=10&binary_parameters=yes"},
        "backup_dir": s.backup_dir, "backup_keep": s.backup_keep,
        "ping_url": s.ping_url, "timeout": s.health_timeout, "start_timeout": s.start_timeout,
        "lock_file": f"{s.deploy_state_dir}/db-migrate.lock",
        "state_file": f"{s.deploy_state_dir}/db-migrate.json",
        "work_dir": f"{s.deploy_state_dir}/db-migrate",
        "mysql_datasource_file": f"{s.private_dir}/mysql-sqlsettings.json",
        "extra_tables": s.migration.extra_tables, "known_tables": list(known_tables()),
        "discard": discard,
    }


def _mb(n: int) -> str:
    return f"{n / (1 << 20):.1f} MB"


def plan_text(host: str, plan: dict) -> str:
    """The plan as the operator reads it."""
    lines = [f"{host}:"]
    if plan.get("nothing_to_do"):
        state = plan.get("state") or {}
        done = f" (migrated: users waited {state['outage_s']} s)" if state.get("status") == "done" else ""
        return "\n".join([*lines, f"  nothing to migrate: {plan['nothing_to_do']}{done}"])
    source = plan.get("source") or {}
    where = source.get("socket") or f"{source.get('host')}:{source.get('port')}"
    lines.append(f"  from: MySQL {plan.get('server', '?')} at {where}, database {source.get('database')}, "
                 f"user {source.get('user')} ({plan.get('auth_plugin') or 'login method unknown'})")
    lines.append(f"  Mattermost: {plan.get('version') or 'not adopted yet'} - the schema in PostgreSQL is made by "
                 "this same version's binary, then the rows are copied by pgloader")
    tables = plan.get("tables")
    if tables:
        lines.append(f"  tables: {tables['count']} ({tables['rows']} rows by MySQL's estimate, {_mb(tables['bytes'])});"
                     " largest: " + ", ".join(f"{n} {_mb(b)}" for n, _, b in tables["largest"]))
        if tables["unknown"]:
            lines.append(f"  not Mattermost's own (plugins'?): {', '.join(tables['unknown'])}")
    for path, disk in sorted((plan.get("disk") or {}).items()):
        lines.append(f"  disk {path}: needs {_mb(disk['need'])}, {_mb(disk['free'])} free")
    pg = plan.get("postgresql") or {}
    if pg:
        lines.append(f"  to: PostgreSQL on this server ({'running' if pg.get('running') else 'not running'}; database "
                     f"{'exists' if pg.get('exists') else 'made by the move'})")
    estimate = plan.get("estimate")
    if estimate:
        lines.append(f"  users wait about {estimate['outage_s']} s (stop, copy, check every row, start; "
                     f"{estimate['basis']}); the backup and the schema are made before, while Mattermost serves")
    state = plan.get("state") or {}
    if state.get("status") == "running":
        lines.append(f"  an earlier migration stopped after: {', '.join(state.get('done') or []) or 'nothing'} - "
                     "`make db-migrate` continues it, `make db-migrate-rollback` goes back")
    elif state.get("status") == "failed":
        lines.append(f"  the last attempt failed: {state.get('failed')}")
    lines += plan_ending(plan, plan.get("warnings", []), "`make db-migrate` (the MySQL database stays untouched; "
                                                         "`make db-migrate-rollback` goes back to it)")
    return "\n".join(lines)
