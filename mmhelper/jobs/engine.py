"""A long job that survives being killed: a lock the kernel frees when its holder dies
(flock), and a state file that records each finished step, so a second run refuses while
the first lives and a re-run after a kill goes on from the last finished step.
"""

import contextlib
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

    def gave_up(self, reason, back, forget_steps):
        """After the way back (`back` says what it did): the run is recorded as failed, with or
        without its finished steps (the job's choice), and the Failure that says both."""
        self.progress.save(status="failed", failed=reason[:500], **({"done": []} if forget_steps else {}))
        return Failure(f"the {self.noun} failed ({reason}); {back}")


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


# ------------------------------------------------------------------ jobs driven from the workstation

# Patch night and the Debian release upgrade reboot the server in the middle: no process lives
# through them. The workstation runs one helper subcommand per step; the lock is a lease (a file
# naming its holder, the operator's workstation), taken again by the same holder after a kill,
# broken only when asked; the state file records each finished step, as for the other jobs.

def take_lease(spec, what, verb):
    """Take the lease of `what` for spec["holder"], or say who holds it and since when. The
    same holder (a run that was killed) takes it again and continues; spec["break"] takes it
    anyway. A fresh run's state starts from spec["fresh_state"]."""
    path, holder = spec["lock_file"], spec["holder"]
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    lock = read_json(path)
    if lock and lock.get("holder") != holder and not spec.get("break"):
        since = lock.get("since", 0)
        minutes = int((time.time() - since) // 60)
        raise Failure(f"{what} is already running: held by {lock.get('holder')} since "
                      f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(since))} ({minutes} min ago); "
                      f"if that run is dead, run `{verb} BREAK_LOCK=1`")
    if lock and lock.get("holder") != holder:
        print(f"  breaking the lock of {lock.get('holder')}", flush=True)
    run_state = read_json(spec["state_file"])
    if lock and lock.get("holder") == holder and run_state:
        print(f"  continuing the unfinished run started {run_state.get('started_text')}: done so far: "
              f"{', '.join(run_state.get('done', [])) or 'nothing'}", flush=True)
    else:
        run_state = {"started": time.time(), "started_text": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                     "holder": holder, "done": [], **spec.get("fresh_state", {})}
        write_private(spec["state_file"], json.dumps(run_state))
    since = lock["since"] if lock and lock.get("holder") == holder and lock.get("since") else time.time()
    write_private(path, json.dumps({"holder": holder, "since": since}))
    print(f"{what} lock held by {holder}")


def leased_state(spec, what):
    """The state of the run that holds the lease (a step without it is refused)."""
    run_state = read_json(spec["state_file"])
    if run_state is None:
        raise Failure(f"no {what} in progress on this server (the lock step did not run)")
    return run_state


def record(spec, run_state, step=None):
    """Keep the run's state, with `step` marked done."""
    if step and step not in run_state["done"]:
        run_state["done"].append(step)
    write_private(spec["state_file"], json.dumps(run_state))


def mark(spec, what):
    """Record facts (spec["set"]) and a step (spec["step"]) of the run that holds the lease."""
    run_state = leased_state(spec, what)
    run_state.update(spec.get("set", {}))
    record(spec, run_state, spec.get("step"))


def release(spec):
    """The run is over: its state and its lease go."""
    for path in (spec["state_file"], spec["lock_file"]):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
