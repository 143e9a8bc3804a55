"""Benchmark: how long users wait at each step that carries a Debian 11 hand install to Debian 13
and Mattermost 11.4 - the path `make upgrade-plan` prints for such a server.

    make bench-bullseye   (or: .venv/bin/python -m bench.bullseye [--rounds 3] [--posts 20000])

Per round: a fresh Debian 11 test server (bullseye's own archive) with Mattermost 5.39 installed
by hand as the old guide did on MariaDB 10.5 listening on its socket only (tests/oldserver.py:
content made through the old command line and the API), --posts more posts written into MySQL.
Then the steps, each run exactly as the operator runs it:
  1. `make deploy`: the adoption (the hand install's unit handed over to ours, nginx in front);
  2. `make db-migrate` with Debian 11's pgloader 3.6.2;
  3. `make upgrade`: the hops PostgreSQL 13 allows (5.39 -> 6.3 -> 10.3), stopping before 11.4;
  4. `make os-upgrade` from 11 to 12 (PostgreSQL 13 -> 15), 5. again from 12 to 13 (15 -> 17);
  6. `make upgrade`: 10.3 -> 11.4.
What users see is measured from outside the deploy: a client asks Mattermost's ping
(http://127.0.0.1:8065/api/v4/system/ping, inside the server, 3 s timeout) every 0.5 s during the
step; the step's outage is the sum of the stretches from the last answered ping to the next one
(a reboot counts: nothing answers), each stretch labelled with what the server was doing when it
began (stderr, per round). Beside it, what the deploy itself reports (the helper's lines), and
the step's whole run time. Medians of the rounds.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import threading
import time

from bench.common import on, table, timed
from bench.old_server import BULK
from tests import oldserver, testhost
from tests.standin import build

OLD = build.OLD_RELEASES[0]
NAME = "bench-bullseye"
PASSWORD = "bench-bullseye-pw-!#%"  # the bench server's MySQL password (a throwaway container)
# bash's own /dev/tcp and coreutils' timeout: a client that does not lean on the python3 the release upgrade
# replaces (3.9 -> 3.11) while it measures
PING = ("timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.0.1/8065 && printf \"GET /api/v4/system/ping HTTP/1.0\\r\\n\\r\\n\" >&3 "
        "&& head -1 <&3' 2>/dev/null")
# what the server is doing when a ping first fails: the stretch's label
WHY = ("pgrep -x dpkg >/dev/null && echo packages; pgrep -x pg_upgrade >/dev/null && echo pg_upgrade; "
       "pgrep -f 'mmhelper.py [u]pgrade' >/dev/null && echo mattermost-upgrade; "
       "pgrep -f 'mmhelper.py [d]b-migrate' >/dev/null && echo db-migrate; "
       "systemctl is-system-running 2>/dev/null | grep -v running; echo mattermost $(systemctl is-active mattermost)")
HOP = re.compile(r"Upgrade Mattermost (\S+) -> (\S+).*?is serving: stop ([\d.]+)s, start with migrations and health "
                 r"([\d.]+)s", re.S)
PG = re.compile(r"PostgreSQL (\d+) -> (\d+): Mattermost was down ([\d.]+) s")


class Watch:
    """A client asking the ping every 0.5 s while a step runs: the seconds nobody was answered."""

    def __init__(self):
        self.down, self.stretches, self._stop = 0.0, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _answered(self) -> bool | None:
        """True: answered; False: not answered; None: the server itself is not there (rebooting)."""
        try:
            code, out = testhost.exec_on(NAME, PING)
        except Exception:  # the container restarting (the release upgrade's reboot)
            return None
        return code == 0 and " 200 " in out

    @staticmethod
    def _doing() -> str:
        """What the server is busy with when the ping first fails (a stretch's label)."""
        try:
            _, out = testhost.exec_on(NAME, WHY)
        except Exception:
            return "reboot"
        return out.strip().replace("\n", ",") or "?"

    def _run(self):
        started = last_ok = time.monotonic()
        was_down, why = False, ""
        while not self._stop.is_set():
            asked = time.monotonic()
            answered = self._answered()
            if answered:
                if was_down:
                    self.down += asked - last_ok
                    self.stretches.append(f"{last_ok - started:.0f}+{asked - last_ok:.1f} ({why})")
                last_ok, was_down = asked, False
            elif not was_down:
                was_down, why = True, "reboot" if answered is None else self._doing()
            self._stop.wait(max(0.0, 0.5 - (time.monotonic() - asked)))
        if was_down:  # still down at the end: a step that left Mattermost down is counted to its end
            self.down += time.monotonic() - last_ok
            self.stretches.append(f"{last_ok - started:.0f}+{time.monotonic() - last_ok:.1f} ({why})")

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def step(label: str, *args: str, expect_failure: str | None = None) -> dict:
    """One step as the operator runs it, watched."""
    with Watch() as watch:
        took, out = timed(NAME, *args, expect_failure=expect_failure)
    said = [f"{a} -> {b}: {float(s) + float(t):.1f} s" for a, b, s, t in HOP.findall(out)]
    said += [f"PostgreSQL {a} -> {b}: {s} s" for a, b, s in PG.findall(out)]
    if "job=db-migrate" in args:
        said.append(f"db-migrate: {json.loads(on(NAME, 'cat /var/lib/mattermost-deploy/db-migrate.json'))['outage_s']} s")
    return {"step": label, "outage_s": round(watch.down, 1), "stretches": watch.stretches, "run_s": round(took, 1),
            "said": "; ".join(said)}


def one_round(posts: int) -> list[dict]:
    testhost.stop_server(NAME)
    testhost.start_server(NAME, ssh_port=22345, https_port=24465, distro="bullseye",
                          extra_data={"mattermost_allow_below_7_1": True})
    oldserver.install(NAME, OLD, "mysql", PASSWORD, "https://127.0.0.1:24465", socket_only=True)
    oldserver.seed(NAME)
    done = 0
    while done < posts:
        n = min(20_000, posts - done)
        on(NAME, f"mysql -D mattermost -e \"{BULK.format(round=done, batch=n)}\"")
        done += n
    on(NAME, "systemctl restart mattermost && sleep 2")
    steps = [step("adoption (make deploy)"),
             step("make db-migrate (pgloader 3.6.2)", "verbs/job.py", "--data", "job=db-migrate"),
             step(f"make upgrade {OLD} -> {build.OLDER_ESR} (PostgreSQL 13)", "--data",
                  "mattermost_upgrade_required=true", expect_failure="make os-upgrade"),
             step("make os-upgrade 11 -> 12", "verbs/os_upgrade.py"),
             step("make os-upgrade 12 -> 13", "verbs/os_upgrade.py"),
             step(f"make upgrade {build.OLDER_ESR} -> {build.ESR_VERSION}", "--data", "mattermost_upgrade_required=true")]
    release = on(NAME, "cat /etc/debian_version").strip()
    if not release.startswith("13."):
        sys.exit(f"the round ended on Debian {release}, not 13")
    return steps


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bullseye")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--posts", type=int, default=20000, help="extra posts written into MySQL before the path")
    args = parser.parse_args(argv)
    rounds = []
    for number in range(args.rounds):
        rounds.append(one_round(args.posts))
        print(f"[bench] round {number + 1}: " + json.dumps(rounds[-1], indent=1), file=sys.stderr, flush=True)
    testhost.stop_server(NAME)
    rows = []
    for i, first in enumerate(rounds[0]):
        mine = [r[i] for r in rounds]
        rows.append([first["step"], statistics.median(s["outage_s"] for s in mine),
                     " / ".join(str(s["outage_s"]) for s in mine),
                     round(statistics.median(s["run_s"] for s in mine) / 60, 1), mine[len(mine) // 2]["said"] or "-"])
    print(table(["step (Debian 11 hand install, 5.39 on MariaDB 10.5)", "users' wait s (median)", "each round",
                 "run min (median)", "what the deploy said (middle round)"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
