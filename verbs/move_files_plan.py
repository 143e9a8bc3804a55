"""make move-files-plan [BACK=1]: what moving the uploaded files into the bucket (or, with
BACK=1, back to the local data folder) would do on each server - files and sizes on both
sides, disk, what would be refused and why - changing nothing.

    .venv/bin/python -m verbs.move_files_plan [--back] [--json] [--data key=value ...]
"""

from __future__ import annotations

import json
import sys

from pyinfra.api.exceptions import PyinfraError

from tasks import files
from tasks.common import HELPER, helper, path_info, run_on, settings
from tasks.state import read as read_server_state
from verbs.session import report_plans


def plan_for(host, to: str) -> dict:
    s = settings()
    read_server_state()
    if not path_info(HELPER):
        raise PyinfraError("the deploy has not run on this server yet: `make deploy` first")
    if not s.files.bucket_configured:
        raise PyinfraError("no bucket in the settings: set files_s3_bucket, files_s3_endpoint and the keys "
                           "(README \"When the disk is not enough\"), then `make deploy`")
    ok, output = run_on(host, helper("files-move-plan", files.move_spec(s, to)))
    if not ok:
        raise PyinfraError((output.stderr or output.stdout).strip()[-500:])
    return json.loads(output.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> int:
    to = "local" if "--back" in argv else "s3"
    return report_plans(argv, lambda host: plan_for(host, to), files.move_plan_text)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
