"""make os-upgrade-plan: what the Debian release upgrade (12 -> 13) would do on each server
and whether it is safe to start - changing nothing. The new release's package lists are
fetched into a private folder; the system's own lists and sources stay as they are.

    .venv/bin/python -m verbs.os_upgrade_plan [--data key=value ...]
"""

from __future__ import annotations

import sys

from pyinfra.api.exceptions import PyinfraError

from tasks.os_release import make_os_plan, plan_text
from tasks.state import read as read_server_state
from verbs.server_actions import single_server_only
from verbs.session import read_plans


def plan_for(host):
    if single_server_only("the Debian release upgrade"):
        raise PyinfraError(single_server_only("the Debian release upgrade"))
    now = read_server_state(os_release=True)
    return make_os_plan(host.name, now["os"], now["os_release"], bool(now["health"]["ok"]))


def main(argv: list[str]) -> int:
    plans, failed = read_plans(argv, plan_for, database_servers=True)
    for plan in plans.values():
        print(plan_text(plan))
    return 1 if failed or not all(plan.safe for plan in plans.values()) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
