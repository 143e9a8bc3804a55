"""The long jobs' verbs, served by one registry: each job's plan (`make X-plan`, nothing
changed), its run (`make X`: run or continue, on the server's engine, mmhelper/jobs/) and its
way back (`make X-rollback`). A job here is what the workstation needs to call it: the
helper's subcommand (X, X-plan, X-rollback), its spec from the settings, the plan's text, and
what refuses it before anything is asked of the server.

    .venv/bin/python -m verbs.job_plan NAME [--back] [--json] [--data key=value ...]
    pyinfra inventory.py verbs/job.py --data job=NAME [--data job_action=rollback] [...]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tasks import db_migrate, db_move, files
from tasks.common import on_mysql
from tasks.settings import Settings


@dataclass(frozen=True)
class JobVerbs:
    helper: str  # the helper's subcommands: HELPER, HELPER-plan, HELPER-rollback
    spec: Callable[[Settings, dict], dict]  # from the settings and the run's data (move_back, discard)
    plan_text: Callable[[str, dict], str]
    run_name: Callable[[Settings, dict], str]  # the run's operation, as the output says it
    rollback_name: str | None = None
    single_server: str | None = None  # built for one server holding both parts: what to call it when refused
    unavailable: Callable[[Settings], str | None] = lambda s: None  # refused before anything, and why
    not_deployed: str = "the deploy has not run on this server yet: `make deploy` first"
    nothing_to_do: Callable[[dict], str | None] = lambda now: None  # the run's noop, from the state read


def _no_bucket(s: Settings) -> str | None:
    return None if s.files.bucket_configured else (
        "no bucket in the settings: set files_s3_bucket, files_s3_endpoint and the keys (README \"When the disk is not "
        "enough\"), then `make deploy`")


def _no_database_server(s: Settings) -> str | None:
    return None if s.place.remote else (
        "the settings keep the database on this server: set mattermost_role = \"app\", db_host and "
        "db_move_source_address (README \"When one server is not enough\"), then `make deploy`")


def _on_postgresql(now: dict) -> str | None:
    unfinished = (now.get("db_migrate") or {}).get("status") == "running"
    return None if on_mysql(now) or unfinished else "the database is PostgreSQL already: nothing to migrate"


def _to(data: dict) -> str:
    return "local" if data.get("move_back") else "s3"


JOBS = {
    "db-migrate": JobVerbs(
        helper="db-migrate",
        spec=lambda s, data: db_migrate.spec(s, discard=bool(data.get("discard"))),
        plan_text=db_migrate.plan_text,
        run_name=lambda s, data: "Move the MySQL database to PostgreSQL (stop, copy, check every table, switch, start)",
        rollback_name="Go back to the MySQL database (untouched since the migration)",
        single_server="the move from MySQL to PostgreSQL",
        not_deployed="the deploy has not run on this server yet: `make deploy` adopts the hand install first (it keeps "
                     "MySQL), then plan the move",
        nothing_to_do=_on_postgresql),
    "move-files": JobVerbs(
        helper="files-move",
        spec=lambda s, data: files.move_spec(s, _to(data)),
        plan_text=files.move_plan_text,
        run_name=lambda s, data: "Move the uploaded files " + ("into the bucket" if _to(data) == "s3" else
                                                               "back to the local data folder")
        + " (copy while serving, final pass, switch, start, check every file)",
        unavailable=_no_bucket),
    "move-database": JobVerbs(
        helper="db-move",
        spec=lambda s, data: db_move.spec(s, discard=bool(data.get("discard"))),
        plan_text=db_move.plan_text,
        run_name=lambda s, data: f"Move the database to {s.place.host} (copy while serving, stop, catch up, check "
                                 "every table, switch, start)",
        rollback_name="Go back to this server's database (untouched since the move)",
        unavailable=_no_database_server),
}
