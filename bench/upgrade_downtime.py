"""Benchmark: how long Mattermost is down during an upgrade - this project's upgrade
against Mattermost's documented tarball procedure, side by side in one run.

    make bench-upgrade      (or: .venv/bin/python -m bench.upgrade_downtime [--pad-mb 420])

Two fresh Debian 12 test servers, stand-in releases of realistic size (incompressible
padding, 420 MB by default). On each, a poller inside the server asks
http://127.0.0.1:8065/api/v4/system/ping every 100 ms (a bounded loop) while:
  (a) this deploy upgrades X -> Y (mattermost_version pinned to Y);
  (b) the documented procedure upgrades a hand install X -> Y, scripted step by step
      from the reference (extract beside, stop, pg_dump + copy the whole install, delete
      all but config/logs/plugins/client/plugins/data, copy the new release in, chown, start).
Also measured: a plain `systemctl restart` on (a). Outage = the longest run of failed
pings. Goals: (a) at most 25% of (b), and at most the restart's outage + 2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from tests import handinstall, testhost
from tests.standin import build
from tests.testhost import UPSTREAM_ROOT

FROM, TO = "12.0.0", "12.0.1"  # stand-in versions built only for this benchmark
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
    time.sleep(max(0.0, 0.1 - (time.time() - t)))
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
                        "/tmp/poll.stop", "900", "/tmp/poll.json"], detach=True)
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


def deploy(name: str, version: str) -> float:
    env = dict(os.environ, MMDEPLOY_TARGET=name, PYINFRA_PROGRESS="off")
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "tasks.run", "-y", "--data", f"mattermost_version={version}"],
                          env=env, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        sys.exit(f"deploy of {version} to {name} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    return time.monotonic() - start


def measure(name: str, action) -> tuple[float, float]:
    start_poller(name)
    start = time.monotonic()
    action()
    took = time.monotonic() - start
    return longest_outage(stop_poller(name)), took


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.upgrade_downtime")
    parser.add_argument("--pad-mb", type=int, default=420, help="incompressible padding per release (MB)")
    args = parser.parse_args(argv)

    print(f"building stand-in releases {FROM} and {TO} with {args.pad_mb} MB of padding ...", flush=True)
    testhost.ensure_upstream(testhost.client())
    for version in (FROM, TO):
        build.ensure_release(UPSTREAM_ROOT, version, pad_mb=args.pad_mb)
    size_mb = build.release_path(UPSTREAM_ROOT, TO).stat().st_size >> 20

    for name in (OURS, DOC):
        testhost.stop_server(name)
    testhost.start_server(OURS, ssh_port=22312, https_port=24442)
    testhost.start_server(DOC, ssh_port=22313, https_port=24443)
    try:
        print(f"(a) this deploy: install {FROM}, then upgrade to {TO} ...", flush=True)
        deploy(OURS, FROM)
        ours, ours_took = measure(OURS, lambda: deploy(OURS, TO))
        restart, _ = measure(OURS, lambda: testhost.exec_on(OURS, "systemctl restart mattermost"))

        print(f"(b) documented procedure: hand install {FROM}, then upgrade to {TO} ...", flush=True)
        handinstall.install(DOC, FROM, "https://127.0.0.1:24443", "bench-password")
        url = f"{build.UPSTREAM_HOST}/releases/{TO}/mattermost-{TO}-linux-amd64.tar.gz"

        def documented():
            code, out = testhost.exec_on(DOC, DOCUMENTED_UPGRADE.format(url=url, to=TO))
            if code != 0:
                raise RuntimeError(f"documented upgrade failed: {out}")

        doc, doc_took = measure(DOC, documented)
        _, version = testhost.exec_on(DOC, "curl -s -D - -o /dev/null http://127.0.0.1:8065/api/v4/system/ping "
                                           "| grep -i x-version-id")
        if TO not in version:
            raise RuntimeError(f"the documented upgrade did not end on {TO}: {version}")
    finally:
        if os.environ.get("MMDEPLOY_KEEP_TEST_SERVERS") != "1":
            for name in (OURS, DOC):
                testhost.stop_server(name)

    print(f"\nupgrade {FROM} -> {TO}, release tarball {size_mb} MB, ping every 100 ms\n")
    print(f"{'':44} {'outage s':>9} {'whole run s':>12}")
    print(f"{'(a) this deploy (make upgrade)':44} {ours:9.2f} {ours_took:12.1f}")
    print(f"{'(b) documented tarball procedure':44} {doc:9.2f} {doc_took:12.1f}")
    print(f"{'    systemctl restart (for reference)':44} {restart:9.2f}")
    ratio = ours / doc if doc else float("inf")
    print(f"\nratio (a)/(b): {ratio:.1%}   goal <= 25%: {'met' if ratio <= 0.25 else 'MISSED'}")
    print(f"(a) - restart: {ours - restart:+.2f} s   goal <= +2 s: {'met' if ours <= restart + 2 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
