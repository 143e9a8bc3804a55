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

from mmhelper.jobs.engine import Job, Progress, Step, lock_holder, run, utc_now
from mmhelper.parts import s3
from mmhelper.parts.common import Failure, free_bytes
from mmhelper.parts.config import write_keys
from mmhelper.parts.pg import files_named
from mmhelper.parts.rclone import listing as rclone_listing
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
        listing = rclone_listing(spec)
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


class FilesMove(Job):
    """The whole move (see the module's text), to spec["to"] ("s3" or "local"), on the engine.
    Its choices: any failure after the stop starts Mattermost again on the store it had (the
    driver is switched back by the start step when the new store does not serve) and forgets
    the stop, final pass and switch, so the next run stops again before its final pass; the
    run stays "running" and continues from its copy."""

    what, noun = "a move of the files", "move"

    def steps(self):
        return [Step("copy", FilesMove.copy), Step("stop", FilesMove.stop_mattermost),
                Step("final copy", FilesMove.final_copy), Step("switch", FilesMove.switch),
                Step("start", FilesMove.start), Step("verify", FilesMove.verify)]

    def resumes(self):
        return self.state.get("status") == "running" and self.state.get("to") == self.spec["to"]

    def begin(self):
        checked = make_plan(self.spec, locked=True)
        if checked.get("nothing_to_do"):
            return checked["nothing_to_do"] + "; nothing to do"
        if checked["refusals"]:
            raise Failure("; ".join(checked["refusals"]) + " (nothing was changed)")
        return {"to": self.spec["to"]}

    @property
    def version(self):
        return os.path.basename(os.path.realpath(self.spec["install_dir"]))

    @property
    def where(self):
        return "into the bucket" if self.spec["to"] == "s3" else "back to the local data folder"

    def copy(self):
        print(f"  copying the files {self.where} while Mattermost serves", flush=True)
        return {"copy_s": round(rclone(self.spec, *_copy_args(self.spec), label="copy"), 1)}

    def stop_mattermost(self):
        return self.stop(self.version)

    def final_copy(self):
        return {"final_s": round(rclone(self.spec, *_copy_args(self.spec), label="final pass"), 1)}

    def switch(self):
        _switch(self.spec, DRIVERS[self.spec["to"]])

    def start(self):
        try:
            start_and_verify(self.spec, self.version)
        except Failure as e:
            _switch(self.spec, DRIVERS["local" if self.spec["to"] == "s3" else "s3"])
            systemctl("restart", self.spec["service"])
            raise Failure(f"Mattermost did not start with its files {self.where} ({e}); switched back and started "
                          "again") from None
        return {"outage_s": self.outage()}

    def verify(self):
        return {"report": verify(self.spec)}

    def finish(self):
        self.progress.save(status="done", finished=utc_now())
        kept = (f"the local copy in {self.spec['data_dir']} is kept: remove it once you are satisfied"
                if self.spec["to"] == "s3" else f"the bucket {self.spec['bucket']} is kept: empty it once you are "
                                                "satisfied")
        print(f"moved the files {self.where}: users waited {self.state['outage_s']} s; {kept}", flush=True)

    def failed(self, error, reason):
        if self.done("stop") and not self.done("start"):
            systemctl("start", self.spec["service"])  # the driver was not switched yet, or is switched back
            # serving again on the old store: a re-run must stop again before its final pass
            self.progress.save(done=[d for d in self.state.get("done", []) if d not in ("stop", "final copy", "switch")])
        return error if isinstance(error, Failure) else Failure(reason)


def move(spec):
    """The whole move (see the module's text), to spec["to"] ("s3" or "local")."""
    run(FilesMove(spec))


def _copy_args(spec):
    source, target = (spec["data_dir"], remote(spec)) if spec["to"] == "s3" else (remote(spec), spec["data_dir"])
    return ["copy", source, target, "--transfers", "8", "--checkers", "16"]


def _switch(spec, driver):
    write_keys(spec["config_file"], {"FileSettings.DriverName": driver})
    print(f"  FileSettings.DriverName is now {driver}", flush=True)


def verify(spec):
    """Every file of the source and every file the database names, in the target."""
    in_bucket = rclone_listing(spec)
    local = local_files(spec["data_dir"])
    target, source = (in_bucket, local) if spec["to"] == "s3" else (local, in_bucket)
    uploads, extras = files_named(spec["db"])
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
