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
from verbs.session import connected, on


def plan_for(host) -> dict:
    """The helper's read-only plan for this host (or {"error": ...})."""
    with on(host):
        s = settings()
        read_server_state()
        if not path_info(HELPER):
            return {"error": "the deploy has not run on this server yet: `make deploy` adopts the hand install first "
                             "(it keeps MySQL), then plan the move"}
        ok, output = run_on(host, helper("db-migrate-plan", db_migrate.spec(s)))
        if not ok:
            return {"error": (output.stderr or output.stdout).strip()[-500:]}
        return json.loads(output.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> int:
    failed, plans = False, {}
    with connected(argv) as (_, hosts):
        for host, error in hosts:
            if error:
                print(f"FAILED: {host.name}: {error}", file=sys.stderr)
                failed = True
                continue
            try:
                plan = plan_for(host)
            except PyinfraError as e:
                plan = {"error": str(e)}
            plans[host.name] = plan
            if plan.get("error"):
                print(f"FAILED: {host.name}: {plan['error']}", file=sys.stderr)
                failed = True
            elif "--json" not in argv:
                print(db_migrate.plan_text(host.name, plan))
    if "--json" in argv:
        print(json.dumps(plans, indent=1, sort_keys=True))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
