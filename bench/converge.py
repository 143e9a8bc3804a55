"""Benchmark: converge time and remote round trips, on a fresh local test server.

    make bench          (or: .venv/bin/python -m bench.converge)

Prints the time of a first converge from a fresh Debian 12, the time of a no-op re-run,
and how many remote commands (facts + commands, each one SSH channel) the no-op run and
the dry run make. Goal: a no-op run under 40 remote commands.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from tests import testhost

NAME = "bench-converge"
GOAL_NOOP_COMMANDS = 40


def run(*args: str) -> tuple[float, int, str]:
    """(seconds, remote commands, output) of one deploy run with pyinfra's debug log."""
    env = dict(os.environ, MMDEPLOY_TARGET=NAME, PYINFRA_PROGRESS="off")
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "tasks.run", "--debug", *args], env=env,
                          capture_output=True, text=True, timeout=1800)
    seconds = time.monotonic() - start
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        sys.exit(f"deploy failed:\n{output[-3000:]}")
    return seconds, output.count("Running command on"), output


def main() -> int:
    testhost.stop_server(NAME)
    testhost.start_server(NAME, ssh_port=22311, https_port=24441)
    try:
        first = run("-y")
        noop = run("-y")
        dry = run("--dry")
    finally:
        if os.environ.get("MMDEPLOY_KEEP_TEST_SERVERS") != "1":
            testhost.stop_server(NAME)
    rows = [
        ("first converge (fresh Debian 12)", first),
        ("no-op re-run (-y)", noop),
        ("dry run (--dry)", dry),
    ]
    print(f"\n{'run':38} {'seconds':>8} {'remote commands':>16}")
    for label, (seconds, commands, _) in rows:
        print(f"{label:38} {seconds:8.1f} {commands:16d}")
    verdict = "met" if noop[1] < GOAL_NOOP_COMMANDS else "MISSED"
    print(f"\ngoal: a no-op run under {GOAL_NOOP_COMMANDS} remote commands: {verdict} ({noop[1]})")
    print("(the first converge includes apt downloads; a warm apt cache in .cache/apt-archives makes it faster)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
