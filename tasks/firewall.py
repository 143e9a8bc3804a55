"""The firewall: nftables, default deny inbound, SSH (its configured port), 80 and 443.

Applied so the operator cannot be locked out: the ruleset is checked (`nft -c`) before it
is loaded, established connections and SSH come first, and a timer that removes the
table again is armed before loading and disarmed only once a NEW SSH connection from
this workstation succeeds.

Debian's nftables.service stops with `nft flush ruleset`: a package upgrade that restarts it
(the Debian 12 -> 13 release upgrade does) would wipe fail2ban's bans and Docker's rules with
ours. A drop-in makes the stop remove this deploy's table only.
"""

from __future__ import annotations

from pyinfra import host, logger
from pyinfra.api import FunctionCommand, StringCommand, operation

from tasks.common import current, managed_file, new_ssh_login_works, render, settings

CONF = "/etc/nftables.conf"
TABLE = "inet mattermost_deploy"
ROLLBACK_UNIT = "mattermost-firewall-rollback"
ROLLBACK_SECONDS = 90
STOP_DROPIN = "/etc/systemd/system/nftables.service.d/mattermost-deploy.conf"
STOP_ONLY_OURS = f"""# Managed by the Mattermost deploy: stopping nftables removes this deploy's table only,
# not every table (Debian's unit flushes the whole ruleset: fail2ban's bans, Docker's rules).
[Service]
ExecStop=
ExecStop=-/usr/sbin/nft delete table {TABLE}
"""


def ssh_still_works(state, host) -> bool:
    """Only when a fresh SSH connection succeeds is the firewall kept."""
    if new_ssh_login_works(host):
        return True
    logger.error(f"    [{host.name}] ERROR: a new SSH connection fails with the firewall on; the rules are removed "
                 f"again within {ROLLBACK_SECONDS}s - check firewall_ssh_port")
    return False


@operation()
def firewall_active(changed: bool):
    """Check, arm the rollback timer, load, prove SSH still works, disarm."""
    fw = current()["firewall"]
    if not changed and fw["table"] and fw["enabled"] == "enabled":
        host.noop("the firewall is on with the current rules")
        return
    yield StringCommand("nft", "-c", "-f", CONF)
    yield StringCommand("systemctl", "stop", f"{ROLLBACK_UNIT}.timer", "2>/dev/null;", "systemd-run", "--quiet", "--collect",
                        f"--unit={ROLLBACK_UNIT}", f"--on-active={ROLLBACK_SECONDS}",
                        "/usr/sbin/nft", "delete", "table", *TABLE.split())
    yield StringCommand("nft", "-f", CONF)
    yield FunctionCommand(ssh_still_works, (), {})
    yield StringCommand("systemctl", "stop", f"{ROLLBACK_UNIT}.timer", "&&", "systemctl", "daemon-reload", "&&",
                        "systemctl", "enable", "-q", "nftables")


def configure():
    s = settings()
    if not s.firewall:
        return
    calls = f", Calls {s.calls.udp_port}/udp {s.calls.tcp_port}/tcp" if s.calls_on else ""
    opened = f"SSH, PostgreSQL from {', '.join(s.place.clients)}" if s.place.role == "database" else f"SSH, 80, 443{calls}"
    rules = managed_file(name=f"nftables: {opened} in; everything else dropped", path=CONF,
                         content=render("etc/nftables.conf.j2", s=s), mode=0o755)
    stop = managed_file(name="Stop nftables with this deploy's table only (other tools' tables kept)",
                        path=STOP_DROPIN, content=STOP_ONLY_OURS,
                        summary="as tasks/firewall.py has it")
    firewall_active(name=f"Turn the firewall on (SSH on port {s.firewall_ssh_port} first, checked before and after)",
                    changed=rules.will_change or stop.will_change)
