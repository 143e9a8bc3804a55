"""make patch-plan: what patch night would do on each server - packages (security ones
marked), held packages, reboot or restarts, the Mattermost upgrade - changing nothing.
Package lists are refreshed into a private folder, not the system's.

    .venv/bin/python -m verbs.patch_plan [--data key=value ...]
"""

from __future__ import annotations

import sys

from tasks.common import settings
from tasks.patching import NoMattermost, make_plan, plan_text
from tasks.release import decision
from tasks.state import read as read_server_state
from verbs.session import read_plans


def plan_for(host):
    s, now = settings(), read_server_state(os_updates="refresh")
    d = NoMattermost() if s.place.role == "database" else decision()
    return make_plan(now["os_updates"], d, s.updates.reboot_packages, s.updates.never_restart)


def main(argv: list[str]) -> int:
    plans, failed = read_plans(argv, plan_for, database_servers=True)
    for name, plan in plans.items():
        print(plan_text(name, plan))
        if plan.lock:
            print(f"  note: a patch night lock is held by {plan.lock.get('holder')}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
