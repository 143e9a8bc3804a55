"""Benchmark: how long Mattermost is down during an upgrade - this project's upgrade
against Mattermost's documented tarball procedure, side by side in one run, with REAL
Mattermost: the older and the newer real build (tests/realmm), so every upgrade runs the
real schema migrations between them.

    make bench-upgrade      (or: .venv/bin/python -m bench.upgrade_downtime [--rounds 3])

Two fresh Debian 12 test servers. On each, a poller inside the server asks
http://127.0.0.1:8065/api/v4/system/ping every 50 ms (a bounded loop) while:
  (a) this deploy upgrades A -> B (mattermost_version pinned); then `make rollback`
      (and unhold) brings A and its database back for the next round;
  (b) the documented procedure upgrades a hand install A -> B, scripted step by step from
      the reference (extract beside, stop, pg_dump + copy the whole install, delete all but
      config/logs/plugins/client/plugins/data, copy the new release in, chown, start); the
      next round starts from its own backup (database dump and install copy) put back.
Both servers first get the same user data: --data-mb of uploaded files (random, 1 MB each)
and --posts posts in the real schema (copies of a real post made by the server), since a
real server has them, the migrations touch them and the documented procedure copies them
during its outage. Also measured: a plain `systemctl restart` on (a). Outage = the longest
run of failed pings; medians over the rounds. Goals: (a) at most 25% of (b), and at most
the restart's outage + 2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from tests import handinstall, testhost
from tests.standin import build, release
from tests.testhost import UPSTREAM_ROOT

FROM, TO = build.OLDER_ESR, build.ESR_VERSION  # real builds, real migrations between them
INTERVAL = 0.05  # seconds between pings
OURS, DOC = "bench-upgrade", "bench-doc"

POLLER = r"""
import json, os, sys, time, urllib.request
url, stop, deadline = sys.argv[1], sys.argv[2], time.time() + float(sys.argv[3])
samples = []
while time.time() < deadline and not os.path.exists(stop):
    t = time.time()
    try:
        ok = urllib.request.urlopen(url, timeout=0.5).status == 200
    except Exception:
        ok = False
    samples.append((t, ok))
    time.sleep(max(0.0, float(sys.argv[5]) - (time.time() - t)))
json.dump(samples, open(sys.argv[4], "w"))
"""

DOCUMENTED_UPGRADE = """set -e
cd /tmp && curl -sfO {url} && tar -xzf mattermost-{to}-linux-amd64.tar.gz --transform='s,^[^/]\\+,\\0-upgrade,'
cd /opt
touch /tmp/bench-outage-starts
systemctl stop mattermost
runuser -u postgres -- pg_dump -Fc -d mattermost -f /tmp/mattermost-backup.dump
cp -ra mattermost/ mattermost-back-$(date +'%F-%H-%M')/
find mattermost/ mattermost/client/ -mindepth 1 -maxdepth 1 \\! \\( -type d \\( -path mattermost/client -o -path mattermost/client/plugins -o -path mattermost/config -o -path mattermost/logs -o -path mattermost/plugins -o -path mattermost/data \\) -prune \\) | sort | xargs rm -r
cp -an /tmp/mattermost-upgrade/. mattermost/
chown -R mattermost:mattermost mattermost
systemctl start mattermost
"""


def start_poller(name: str) -> None:
    testhost.exec_on(name, f"rm -f /tmp/poll.stop /tmp/poll.json && cat > /tmp/poll.py <<'EOF'\n{POLLER}\nEOF")
    container = testhost.client().containers.get(testhost.container_name(name))
    container.exec_run(["python3", "/tmp/poll.py", "http://127.0.0.1:8065/api/v4/system/ping",
                        "/tmp/poll.stop", "900", "/tmp/poll.json", str(INTERVAL)], detach=True)
    time.sleep(1)


def stop_poller(name: str) -> list[tuple[float, bool]]:
    testhost.exec_on(name, "touch /tmp/poll.stop")
    for _ in range(50):
        code, out = testhost.exec_on(name, "cat /tmp/poll.json")
        if code == 0 and out.startswith("["):
            return [tuple(x) for x in json.loads(out)]
        time.sleep(0.2)
    raise RuntimeError(f"the poller on {name} left no samples")


def longest_outage(samples: list[tuple[float, bool]]) -> float:
    """Seconds from the first failed ping of the longest failing run to the next good one."""
    worst, down_since = 0.0, None
    for t, ok in samples:
        if not ok and down_since is None:
            down_since = t
        elif ok and down_since is not None:
            worst, down_since = max(worst, t - down_since), None
    if down_since is not None:
        raise RuntimeError("the service never came back while the poller ran")
    return worst


def seed_user_data(name: str, data_dir: str, data_mb: int, posts: int, socket: str) -> None:
    """The same uploaded files and posts on both servers: a team and a user made by the
    server (mmctl --local), whose real join post is copied --posts times in SQL (every
    column as the server wrote it, only id, times and message changed)."""
    mmctl = f"cd /opt/mattermost && MMCTL_LOCAL_SOCKET_PATH={socket} runuser -u mattermost -- bin/mmctl --local"
    code, out = testhost.exec_on(name, f"""set -e
        {mmctl} team create --name bench --display-name Bench >/dev/null
        {mmctl} user create --username bencher --email bencher@example.org --password Bench-Password-1 >/dev/null
        {mmctl} team users add bench bencher >/dev/null
        install -d -o mattermost -g mattermost {data_dir}/bench
        for i in $(seq 1 {data_mb}); do head -c 1048576 /dev/urandom > {data_dir}/bench/upload-$i.bin; done
        chown -R mattermost:mattermost {data_dir}/bench
        runuser -u postgres -- psql -XAtq -d mattermost -c "INSERT INTO posts
          SELECT (jsonb_populate_record(p, jsonb_build_object('id', substr(md5('bench' || g), 1, 26),
            'createat', p.createat - g * 1000, 'updateat', p.createat - g * 1000, 'type', '',
            'message', repeat('lorem ipsum dolor sit amet ', 8)))).*
          FROM posts p, generate_series(1, {posts}) g WHERE p.id = (SELECT id FROM posts ORDER BY createat LIMIT 1)"
    """)
    if code != 0:
        raise RuntimeError(f"seeding {name} failed: {out}")


DOCUMENTED_RESET = """set -e
systemctl stop mattermost
runuser -u postgres -- psql -XAtq -c 'DROP DATABASE mattermost' -c 'CREATE DATABASE mattermost OWNER mmuser'
runuser -u postgres -- pg_restore --no-owner --role=mmuser -d mattermost /tmp/mattermost-backup.dump
rm -rf /opt/mattermost /tmp/mattermost-upgrade /tmp/mattermost-*.tar.gz
mv /opt/mattermost-back-* /opt/mattermost
systemctl start mattermost
"""


def deploy(name: str, version: str, verb: str | None = None) -> float:
    env = dict(os.environ, MMDEPLOY_TARGET=name, PYINFRA_PROGRESS="off")
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "tasks.run", *([verb] if verb else []), "-y",
                           "--data", f"mattermost_version={version}"],
                          env=env, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        sys.exit(f"deploy of {version} to {name} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    for line in proc.stdout.splitlines():
        if "is serving:" in line:
            print(f"    {line.strip()}", flush=True)
    return time.monotonic() - start


def measure(name: str, action) -> tuple[float, float]:
    start_poller(name)
    start = time.monotonic()
    action()
    took = time.monotonic() - start
    time.sleep(3)  # let the poller see the service back
    return longest_outage(stop_poller(name)), took


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.upgrade_downtime")
    parser.add_argument("--rounds", type=int, default=3, help="upgrades measured on each side")
    parser.add_argument("--data-mb", type=int, default=200, help="uploaded files on each server (MB)")
    parser.add_argument("--posts", type=int, default=20000, help="posts in each server's database")
    args = parser.parse_args(argv)

    print(f"real releases {FROM} and {TO} (built from source when not cached) ...", flush=True)
    testhost.ensure_upstream(testhost.client())
    size_mb = release.release_path(UPSTREAM_ROOT, TO).stat().st_size >> 20

    for name in (OURS, DOC):
        testhost.stop_server(name)
    testhost.start_server(OURS, ssh_port=22312, https_port=24442)
    testhost.start_server(DOC, ssh_port=22313, https_port=24443)
    try:
        print(f"(a) this deploy: install {FROM}, then {args.rounds} x (upgrade to {TO}, restart, roll back) ...",
              flush=True)
        deploy(OURS, FROM)
        seed_user_data(OURS, "/var/lib/mattermost/data", args.data_mb, args.posts, "/run/mattermost/local.socket")
        ours, restarts = [], []
        for _ in range(args.rounds):
            ours.append(measure(OURS, lambda: deploy(OURS, TO)))
            restarts.append(measure(OURS, lambda: testhost.exec_on(OURS, "systemctl restart mattermost"))[0])
            deploy(OURS, FROM, "verbs/rollback.py")
            deploy(OURS, FROM, "verbs/unhold.py")

        print(f"(b) documented procedure: hand install {FROM}, then {args.rounds} x (upgrade to {TO}, put back) ...",
              flush=True)
        handinstall.install(DOC, FROM, "https://127.0.0.1:24443", "bench-password")
        seed_user_data(DOC, "/opt/mattermost/data", args.data_mb, args.posts, "/var/tmp/mattermost_local.socket")
        url = f"{build.UPSTREAM_HOST}/releases/{TO}/mattermost-{TO}-linux-amd64.tar.gz"
        docs = []
        for _ in range(args.rounds):
            def documented():
                code, out = testhost.exec_on(DOC, DOCUMENTED_UPGRADE.format(url=url, to=TO))
                if code != 0:
                    raise RuntimeError(f"documented upgrade failed: {out}")

            docs.append(measure(DOC, documented))
            _, running = testhost.exec_on(DOC, "curl -s -D - -o /dev/null http://127.0.0.1:8065/api/v4/system/ping "
                                               "| grep -i x-version-id")
            if f"{TO}." not in running:
                raise RuntimeError(f"the documented upgrade did not end on {TO}: {running}")
            code, out = testhost.exec_on(DOC, DOCUMENTED_RESET)
            if code != 0:
                raise RuntimeError(f"putting {FROM} back failed: {out}")
    finally:
        if os.environ.get("MMDEPLOY_KEEP_TEST_SERVERS") != "1":
            for name in (OURS, DOC):
                testhost.stop_server(name)

    ours_outage = statistics.median(o for o, _ in ours)
    doc_outage = statistics.median(o for o, _ in docs)
    restart = statistics.median(restarts)
    print(f"\n{args.rounds} upgrades each, real Mattermost {FROM} -> {TO} (real schema migrations): release "
          f"tarball {size_mb} MB, {args.data_mb} MB of uploaded files, {args.posts} posts; "
          f"ping every {INTERVAL * 1000:.0f} ms\n")
    print(f"{'':40} {'outage s (median)':>18} {'each round':>22} {'whole run s':>12}")
    for label, runs in (("(a) this deploy (make upgrade)", ours), ("(b) documented tarball procedure", docs)):
        each = " ".join(f"{o:.2f}" for o, _ in runs)
        took = statistics.median(t for _, t in runs)
        print(f"{label:40} {statistics.median(o for o, _ in runs):18.2f} {each:>22} {took:12.1f}")
    print(f"{'    systemctl restart (reference)':40} {restart:18.2f} {' '.join(f'{r:.2f}' for r in restarts):>22}")
    ratio = ours_outage / doc_outage if doc_outage else float("inf")
    print(f"\nratio (a)/(b): {ratio:.1%}   goal <= 25%: {'met' if ratio <= 0.25 else 'MISSED'}")
    print(f"(a) - restart: {ours_outage - restart:+.2f} s   goal <= +2 s: "
          f"{'met' if ours_outage <= restart + 2 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
