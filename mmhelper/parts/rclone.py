"""rclone (Debian's) against the S3-compatible bucket of the file store: its remote `mms3:`
from the environment (no config file; keys from the root-only files), a line every 15 s
while it runs, its last lines on failure. Used by the file move, backups, restores and
exports.
"""

import json
import os
import subprocess
import tempfile
import time

from mmhelper.parts.common import Failure, read_password
from mmhelper.parts.proc import heartbeat


def rclone_env(spec):
    """rclone's remote `mms3:` from the environment (no config file); keys from the root-only files."""
    endpoint = ("https://" if spec["ssl"] else "http://") + spec["endpoint"]
    env = dict(os.environ, RCLONE_CONFIG_MMS3_TYPE="s3", RCLONE_CONFIG_MMS3_PROVIDER="Other",
               RCLONE_CONFIG_MMS3_ENDPOINT=endpoint, RCLONE_CONFIG_MMS3_NO_CHECK_BUCKET="true",
               RCLONE_CONFIG_MMS3_FORCE_PATH_STYLE="true",
               RCLONE_CONFIG_MMS3_ACCESS_KEY_ID=read_password(spec["access"]) or "",
               RCLONE_CONFIG_MMS3_SECRET_ACCESS_KEY=read_password(spec["secret"]) or "")
    if spec.get("region"):
        env["RCLONE_CONFIG_MMS3_REGION"] = spec["region"]
    env.pop("AWS_CA_BUNDLE", None)  # rclone 1.60 (aws-sdk-go v1) fails at start when it is set
    return env


def remote(spec):
    return f"mms3:{spec['bucket']}" + (f"/{spec['prefix']}" if spec.get("prefix") else "")


def rclone(spec, *args, label):
    """rclone with a line every 15 s while it runs; its last lines on failure."""
    started = time.time()
    with heartbeat(f"rclone ({label})"):
        result = subprocess.run(["rclone", *args, "--stats-one-line", "--stats", "0"], env=rclone_env(spec),
                                capture_output=True, text=True)
    if result.returncode != 0:
        raise Failure(f"rclone {label} failed: {(result.stderr or result.stdout).strip()[-400:]}")
    return time.time() - started


def listing(spec):
    """{path under the store's prefix: size} of every object in the bucket, as rclone lists it
    (`rclone lsjson -R --files-only`: it pages through ListObjects itself)."""
    result = subprocess.run(["rclone", "lsjson", "-R", "--files-only", "--no-mimetype", "--no-modtime", remote(spec)],
                            env=rclone_env(spec), capture_output=True, text=True)
    if result.returncode != 0:
        raise Failure(f"listing the bucket {spec['bucket']} failed: {(result.stderr or result.stdout).strip()[-400:]}")
    return {entry["Path"]: entry["Size"] for entry in json.loads(result.stdout or "[]")}


def delete(spec, paths):
    """Delete these objects (paths under the store's prefix) in one rclone run."""
    if not paths:
        return
    with tempfile.NamedTemporaryFile("w", suffix=".list") as names:
        names.write("".join(f"{p}\n" for p in paths))
        names.flush()
        result = subprocess.run(["rclone", "delete", "--files-from-raw", names.name, remote(spec)],
                                env=rclone_env(spec), capture_output=True, text=True)
    if result.returncode != 0:
        raise Failure(f"deleting {len(paths)} objects in the bucket {spec['bucket']} failed: "
                      f"{(result.stderr or result.stdout).strip()[-400:]}")
