"""make move-database-plan: what moving Mattermost's database from this server to the
database server in db_host would do - sizes, versions, the estimated wait, what would be
refused and why - changing nothing.

    .venv/bin/python -m verbs.move_database_plan [--json] [--data key=value ...]
"""

from __future__ import annotations

import json
import sys

from pyinfra.api.exceptions import PyinfraError

from tasks import db_move
from tasks.common import HELPER, helper, path_info, run_on, settings
from tasks.state import read as read_server_state
from verbs.session import report_plans


def plan_for(host) -> dict:
    s = settings()
    if not s.place.remote:
        raise PyinfraError("the settings keep the database on this server: set mattermost_role = \"app\", db_host "
                           "and db_move_source_address (README \"When one server is not enough\"), then `make deploy`")
    read_server_state()
    if not path_info(HELPER):
        raise PyinfraError("the deploy has not run on this server yet: `make deploy` first")
    ok, output = run_on(host, helper("db-move-plan", db_move.spec(s)))
    if not ok:
        raise PyinfraError((output.stderr or output.stdout).strip()[-500:])
    return json.loads(output.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> int:
    return report_plans(argv, plan_for, db_move.plan_text)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
