"""Uploaded files moved between the local data folder and an S3-compatible bucket, both ways:

plan (nothing changed) -> lock -> copy while Mattermost serves (rclone, Debian's) -> stop ->
a final incremental pass (what changed meanwhile: new uploads, profile images rewritten in
place) -> FileSettings.DriverName switched -> start and check health -> every file the
database names (FileInfo: uploads with their size, thumbnails, previews) and every file of the
source checked present in the target. The source is kept until the operator removes it: the
way back is the move in the other direction. Locked; each step recorded, so a killed run goes
on from the last finished step.

Object keys are the paths under data/ (FileInfo.Path), with AmazonS3PathPrefix in front when
set - what rclone's copy keeps (../shared/reference/s3-and-remote-database.md, section 3).
"""

import json
import os
import time

from mmhelper.jobs.engine import Progress, lock_holder, take_lock
from mmhelper.parts import s3
from mmhelper.parts.common import Failure, free_bytes, write_private
from mmhelper.parts.pg import psql_as_postgres
from mmhelper.parts.rclone import rclone, remote
from mmhelper.parts.service import start_and_verify, systemctl

STEPS = ("copy", "stop", "final copy", "switch", "start", "verify")
DRIVERS = {"s3": "amazons3", "local": "local"}


def local_files(data_dir):
    """{path under data/: size} of every file in the local store."""
    found = {}
    for root, _, files in os.walk(data_dir):
        for name in files:
            full = os.path.join(root, name)
            found[os.path.relpath(full, data_dir)] = os.path.getsize(full)
    return found


def database_files(db):
    """(uploads {path: size}, thumbnails and previews [path]) the live FileInfo rows name."""
    out = psql_as_postgres("SELECT path, size, thumbnailpath, previewpath FROM fileinfo WHERE deleteat = 0;", db).stdout
    uploads, extras = {}, []
    for line in out.splitlines():
        path, size, thumb, preview = (line.split("|") + ["", "", "", ""])[:4]
        uploads[path] = int(size) if size.isdigit() else None
        extras += [p for p in (thumb, preview) if p]
    return uploads, extras


def plan(spec):
    print(json.dumps(make_plan(spec), sort_keys=True))


def make_plan(spec, locked=False):
    """What the move would do and whether it can (nothing changed)."""
    out = {"refusals": [], "to": spec["to"]}
    refuse = out["refusals"].append
    with open(spec["config_file"]) as f:
        driver = (json.load(f).get("FileSettings") or {}).get("DriverName") or "local"
    out["driver"] = driver
    state = Progress(spec["state_file"]).state
    out["state"] = {k: state.get(k) for k in ("status", "to", "done", "outage_s")}
    if driver == DRIVERS[spec["to"]] and state.get("status") != "running":
        out["nothing_to_do"] = f"the files are {'in the bucket' if spec['to'] == 's3' else 'local'} already"
        return out
    bucket = s3.bucket_from(spec)
    if bucket is None:
        refuse("Mattermost's object store keys are not on the server: set files_s3_* and the keys, `make deploy` first")
        return out
    local = local_files(spec["data_dir"])
    out["local"] = {"files": len(local), "bytes": sum(local.values())}
    try:
        problem = s3.probe(bucket, ".mattermost-deploy-probe-move")
        listing = bucket.listing()
    except Failure as e:
        problem, listing = str(e), {}
    if problem:
        refuse(f"the bucket refuses Mattermost's key: {problem}")
    out["bucket"] = {"files": len(listing), "bytes": sum(listing.values())}
    if spec["to"] == "local":
        need = sum(listing.values()) + (256 << 20)
        have = free_bytes(spec["data_dir"])
        out["disk"] = {"need": need, "free": have}
        if have < need:
            refuse(f"not enough free disk in {spec['data_dir']} for the bucket's files: need {need >> 20} MB, "
                   f"have {have >> 20} MB")
    holder = None if locked else lock_holder(spec["lock_file"])
    if holder:
        refuse(f"a move of the files is running: {holder}")
    return out


def move(spec):
    """The whole move (see the module's text), to spec["to"] ("s3" or "local")."""
    lock = take_lock(spec["lock_file"], "a move of the files")
    try:
        progress = Progress(spec["state_file"], STEPS)
        if progress.state.get("status") == "running" and progress.state.get("to") == spec["to"]:
            print(f"continuing the unfinished move (done: {', '.join(progress.state.get('done')) or 'nothing'})",
                  flush=True)
        else:
            checked = make_plan(spec, locked=True)
            if checked.get("nothing_to_do"):
                print(checked["nothing_to_do"] + "; nothing to do")
                return
            if checked["refusals"]:
                raise Failure("; ".join(checked["refusals"]) + " (nothing was changed)")
            progress.state = {}
            progress.save(status="running", to=spec["to"], started=time.time(), done=[])
        _run_steps(spec, progress)
    except Failure:
        if progress.done("stop") and not progress.done("start"):
            systemctl("start", spec["service"])  # the driver was not switched yet, or is switched back
            # serving again on the old store: a re-run must stop again before its final pass
            progress.save(done=[d for d in progress.state.get("done", []) if d not in ("stop", "final copy", "switch")])
        raise
    finally:
        lock.close()


def _copy_args(spec):
    source, target = (spec["data_dir"], remote(spec)) if spec["to"] == "s3" else (remote(spec), spec["data_dir"])
    return ["copy", source, target, "--transfers", "8", "--checkers", "16"]


def _run_steps(spec, progress):
    to, version = spec["to"], os.path.basename(os.path.realpath(spec["install_dir"]))
    where = "into the bucket" if to == "s3" else "back to the local data folder"
    if not progress.done("copy"):
        print(f"  copying the files {where} while Mattermost serves", flush=True)
        progress.mark("copy", copy_s=round(rclone(spec, *_copy_args(spec), label="copy"), 1))
    if not progress.done("stop"):
        print(f"  stopping Mattermost {version} (users wait from now)", flush=True)
        systemctl("stop", spec["service"])
        progress.mark("stop", stopped_at=time.time())
    if not progress.done("final copy"):
        progress.mark("final copy", final_s=round(rclone(spec, *_copy_args(spec), label="final pass"), 1))
    if not progress.done("switch"):
        _switch(spec, DRIVERS[to])
        progress.mark("switch")
    if not progress.done("start"):
        try:
            start_and_verify(spec, version)
        except Failure as e:
            _switch(spec, DRIVERS["local" if to == "s3" else "s3"])
            systemctl("restart", spec["service"])
            raise Failure(f"Mattermost did not start with its files {where} ({e}); switched back and started "
                          "again") from None
        outage = time.time() - progress.state["stopped_at"]
        progress.mark("start", outage_s=round(outage, 1))
    if not progress.done("verify"):
        report = verify(spec)
        progress.mark("verify", report=report)
    progress.save(status="done", finished=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))
    kept = (f"the local copy in {spec['data_dir']} is kept: remove it once you are satisfied" if to == "s3" else
            f"the bucket {spec['bucket']} is kept: empty it once you are satisfied")
    print(f"moved the files {where}: users waited {progress.state['outage_s']} s; {kept}", flush=True)


def _switch(spec, driver):
    with open(spec["config_file"]) as f:
        config = json.load(f)
    config.setdefault("FileSettings", {})["DriverName"] = driver
    st = os.stat(spec["config_file"])
    write_private(spec["config_file"], json.dumps(config, indent=4) + "\n", uid=st.st_uid, gid=st.st_gid)
    print(f"  FileSettings.DriverName is now {driver}", flush=True)


def verify(spec):
    """Every file of the source and every file the database names, in the target."""
    bucket = s3.bucket_from(spec)
    in_bucket = bucket.listing()
    local = local_files(spec["data_dir"])
    target, source = (in_bucket, local) if spec["to"] == "s3" else (local, in_bucket)
    uploads, extras = database_files(spec["db"])
    problems = [f"{p} ({size} bytes) is not in the target with that size" for p, size in source.items()
                if target.get(p) != size][:5]
    problems += [f"{p}, an upload the database names, is missing or of another size" for p, size in uploads.items()
                 if p not in target or (size is not None and target[p] != size)][:5]
    problems += [f"{p}, a thumbnail or preview, did not arrive" for p in extras if p in source and p not in target][:5]
    missing_extras = [p for p in extras if p not in target]
    if problems:
        raise Failure("the files did not all arrive: " + "; ".join(problems) + " - Mattermost runs on the new store; "
                      "the source is untouched: move back, or copy the missing files by hand")
    print(f"  every file arrived: {len(source)} files of the source, {len(uploads)} uploads the database names"
          + (f" ({len(missing_extras)} thumbnails/previews the database names were missing already)"
             if missing_extras else ""), flush=True)
    return {"source_files": len(source), "uploads": len(uploads), "missing_thumbnails": len(missing_extras)}
