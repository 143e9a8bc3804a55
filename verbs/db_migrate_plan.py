"""make db-migrate-plan: what moving an old server's MySQL/MariaDB database to PostgreSQL
would do on each server - the source, tables and sizes, disk, the estimated outage, what
would be refused and why - changing nothing.

    .venv/bin/python -m verbs.db_migrate_plan [--json] [--data key=value ...]
"""

from __future__ import annotations

import json
import sys

from pyinfra.api.exceptions import PyinfraError

from tasks import db_migrate
from tasks.common import HELPER, helper, path_info, run_on, settings
from tasks.state import read as read_server_state
from verbs.server_actions import single_server_only
from verbs.session import report_plans


def plan_for(host) -> dict:
    """The helper's read-only plan for this host."""
    s = settings()
    if single_server_only("the move from MySQL to PostgreSQL"):
        raise PyinfraError(single_server_only("the move from MySQL to PostgreSQL"))
    read_server_state()
    if not path_info(HELPER):
        raise PyinfraError("the deploy has not run on this server yet: `make deploy` adopts the hand install first "
                           "(it keeps MySQL), then plan the move")
    ok, output = run_on(host, helper("db-migrate-plan", db_migrate.spec(s)))
    if not ok:
        raise PyinfraError((output.stderr or output.stdout).strip()[-500:])
    return json.loads(output.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> int:
    return report_plans(argv, plan_for, db_migrate.plan_text)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
