"""Benchmark: converge time and remote round trips, on fresh local test servers, with
real Mattermost (the default release the stand-in upstream serves: built from source).

    make bench          (or: .venv/bin/python -m bench.converge [--rounds 3])

Prints, as medians over the rounds (a fresh Debian 12 server each round), the time of a
first converge, of a no-op re-run and of a dry run, and how many remote commands (facts +
commands, each one SSH channel) each makes. Goal: a no-op run under 40 remote commands.
"""

from __future__ import annotations

import argparse
import os
import statistics
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


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.converge")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    rounds: dict[str, list] = {"first converge (fresh Debian 12)": [], "no-op re-run (-y)": [], "dry run (--dry)": []}
    for _ in range(args.rounds):
        testhost.stop_server(NAME)
        testhost.start_server(NAME, ssh_port=22311, https_port=24441)
        try:
            for label, flags in zip(rounds, (["-y"], ["-y"], ["--dry"]), strict=True):
                rounds[label].append(run(*flags)[:2])
        finally:
            if os.environ.get("MMDEPLOY_KEEP_TEST_SERVERS") != "1":
                testhost.stop_server(NAME)
    print(f"\n{args.rounds} rounds, medians; real Mattermost")
    print(f"{'run':38} {'seconds':>8} {'each round':>22} {'remote commands':>16}")
    for label, runs in rounds.items():
        seconds = statistics.median(s for s, _ in runs)
        commands = int(statistics.median(c for _, c in runs))
        print(f"{label:38} {seconds:8.1f} {' '.join(f'{s:.1f}' for s, _ in runs):>22} {commands:16d}")
    noop = int(statistics.median(c for _, c in rounds["no-op re-run (-y)"]))
    print(f"\ngoal: a no-op run under {GOAL_NOOP_COMMANDS} remote commands: "
          f"{'met' if noop < GOAL_NOOP_COMMANDS else 'MISSED'} ({noop})")
    print("(the first converge includes apt downloads; a warm apt cache in .cache/apt-archives makes it faster)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
