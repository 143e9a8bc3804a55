"""Benchmark: the upgrade rehearsal's forecast against the real production hop on the same data.

    make bench-rehearsal   (or: .venv/bin/python -m bench.rehearsal [--rounds 3] [--posts 0,20000])

Two fresh Debian 13 test servers deployed with Mattermost 10.3.0 (real, built from its Go module):
"production" and a scratch server. For each size, production gets posts (copied in SQL from a
real post the server wrote), a backup, then per round: `make upgrade-rehearsal` on the scratch
server (its forecast: the users' wait of the 10.3 -> 11.4 hop on the copy), the real upgrade of
production (the users' wait it really had, from the same helper line), and `make rollback` of
production back to 10.3 for the next round. Medians of the rounds, side by side, and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

from bench.common import on, table, timed
from tasks.rehearsal import outage_of
from tests import testhost
from tests.standin import build
from verbs.session import ROOT

PROD, SCRATCH = "bench-prod", "bench-scratch"
A, B = build.OLDER_ESR, build.ESR_VERSION
PINNED = ["--data", f"mattermost_version={A}"]
UPGRADE = ["--data", f"mattermost_version={B}", "--data", 'mattermost_upgrade_accept=["user-limit"]']


def production_config() -> dict:
    return json.loads(on(PROD, "cat /var/lib/mattermost/config/config.json"))


def rehearse() -> float:
    """One rehearsal; production's config.json must be what it was before (it stops the bench)."""
    before = production_config()
    env = dict(os.environ, MMDEPLOY_TARGET=f"{PROD},{SCRATCH}", PYINFRA_PROGRESS="off")
    proc = subprocess.run([sys.executable, "-m", "verbs.rehearsal", f"local-{SCRATCH}", *UPGRADE], env=env,
                          capture_output=True, text=True, timeout=7200)
    if proc.returncode != 0:
        sys.exit(f"the rehearsal failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    after = production_config()
    if after != before:
        changed = {group: (before.get(group), after.get(group)) for group in before.keys() | after.keys()
                   if before.get(group) != after.get(group)}
        sys.exit(f"production's config.json changed during the rehearsal: {json.dumps(changed)[:3000]}")
    reports = sorted((ROOT / "reports").glob(f"rehearsal-local-{PROD}-*.json"), key=lambda p: p.stat().st_mtime)
    record = json.loads(reports[-1].read_text())  # the forecast as the rehearsal's report gives it
    return record["hops"][0]["outage_s"]


def seed_posts(count: int) -> None:
    """`count` posts copied from a real one (only ids, times and message changed)."""
    if not count:
        return
    on(PROD, "cd /opt/mattermost && MMCTL_LOCAL_SOCKET_PATH=/run/mattermost/local.socket runuser -u mattermost -- "
             "bin/mmctl --local team create --name bench --display-name Bench >/dev/null 2>&1 || true")
    sql = ("INSERT INTO posts SELECT (jsonb_populate_record(p, jsonb_build_object('id', substr(md5('b' || i || "
           "clock_timestamp()), 1, 26), 'createat', p.createat + i, 'message', md5(random()::text) || ' ' || "
           "md5(random()::text)))).* FROM posts p, generate_series(1, " + str(count) + ") i "
           "WHERE p.id = (SELECT id FROM posts ORDER BY createat LIMIT 1)")
    on(PROD, f"runuser -u postgres -- psql -XAt -d mattermost -c {json.dumps(sql)}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rehearsal")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--posts", default="0,20000")
    args = parser.parse_args(argv)
    for name, port in ((PROD, 22391), (SCRATCH, 22392)):
        testhost.stop_server(name)
        testhost.start_server(name, ssh_port=port, https_port=port + 2100)
        timed(name, *PINNED)
    rows = []
    for posts in [int(n) for n in args.posts.split(",")]:
        seed_posts(posts)
        timed(PROD, "verbs/backup.py", *PINNED)
        forecast, real = [], []
        for number in range(args.rounds):
            forecast.append(rehearse())
            _, output = timed(PROD, *UPGRADE)
            real.append(outage_of(output))
            timed(PROD, "verbs/rollback.py", *PINNED)
            timed(PROD, "verbs/unhold.py", *PINNED)
            print(f"[bench] {posts} posts, round {number + 1}: forecast {forecast[-1]} s, production {real[-1]} s",
                  file=sys.stderr, flush=True)
        f, r = statistics.median(forecast), statistics.median(real)
        rows.append([posts, f"{f:.2f}", f"{r:.2f}", f"{f / r:.2f}" if r else "-"])
    for name in (PROD, SCRATCH):
        testhost.stop_server(name)
    print(table(["posts added", f"rehearsal's forecast of {A} -> {B} (s)", "production's real hop (s)",
                 "forecast / real"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
