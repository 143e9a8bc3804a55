"""Benchmark: how long Mattermost is down during an upgrade - this project's upgrade
against Mattermost's documented tarball procedure, side by side in one run.

    make bench-upgrade      (or: .venv/bin/python -m bench.upgrade_downtime [--pad-mb 420])

Two fresh Debian 12 test servers, stand-in releases of realistic size (incompressible
padding, 420 MB by default). On each, a poller inside the server asks
http://127.0.0.1:8065/api/v4/system/ping every 50 ms (a bounded loop) while:
  (a) this deploy upgrades 12.0.0 -> 12.0.1 -> 12.0.2 -> 12.0.3 (mattermost_version pinned);
  (b) the documented procedure upgrades a hand install the same way, scripted step by step
      from the reference (extract beside, stop, pg_dump + copy the whole install, delete
      all but config/logs/plugins/client/plugins/data, copy the new release in, chown, start).
Both servers first get the same user data: --data-mb of uploaded files (random, 1 MB
each) and --posts rows in the real PostgreSQL database, since a real server has them and
the documented procedure copies them during its outage.
Also measured: a plain `systemctl restart` on (a). Outage = the longest run of failed
pings; each side's median over its three upgrades is compared. Goals: (a) at most 25%
of (b), and at most the restart's outage + 2 s.
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

VERSIONS = ["12.0.0", "12.0.1", "12.0.2", "12.0.3"]  # stand-in versions built only for this benchmark
FROM, TO = VERSIONS[0], VERSIONS[-1]
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


def seed_user_data(name: str, data_dir: str, data_mb: int, posts: int) -> None:
    """The same uploaded files and posts on both servers."""
    code, out = testhost.exec_on(name, f"""set -e
        install -d -o mattermost -g mattermost {data_dir}/bench
        for i in $(seq 1 {data_mb}); do head -c 1048576 /dev/urandom > {data_dir}/bench/upload-$i.bin; done
        chown -R mattermost:mattermost {data_dir}/bench
        runuser -u postgres -- psql -XAtq -d mattermost -c "INSERT INTO posts (id, createat, userid, channelid, message)
          SELECT 'bench' || g, g, 'u' || (g % 50), 'c' || (g % 20), repeat('lorem ipsum dolor sit amet ', 8)
          FROM generate_series(1, {posts}) g ON CONFLICT DO NOTHING"
    """)
    if code != 0:
        raise RuntimeError(f"seeding {name} failed: {out}")


def deploy(name: str, version: str) -> float:
    env = dict(os.environ, MMDEPLOY_TARGET=name, PYINFRA_PROGRESS="off")
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "tasks.run", "-y", "--data", f"mattermost_version={version}"],
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
    parser.add_argument("--pad-mb", type=int, default=420, help="incompressible padding per release (MB)")
    parser.add_argument("--data-mb", type=int, default=200, help="uploaded files on each server (MB)")
    parser.add_argument("--posts", type=int, default=20000, help="posts in each server's database")
    args = parser.parse_args(argv)

    print(f"building stand-in releases {FROM} .. {TO} with {args.pad_mb} MB of padding ...", flush=True)
    testhost.ensure_upstream(testhost.client())
    for version in VERSIONS:
        build.ensure_release(UPSTREAM_ROOT, version, pad_mb=args.pad_mb)
    size_mb = release.release_path(UPSTREAM_ROOT, TO).stat().st_size >> 20

    for name in (OURS, DOC):
        testhost.stop_server(name)
    testhost.start_server(OURS, ssh_port=22312, https_port=24442)
    testhost.start_server(DOC, ssh_port=22313, https_port=24443)
    try:
        print(f"(a) this deploy: install {FROM}, then upgrade through {', '.join(VERSIONS[1:])} ...", flush=True)
        deploy(OURS, FROM)
        seed_user_data(OURS, "/var/lib/mattermost/data", args.data_mb, args.posts)
        ours, restarts = [], []
        for version in VERSIONS[1:]:
            ours.append(measure(OURS, lambda v=version: deploy(OURS, v)))
            restarts.append(measure(OURS, lambda: testhost.exec_on(OURS, "systemctl restart mattermost"))[0])

        print(f"(b) documented procedure: hand install {FROM}, then upgrade through {', '.join(VERSIONS[1:])} ...",
              flush=True)
        handinstall.install(DOC, FROM, "https://127.0.0.1:24443", "bench-password")
        seed_user_data(DOC, "/opt/mattermost/data", args.data_mb, args.posts)
        docs = []
        for version in VERSIONS[1:]:
            url = f"{build.UPSTREAM_HOST}/releases/{version}/mattermost-{version}-linux-amd64.tar.gz"

            def documented(url=url, version=version):
                code, out = testhost.exec_on(DOC, DOCUMENTED_UPGRADE.format(url=url, to=version))
                if code != 0:
                    raise RuntimeError(f"documented upgrade failed: {out}")

            docs.append(measure(DOC, documented))
        _, running = testhost.exec_on(DOC, "curl -s -D - -o /dev/null http://127.0.0.1:8065/api/v4/system/ping "
                                           "| grep -i x-version-id")
        if TO not in running:
            raise RuntimeError(f"the documented upgrade did not end on {TO}: {running}")
    finally:
        if os.environ.get("MMDEPLOY_KEEP_TEST_SERVERS") != "1":
            for name in (OURS, DOC):
                testhost.stop_server(name)

    rounds = len(VERSIONS) - 1
    ours_outage = statistics.median(o for o, _ in ours)
    doc_outage = statistics.median(o for o, _ in docs)
    restart = statistics.median(restarts)
    print(f"\n{rounds} upgrades each ({' -> '.join(VERSIONS)}): release tarball {size_mb} MB, "
          f"{args.data_mb} MB of uploaded files, {args.posts} posts; ping every {INTERVAL * 1000:.0f} ms\n")
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
