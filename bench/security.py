"""Benchmark: the deploy's security, measured by the tools security people use.

    make bench-security      (or: .venv/bin/python -m bench.security)

On a fresh local Debian 12 test server (certificate from pebble, the ACME test server):
  - lynis hardening index before and after the deploy;
  - `systemd-analyze security` exposure of this deploy's mattermost.service beside the
    official unit and the NixOS and YunoHost shapes, installed side by side on the same
    server (goal: ours at most 2.0);
  - testssl.sh against nginx from another container (goal: no HIGH or CRITICAL finding);
  - which ports another container on the network can reach (goal: only 22, 80, 443).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from bench.common import on
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


def on_server(command: str) -> str:
    return on(NAME, command)


def lynis_index() -> int:
    on_server("lynis audit system --quick --no-colors >/dev/null 2>&1 || true")
    match = re.search(r"^hardening_index=(\d+)", on_server("cat /var/log/lynis-report.dat"), re.M)
    return int(match.group(1)) if match else -1


def exposure(unit: str) -> float:
    out = on_server(f"systemd-analyze security {unit} --no-pager 2>&1 | tail -1")
    return float(re.search(r"exposure level for \S+: ([\d.]+)", out).group(1))


def deploy() -> None:
    env = dict(os.environ, MMDEPLOY_TARGET=NAME, PYINFRA_PROGRESS="off")
    proc = subprocess.run([sys.executable, "-m", "tasks.run", "-y"], env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        sys.exit(f"deploy failed:\n{(proc.stdout + proc.stderr)[-3000:]}")


def scan(scanner, command: str) -> tuple[int, str]:
    result = scanner.exec_run(["sh", "-c", command])
    return result.exit_code, result.output.decode(errors="replace")


def main() -> int:
    c = testhost.client()
    testhost.ensure_upstream(c)
    pebble = testhost.ensure_pebble(c)
    testhost.stop_server(NAME)
    testhost.start_server(NAME, ssh_port=22314, https_port=24444, extra_data={
        "mattermost_domain": DOMAIN, "mattermost_site_url": f"https://{DOMAIN}", "acme_email": "ops@example.org",
        "acme_directory_url": pebble["directory"], "acme_server_ca": pebble["server_ca"]})
    scanner = c.containers.run(testhost.ensure_image_with(c, "scanner:test", ["testssl.sh", "curl"]),
                               ["sleep", "infinity"], detach=True, network=testhost.NETWORK,
                               labels=testhost.LABEL, name=testhost.container_name("bench-scanner"))
    try:
        print("lynis on the fresh server ...", flush=True)
        on_server("apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q lynis >/dev/null")
        before = lynis_index()
        print("deploying ...", flush=True)
        deploy()
        after = lynis_index()

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

    print("\nsystemd-analyze security (exposure, 0 best - 10 worst), same Debian 12 server")
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
    print(f"\nlynis hardening index: {before} on the fresh server -> {after} after the deploy "
          f"(goal: raised: {'met' if after > before else 'MISSED'})")
    print("\nports reachable from another container on the network")
    print("  " + "  ".join(f"{p}: {state}" for p, state in reach.items()))
    wanted = {22: "open", 80: "open", 443: "open", 5432: "closed", 8065: "closed"}
    print(f"  goal: only 22, 80, 443: {'met' if reach == wanted else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
