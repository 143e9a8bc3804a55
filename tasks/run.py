"""How `make` runs pyinfra: the output streams as usual, and a failed run ends with one
line per host that says what went wrong and what to do - instead of pyinfra's
"No hosts remaining!".

    python -m tasks.run [pyinfra options]               # pyinfra inventory.py deploy.py [options]
    python -m tasks.run verbs/backup.py [options]       # another deploy file (the verbs)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (pattern in pyinfra's output, what to tell the operator)
HINTS = [
    (re.compile(r"\[(?P<host>[^\]]+)\] Could not connect \((?P<why>.*)\)"),
     "cannot reach {host} over SSH ({why}): check that the server is up, its name and ssh_port "
     "in inventory.py, and that `ssh` with your key works from this workstation"),
    (re.compile(r"\[(?P<host>[^\]]+)\] Could not resolve hostname \((?P<why>.*)\)"),
     "cannot resolve {host} ({why}): check its name in inventory.py"),
    (re.compile(r"\[(?P<host>[^\]]+)\] ERROR: (?P<why>.*)"), "{host}: {why}"),
    (re.compile(r"pyinfra error in \S+ line \d+: (?P<why>.*)"), "{why}"),
    (re.compile(r"\[(?P<host>[^\]]+)\] (?P<why>.*(?:Permission denied|Authentication failed).*)"),
     "{host}: SSH login refused ({why}): check ssh_user and your key"),
    (re.compile(r"\[(?P<host>[^\]]+)\] E: (?P<why>.*)"), "{host}: apt: {why}"),
    (re.compile(r"\[(?P<host>[^\]]+)\] Command socket/SSH error: (?P<why>.*)"), "{host}: {why}"),
]


def explain(output: str) -> list[str]:
    """The operator's one-line reasons for a failed run, in order, without repeats."""
    reasons: list[str] = []
    for line in output.splitlines():
        for pattern, template in HINTS:
            match = pattern.search(line)
            if match:
                reason = template.format(**match.groupdict())
                if reason not in reasons:
                    reasons.append(reason)
                break
    return reasons


def main(argv: list[str]) -> int:
    pyinfra = str(Path(sys.executable).with_name("pyinfra"))
    deploy_file = "deploy.py"
    if argv and argv[0].endswith(".py"):
        deploy_file, argv = argv[0], argv[1:]
    cmd = [pyinfra, "inventory.py", deploy_file, *argv]
    asks = not {"-y", "--yes", "--dry"} & set(argv)
    if asks and not sys.stdin.isatty():
        # pyinfra would ask "Are you sure?" with nobody to answer (and end in a traceback).
        print("FAILED: this run asks before it changes anything, and there is no terminal to answer: see "
              "the changes with `make diff`, then run it again with YES=1 (e.g. `make deploy YES=1`)",
              file=sys.stderr)
        return 2
    if "--json" in argv:  # machine-readable: stdout stays pure JSON
        return subprocess.run(cmd, cwd=ROOT).returncode
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=os.environ)
    captured = []
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        captured.append(line)
    rc = proc.wait()
    output = "".join(captured)
    failed = rc != 0 or "No hosts remaining" in output
    if failed:
        reasons = explain(output) or ["the run failed: see the output above"]
        for reason in reasons:
            print(f"FAILED: {reason}", file=sys.stderr)
        return rc or 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
