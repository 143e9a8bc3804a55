"""Benchmark: the deploy's security, measured by the tools security people use.

    make bench-security      (or: .venv/bin/python -m bench.security [--only lynis|tools])

lynis (the OS hardening, tasks/hardening.py), on a fresh Debian 13 and a fresh Debian 12 test
server each: the hardening index fresh (lynis only), after the deploy as it was before the
hardening (`security_hardening=False fail2ban=False`), after the deploy with its defaults, and
after the way back (the first settings again); and the lynis tests whose points changed. lynis is
deterministic (the same server audits to the same points), so one audit per state. Goal: the
defaults reach security_lynis_minimum (75) on both releases.

The tools, on a fresh local test server (certificate from pebble, the ACME test server):
  - `systemd-analyze security` exposure of this deploy's mattermost.service beside the
    official unit and the NixOS and YunoHost shapes, installed side by side on the same
    server (goal: ours at most 2.0);
  - testssl.sh against nginx from another container (goal: no HIGH or CRITICAL finding);
  - which ports another container on the network can reach (goal: only 22, 80, 443).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

from bench.common import on, table, timed
from tests import testhost

NAME = "bench-security"
DOMAIN = testhost.container_name(NAME)
PORTS = [22, 80, 443, 5432, 8065]

# Unit shapes to compare, as published (Mattermost's docs; nixpkgs' mattermost.nix;
# YunoHost-Apps/mattermost_ynh conf/systemd.service), pointed at the same install.
COMMON = """[Unit]
Description=Mattermost ({label}, for comparison only)
After=network.target postgresql.service

[Service]
Type=notify
ExecStart=/opt/mattermost/bin/mattermost
WorkingDirectory=/opt/mattermost
User=mattermost
Group=mattermost
TimeoutStartSec=3600
Restart=always
RestartSec=10
LimitNOFILE=49152
"""
ANCHORS = {
    "official": COMMON.format(label="official unit") + "KillMode=mixed\n",
    "nixos": COMMON.format(label="NixOS shape") + """UMask=0027
ReadWritePaths=/var/lib/mattermost /var/log/mattermost
Environment=TMPDIR=/var/lib/mattermost/tmp
LockPersonality=true
NoNewPrivileges=true
PrivateDevices=true
PrivateTmp=true
PrivateUsers=true
ProtectClock=true
ProtectControlGroups=true
ProtectHome=true
ProtectHostname=true
ProtectKernelLogs=true
ProtectKernelModules=true
ProtectKernelTunables=true
ProtectProc=invisible
ProtectSystem=strict
RestrictNamespaces=true
RestrictSUIDSGID=true
""",
    "yunohost": COMMON.format(label="YunoHost shape") + """RuntimeDirectory=mm-yunohost
NoNewPrivileges=yes
PrivateTmp=yes
PrivateDevices=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
RestrictNamespaces=yes
RestrictRealtime=yes
DevicePolicy=closed
ProtectSystem=full
ProtectControlGroups=yes
ProtectKernelModules=yes
ProtectKernelTunables=yes
LockPersonality=yes
SystemCallFilter=~@clock @debug @module @mount @obsolete @reboot @setuid @swap
CapabilityBoundingSet=~CAP_RAWIO CAP_MKNOD
CapabilityBoundingSet=~CAP_AUDIT_CONTROL CAP_AUDIT_READ CAP_AUDIT_WRITE
CapabilityBoundingSet=~CAP_SYS_BOOT CAP_SYS_TIME CAP_SYS_MODULE CAP_SYS_PACCT
CapabilityBoundingSet=~CAP_LEASE CAP_LINUX_IMMUTABLE CAP_IPC_LOCK
CapabilityBoundingSet=~CAP_BLOCK_SUSPEND CAP_WAKE_ALARM
CapabilityBoundingSet=~CAP_SYS_TTY_CONFIG
CapabilityBoundingSet=~CAP_MAC_ADMIN CAP_MAC_OVERRIDE
CapabilityBoundingSet=~CAP_NET_ADMIN CAP_NET_BROADCAST CAP_NET_RAW
CapabilityBoundingSet=~CAP_SYS_ADMIN CAP_SYS_PTRACE CAP_SYSLOG
""",
}


# (distro, test server, its SSH port) of the lynis comparison
LYNIS_SERVERS = [("trixie", "bench-lynis-13", 22315), ("bookworm", "bench-lynis-12", 22316)]
BEFORE_HARDENING = ["--data", "security_hardening=False", "--data", "fail2ban=False"]  # the deploy before issue 28
LYNIS_MINIMUM = 75  # security_lynis_minimum's default
# lynis.log: the test being run, and the points it assigns (lynis' include/functions: LogText "Hardening: ...")
TEST_ID = re.compile(r"Performing test ID ([A-Z]+-[0-9]+)")
PARTIAL = re.compile(r"Hardening: assigned partial number of hardening points \((\d+) of (\d+)\)")
MAXIMUM = re.compile(r"Hardening: assigned maximum number of hardening points for this item \((\d+)\)")


def on_server(command: str) -> str:
    return on(NAME, command)


def hardening_index(report: str) -> int | None:
    """lynis-report.dat's `hardening_index=`."""
    match = re.search(r"^hardening_index=(\d+)", report, re.M)
    return int(match.group(1)) if match else None


def points_per_test(log: str) -> dict[str, tuple[int, int]]:
    """{test id: (points, most points)} summed over lynis.log's lines; their totals make the index."""
    points: dict[str, tuple[int, int]] = {}
    test = "?"
    for line in log.splitlines():
        if found := TEST_ID.search(line):
            test = found.group(1)
            continue
        partial, maximum = PARTIAL.search(line), MAXIMUM.search(line)
        if partial or maximum:
            got, most = points.get(test, (0, 0))
            add, of = (int(partial.group(1)), int(partial.group(2))) if partial else (int(maximum.group(1)),) * 2
            points[test] = (got + add, most + of)
    return points


def changed_tests(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> list[list[str]]:
    """[test id, points before, points after] of each test whose points changed ("-": it gave none)."""
    def shown(p: tuple[int, int] | None) -> str:
        return f"{p[0]}/{p[1]}" if p else "-"
    return [[test, shown(before.get(test)), shown(after.get(test))] for test in sorted(set(before) | set(after))
            if before.get(test) != after.get(test)]


def lynis_audit(name: str) -> tuple[int | None, dict[str, tuple[int, int]]]:
    """A lynis audit now (once the deploy's daily one, if it runs, is done): the index and each test's points."""
    on(name, "while systemctl is-active -q mattermost-lynis.service; do sleep 2; done; "
             "lynis audit system --quick --no-colors >/dev/null 2>&1 || true")
    index = hardening_index(on(name, "cat /var/log/lynis-report.dat"))
    log = on(name, "grep -E 'Performing test ID|Hardening: assigned' /var/log/lynis.log || true")
    return index, points_per_test(log)


def step(version: str, what: str) -> None:
    print(f"[bench] Debian {version}: {what} ...", file=sys.stderr, flush=True)


def lynis_comparison() -> tuple[list[list], list[str]]:
    """The index table's rows and, per release, the tests whose points changed."""
    rows, details = [], []
    for distro, name, port in LYNIS_SERVERS:
        version = testhost.DISTROS[distro]["version"]
        testhost.stop_server(name)
        testhost.start_server(name, ssh_port=port, distro=distro)
        try:
            step(version, "lynis on the fresh server")
            on(name, "apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q lynis "
                     ">/dev/null")
            fresh, _ = lynis_audit(name)
            step(version, "the deploy without the hardening")
            timed(name, *BEFORE_HARDENING)
            off, off_points = lynis_audit(name)
            step(version, "the deploy with its defaults")
            timed(name)
            hardened, hardened_points = lynis_audit(name)
            step(version, "the way back")
            timed(name, *BEFORE_HARDENING)
            back, back_points = lynis_audit(name)
        finally:
            if os.environ.get("MMDEPLOY_KEEP_TEST_SERVERS") != "1":
                testhost.stop_server(name)
        rows.append([f"{version} ({distro})", fresh, off, hardened, back])
        details.append(f"Debian {version}: lynis tests whose points changed, hardening off -> defaults\n"
                       + table(["test", "hardening off", "defaults"], changed_tests(off_points, hardened_points)))
        details.append(f"Debian {version}: what the way back leaves changed (packages, login.defs, banner, jail.local "
                       "stay)\n" + table(["test", "hardening off", "after the way back"],
                                           changed_tests(off_points, back_points)))
    return rows, details


def print_lynis(rows: list[list], details: list[str]) -> None:
    print("\nlynis hardening index (lynis audit system --quick; deterministic: one audit per state)")
    print(table(["Debian", "fresh", "deploy, hardening off", "deploy, defaults", "way back (hardening off again)"],
                rows))
    met = all(isinstance(row[3], int) and row[3] >= LYNIS_MINIMUM for row in rows)
    print(f"goal: the defaults at least {LYNIS_MINIMUM} on each release: {'met' if met else 'MISSED'}")
    for text in details:
        print("\n" + text)


def exposure(unit: str) -> float:
    out = on_server(f"systemd-analyze security {unit} --no-pager 2>&1 | tail -1")
    return float(re.search(r"exposure level for \S+: ([\d.]+)", out).group(1))


def scan(scanner, command: str) -> tuple[int, str]:
    result = scanner.exec_run(["sh", "-c", command])
    return result.exit_code, result.output.decode(errors="replace")


def tools() -> None:
    c = testhost.client()
    testhost.ensure_upstream(c)
    pebble = testhost.ensure_pebble(c)
    testhost.stop_server(NAME)
    server = testhost.start_server(NAME, ssh_port=22314, https_port=24444, extra_data={
        "mattermost_domain": DOMAIN, "mattermost_site_url": f"https://{DOMAIN}", "acme_email": "ops@example.org",
        "acme_directory_url": pebble["directory"], "acme_server_ca": pebble["server_ca"]})
    scanner = c.containers.run(testhost.ensure_image_with(c, "scanner:test", ["testssl.sh", "curl"]),
                               ["sleep", "infinity"], detach=True, network=testhost.NETWORK,
                               labels=testhost.LABEL, name=testhost.container_name("bench-scanner"))
    try:
        print("deploying ...", flush=True)
        timed(NAME)

        for name, unit in ANCHORS.items():
            on_server(f"cat > /etc/systemd/system/mm-{name}.service <<'EOF'\n{unit}EOF")
        on_server("systemctl daemon-reload")
        scores = {"this deploy": exposure("mattermost.service"),
                  **{name: exposure(f"mm-{name}.service") for name in ANCHORS}}

        print("testssl.sh against nginx (a minute or two) ...", flush=True)
        _, root = scan(scanner, f"curl -sk {pebble['management']}/roots/0")
        scan(scanner, f"cat > /tmp/pebble-root.pem <<'EOF'\n{root}\nEOF")
        scan(scanner, f"testssl --quiet --warnings off --color 0 --add-ca /tmp/pebble-root.pem "
                      f"--jsonfile /tmp/testssl.json https://{DOMAIN}/ >/tmp/testssl.txt 2>&1")
        _, raw = scan(scanner, "cat /tmp/testssl.json")
        findings = json.loads(raw) if raw.strip().startswith("[") else []
        by_severity: dict[str, list[str]] = {}
        for f in findings:
            by_severity.setdefault(f.get("severity", "?"), []).append(f"{f.get('id')}: {f.get('finding')}")
        protocols = {f["id"]: f["finding"] for f in findings if f.get("id") in ("SSLv2", "SSLv3", "TLS1", "TLS1_1",
                                                                                 "TLS1_2", "TLS1_3")}
        hsts = next((f["finding"] for f in findings if f.get("id", "").startswith("HSTS")), "?")

        reach = {}
        for port in PORTS:
            code, _ = scan(scanner, f"timeout 3 bash -c 'echo > /dev/tcp/{DOMAIN}/{port}' 2>/dev/null")
            reach[port] = "open" if code == 0 else "closed"
    finally:
        scanner.remove(force=True)
        if os.environ.get("MMDEPLOY_KEEP_TEST_SERVERS") != "1":
            testhost.stop_server(NAME)

    version = testhost.DISTROS[server["distro"]]["version"]
    print(f"\nsystemd-analyze security (exposure, 0 best - 10 worst), the same Debian {version} server")
    for name, score in scores.items():
        print(f"  {name:14} {score:4.1f}")
    print(f"  goal: this deploy at most 2.0: {'met' if scores['this deploy'] <= 2.0 else 'MISSED'}")
    print("\ntestssl.sh against nginx (ACME certificate from pebble)")
    for proto, finding in protocols.items():
        print(f"  {proto:8} {finding}")
    print(f"  HSTS     {hsts}")
    for severity in ("CRITICAL", "HIGH", "MEDIUM", "LOW"):
        items = by_severity.get(severity, [])
        print(f"  {severity:8} {len(items)}" + (": " + "; ".join(items[:5]) if items else ""))
    bad = len(by_severity.get("CRITICAL", [])) + len(by_severity.get("HIGH", []))
    print(f"  goal: no HIGH or CRITICAL finding: {'met' if findings and not bad else 'MISSED'}")
    print("\nports reachable from another container on the network")
    print("  " + "  ".join(f"{p}: {state}" for p, state in reach.items()))
    wanted = {22: "open", 80: "open", 443: "open", 5432: "closed", 8065: "closed"}
    print(f"  goal: only 22, 80, 443: {'met' if reach == wanted else 'MISSED'}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.security")
    parser.add_argument("--only", choices=["lynis", "tools"], help="one part only (default: both)")
    args = parser.parse_args(argv)
    if args.only != "tools":
        rows, details = lynis_comparison()
    if args.only != "lynis":
        tools()
    if args.only != "tools":
        print_lynis(rows, details)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
