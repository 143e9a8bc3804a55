"""make db-migrate-plan | move-files-plan [BACK=1] | move-database-plan: what the job would
do on each server and whether it can - changing nothing (the helper's read-only plan).

    .venv/bin/python -m verbs.job_plan NAME [--back] [--json] [--data key=value ...]
"""

from __future__ import annotations

import json
import sys

from pyinfra.api.exceptions import PyinfraError

from tasks.common import HELPER, helper, path_info, run_on, settings
from tasks.state import read as read_server_state
from verbs.jobs import JOBS
from verbs.server_actions import single_server_only
from verbs.session import report_plans


def plan_for(host, name: str, data: dict) -> dict:
    """The helper's read-only plan of job `name` for this host."""
    job, s = JOBS[name], settings()
    if job.single_server and single_server_only(job.single_server):
        raise PyinfraError(single_server_only(job.single_server))
    read_server_state()
    if not path_info(HELPER):
        raise PyinfraError(job.not_deployed)
    if job.unavailable(s):
        raise PyinfraError(job.unavailable(s))
    ok, output = run_on(host, helper(f"{job.helper}-plan", job.spec(s, data)))
    if not ok:
        raise PyinfraError((output.stderr or output.stdout).strip()[-500:])
    return json.loads(output.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> int:
    names = [a for a in argv if a in JOBS]
    if len(names) != 1:
        print(f"usage: python -m verbs.job_plan {'|'.join(JOBS)} [--back] [--json] [--data key=value ...]",
              file=sys.stderr)
        return 2
    name = names[0]
    rest = list(argv)
    rest.remove(name)
    data = {"move_back": "--back" in rest}
    return report_plans([a for a in rest if a != "--back"], lambda host: plan_for(host, name, data),
                        JOBS[name].plan_text)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
