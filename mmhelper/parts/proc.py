"""Programs the jobs run for a long time: two of them piped, with each side's exit status and
error text; a line every so often while one runs, so the operator sees it is alive.
"""

import contextlib
import subprocess
import tempfile
import threading
import time


def pipe(first, second, stdin, stdout, env=None):
    """`first | second`, from stdin to stdout; returns each side's (exit status, stderr text).
    The stderr of both goes to temporary files: a pipe read only at the end could fill up and
    stall the program writing it, and with it the whole pipe."""
    with tempfile.TemporaryFile() as first_err, tempfile.TemporaryFile() as second_err:
        left = subprocess.Popen(first, stdin=stdin, stdout=subprocess.PIPE, stderr=first_err, env=env)
        right = subprocess.Popen(second, stdin=left.stdout, stdout=stdout, stderr=second_err, env=env)
        left.stdout.close()  # the right side alone holds the pipe: it sees the end when the left one exits
        outcome = []
        for process, err in ((right, second_err), (left, first_err)):
            process.wait()
            err.seek(0)
            outcome.append((process.returncode, err.read().decode(errors="replace").strip()[-300:]))
    return outcome[1], outcome[0]


@contextlib.contextmanager
def heartbeat(label, every=15):
    """While the block runs, print `label: N s so far` every `every` seconds."""
    done, started = threading.Event(), time.time()

    def beat():
        while not done.wait(every):
            print(f"    {label}: {time.time() - started:.0f} s so far", flush=True)

    threading.Thread(target=beat, daemon=True).start()
    try:
        yield
    finally:
        done.set()
