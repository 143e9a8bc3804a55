"""What every benchmark does the same way: a command on its test server, a timed run of a
verb exactly as the operator runs it (`python -m tasks.run`), and a Markdown table of the
medians for the README."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from tests import testhost


def on(name: str, command: str) -> str:
    """A shell command inside the benchmark's test server; its output (an exception if it fails)."""
    code, out = testhost.exec_on(name, command)
    if code != 0:
        raise RuntimeError(f"{command[:100]!r} failed on {name}: {out[-2000:]}")
    return out


def timed(name: str, *args: str, env: dict | None = None, timeout: int = 7200,
          expect_failure: str | None = None) -> tuple[float, str]:
    """(seconds, output) of one run of the deploy or a verb file (`verbs/x.py` first) with -y
    on the test server `name`; the benchmark stops with the run's output when it fails (or, with
    `expect_failure`, when it does not fail with that text)."""
    environ = dict(os.environ, **(env or {}), MMDEPLOY_TARGET=name, PYINFRA_PROGRESS="off")
    verb = [args[0]] if args and args[0].endswith(".py") else []
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "tasks.run", *verb, "-y", *args[len(verb):]], env=environ,
                          capture_output=True, text=True, timeout=timeout)
    took = time.monotonic() - started
    if expect_failure is not None:
        if proc.returncode == 0 or expect_failure not in proc.stdout + proc.stderr:
            sys.exit(f"{' '.join(args) or 'deploy'} on {name} did not fail with {expect_failure!r}:\n"
                     f"{(proc.stdout + proc.stderr)[-3000:]}")
        return took, proc.stdout + proc.stderr
    if proc.returncode != 0:
        sys.exit(f"{' '.join(args) or 'deploy'} on {name} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    return took, proc.stdout


def table(columns: list[str], rows: list[list]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows])
