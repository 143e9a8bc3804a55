"""Mattermost's bulk export (data portability).
"""

import os
import time

from mmhelper.parts.common import Failure
from mmhelper.parts.rclone import rclone, remote
from mmhelper.steps.backup import files_driver
from mmhelper.steps.housekeeping import local_api

FETCHED = "/var/lib/mattermost-deploy/exports"  # root only: an export holds every message


def from_bucket(spec, key):
    """The export job wrote into the bucket (the file store): fetched into a root-only folder
    for the workstation to copy."""

    os.makedirs(FETCHED, mode=0o700, exist_ok=True)
    path = os.path.join(FETCHED, os.path.basename(key))
    rclone(spec["files"], "copyto", f"{remote(spec['files'])}/{key}", path, label="export from the bucket")
    return path


def export(spec):
    """Mattermost's bulk export (data portability); prints the file's path once the job
    has finished. The export job streams straight into <jobId>_export.zip
    (channels/jobs/export_process), so the file exists long before it is complete: wait for
    the job's status, then take that job's file."""
    job = local_api(spec, "POST", "/api/v4/jobs", {"type": "export_process",
                                                   "data": {"include_attachments": "true"}})
    print(f"  export job {job['id']} started", flush=True)
    deadline, status = time.time() + spec.get("timeout", 3600), job.get("status")
    while time.time() < deadline:
        job = local_api(spec, "GET", f"/api/v4/jobs/{job['id']}")
        status = job.get("status")
        if status == "success":
            path = os.path.join(spec["data_dir"], "export", f"{job['id']}_export.zip")
            if files_driver(spec.get("config_file")) == "amazons3" and spec.get("files"):
                path = from_bucket(spec, f"export/{job['id']}_export.zip")
            if not os.path.exists(path):
                raise Failure(f"the export job {job['id']} finished but {path} is missing")
            print(path)
            return
        if status in ("error", "canceled", "cancel_requested"):
            raise Failure(f"the export job {job['id']} ended with status {status}: "
                          f"{(job.get('data') or {}).get('error', 'see the Mattermost log')}")
        time.sleep(1)
    raise Failure(f"the export job {job['id']} did not finish in time (status {status}): see "
                  "`mmctl --local export job list`")
