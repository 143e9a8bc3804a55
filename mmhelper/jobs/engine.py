"""A long job that survives being killed: a lock the kernel frees when its holder dies
(flock), and a state file that records each finished step, so a second run refuses while
the first lives and a re-run after a kill goes on from the last finished step.
"""

import fcntl
import json
import os
import time

from mmhelper.parts.common import Failure, read_json, write_private


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
