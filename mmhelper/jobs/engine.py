"""A long job that survives being killed: a lock the kernel frees when its holder dies
(flock), and a state file that records each finished step, so a second run refuses while
the first lives and a re-run after a kill goes on from the last finished step.
"""

import fcntl
import json
import os
import time

from mmhelper.parts.common import Failure, read_json, write_private
from mmhelper.parts.service import systemctl


def lock_holder(path):
    """Who holds the migration lock (a live process), or None."""
    if not os.path.exists(path):
        return None
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            return f.read().strip() or "another process"
        fcntl.flock(f, fcntl.LOCK_UN)
    return None


def take_lock(path, what="a migration"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    f = open(path, "a+")  # held for the life of this process; the kernel frees it when it dies
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        raise Failure(f"{what} is running ({f.read().strip()}): wait for it; nothing was changed") from None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}\n")
    f.flush()
    return f


class Progress:
    """The state file: which steps are done, kept atomically after each."""

    def __init__(self, path, steps=()):
        self.path, self.steps = path, list(steps)
        self.state = read_json(path) or {}

    def save(self, **changes):
        self.state.update(changes)
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        write_private(self.path, json.dumps(self.state, indent=1, sort_keys=True) + "\n")

    def done(self, step):
        return step in self.state.get("done", [])

    def mark(self, step, **extra):
        self.save(done=[*self.state.get("done", []), step], **extra)
        number = f"[{self.steps.index(step) + 1}/{len(self.steps)}] " if step in self.steps else ""
        print(f"  {number}{step}: done", flush=True)


# ------------------------------------------------------------------ the engine

class Step:
    """One named step of a job: `run(job)` does it and returns what to record with it."""

    def __init__(self, name, run):
        self.name, self.run = name, run


class Job:
    """A long job, declared: its steps, its lock and state file (from the spec), how a fresh
    run begins and when a run continues an unfinished one, what a failure does (its way
    back), and how it ends. The engine (`run`) does the rest the same for every job: the lock,
    the state file, fresh start or resume, each step recorded as it finishes (a killed run goes
    on from the last finished step), every failure - a Failure or any other error, an OSError
    after a stop included - handed to the job's way back, and the one `ERROR:` line."""

    what = "a job"  # in the lock's refusal: "a migration is running"
    noun = "job"  # in "continuing the unfinished job"

    def __init__(self, spec):
        self.spec = spec
        self.progress = Progress(spec["state_file"])

    @property
    def state(self):
        return self.progress.state

    # What each job declares -----------------------------------------------------------
    def steps(self):
        """The steps, in order (they may depend on the state: a method chosen at the start)."""
        raise NotImplementedError

    def finished_before(self):
        """A message when an earlier run finished the job and there is nothing to do."""
        return None

    def resumes(self):
        """Whether this run continues an unfinished one (default: one is marked running)."""
        return self.state.get("status") == "running"

    def begin(self):
        """A fresh run: check (raise Failure to refuse, nothing changed) and return what the
        state file starts with; a string instead says there is nothing to do."""
        return {}

    def failed(self, error, reason):
        """After any error in a step: the job's way back. Returns the Failure to raise."""
        return Failure(reason)

    def finish(self):
        """After the last step: the run's record and its last line."""

    # Shared pieces every job uses ------------------------------------------------------
    def stop(self, version, service_name=None):
        """Stop Mattermost for the outage; returns what to record (when users began to wait)."""
        print(f"  stopping Mattermost {version} (users wait from now)", flush=True)
        systemctl("stop", service_name or self.spec["service"])
        return {"stopped_at": time.time()}

    def outage(self):
        """Seconds users have waited since the stop step."""
        return round(time.time() - self.state.get("stopped_at", time.time()), 1)

    def done(self, step):
        return self.progress.done(step)


def run(job):
    """Run `job` under its lock: fresh, or going on from where an unfinished run stopped."""
    lock = take_lock(job.spec["lock_file"], job.what)
    try:
        said = job.finished_before()
        if said:
            print(said)
            return
        if job.resumes():
            print(f"continuing the unfinished {job.noun} (done: {', '.join(job.state.get('done')) or 'nothing'})",
                  flush=True)
        else:
            initial = job.begin()
            if isinstance(initial, str):
                print(initial)
                return
            job.progress.state = {}
            job.progress.save(status="running", started=time.time(), done=[], **initial)
        steps = job.steps()
        job.progress.steps = [step.name for step in steps]
        try:
            for step in steps:
                if not job.progress.done(step.name):
                    job.progress.mark(step.name, **(step.run(job) or {}))
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as e:  # noqa: BLE001 - every error goes the job's way back
            reason = str(e) if isinstance(e, Failure) else f"{type(e).__name__}: {e}"
            raise job.failed(e, reason) from None
        job.finish()
    finally:
        lock.close()


def utc_now():
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
