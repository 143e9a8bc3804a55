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

SSH_CHECK = ("check that the server is up, its name, ssh_port, ssh_user and ssh_key in inventory.py, and that "
             "`ssh -p PORT USER@HOST` with that key works from this workstation")


def ssh_failure(host: str, message: str) -> str:
    """pyinfra's connection error (its ConnectError text) as one line for the operator."""
    if message.startswith("Authentication error"):
        return (f"{host}: the server refused the SSH login ({message}): check ssh_user and ssh_key in inventory.py, "
                "and that the key is in the server's authorized_keys (try `ssh -p PORT USER@HOST` by hand)")
    if message.startswith("Could not resolve hostname"):
        return f"{host}: cannot resolve its name ({message}): check it in inventory.py"
    if message.startswith("SSH host key error"):
        return (f"{host}: its SSH host key is not the one known here ({message}): if the server was rebuilt, remove "
                "the old key (`ssh-keygen -R HOST`), otherwise do not connect")
    return f"{host}: cannot connect over SSH ({message}): {SSH_CHECK}"


# (pattern for a line pyinfra prints about a host or the run, what to tell the operator).
# Only lines that START with `[host]` or `--> pyinfra error` count: a file diff or a command's
# output printed before may contain any words (the helper's source says "Permission denied").
HOST_LINE = r"^\s*\[(?P<host>[^\]\s]+)\] "
HINTS = [
    (re.compile(HOST_LINE + r"(?P<why>(?:Could not connect|Authentication error|Could not resolve hostname|"
                r"SSH error|SSH host key error|EOF error) .*)$"), None),
    (re.compile(HOST_LINE + r"ERROR: (?P<why>.*)"), "{host}: {why}"),
    (re.compile(r"^--> pyinfra error in \S+ line \d+: (?P<why>.*)"), "{why}"),
    (re.compile(HOST_LINE + r"(?P<why>(?:sudo: |.*Permission denied \(publickey).*)$"),
     "{host}: SSH login refused ({why}): check ssh_user and your key"),
    (re.compile(HOST_LINE + r"E: (?P<why>.*)"), "{host}: apt: {why}"),
    (re.compile(HOST_LINE + r"Command socket/SSH error: (?P<why>.*)"), "{host}: {why}"),
]


OPERATION = re.compile(r"^--> Starting (?:[\w ]+ )?operation: (?P<name>.*?)(?: \(.*\))?$")
HOST_ERROR = re.compile(HOST_LINE + r"Error: executed \d+ commands")
PYINFRA_OWN = re.compile(HOST_LINE + r"(?:Success|No changes|Error: |>>> |Skipped|Loaded fact)")


def failed_operations(output: str) -> list[str]:
    """For a failure no hint recognises: the operation that failed on each host and the last
    line that host printed in it (a command's own error), instead of "see the output above"."""
    reasons: list[str] = []
    operation, last = None, {}
    for line in output.splitlines():
        started = OPERATION.match(line.strip())
        if started:
            operation, last = started.group("name"), {}
            continue
        failed = HOST_ERROR.search(line)
        if failed and operation:
            host = failed.group("host")
            said = f": {last[host]}" if last.get(host) else ""
            reasons.append(f"{host}: {operation!r} failed{said}")
            continue
        own = re.match(HOST_LINE + r"(?P<said>.+)$", line)
        if own and not PYINFRA_OWN.search(line) and own.group("said").strip():
            last[own.group("host")] = own.group("said").strip()[-300:]
    return reasons


def explain(output: str) -> list[str]:
    """The operator's one-line reasons for a failed run, in order, without repeats."""
    reasons: list[str] = []
    for line in output.splitlines():
        for pattern, template in HINTS:
            match = pattern.search(line)
            if match:
                parts = match.groupdict()
                reason = ssh_failure(parts["host"], parts["why"]) if template is None else template.format(**parts)
                if reason not in reasons:
                    reasons.append(reason)
                break
    return reasons or failed_operations(output)


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
