"""No one in who does not belong: brute force stopped at the door.

- nginx limits the sign-in and password-reset routes per address (security_login_rate,
  templates/etc/nginx/sites-available/mattermost.conf.j2): a burst a person never reaches,
  429 beyond it - before Mattermost's own lock (MaximumLoginAttempts, 10) locks the account
  of whoever an attacker names.
- Mattermost's own rate limiter is on (tasks/config.py owns RateLimitSettings), keyed on the
  client's real address: nginx sets X-Real-IP and Mattermost trusts that header only
  (ServiceSettings.TrustedProxyIPHeader) - it listens on loopback, so only nginx can send it.
- Debian's fail2ban bans in nftables, in its own table (inet f2b-table; the deploy's firewall
  replaces only its own table, never a flush): SSH from the journal, Mattermost's own
  failed-sign-in line, nginx refusing beyond the limit. Bans expire. Never banned (nor
  limited): loopback, the workstation's address as the SSH server saw it on the run, and
  firewall_never_ban.
"""

from __future__ import annotations

import ipaddress

from pyinfra import host
from pyinfra.api import StringCommand, operation

from tasks.common import as_template, current, managed_file, path_info, render, settings, timer_on

JAIL = "/etc/fail2ban/jail.d/mattermost-deploy.conf"
FILTER = "/etc/fail2ban/filter.d/mattermost-login.conf"
LYNIS_SERVICE = "/etc/systemd/system/mattermost-lynis.service"
LYNIS_TIMER = "/etc/systemd/system/mattermost-lynis.timer"
PATHS = [JAIL, FILTER, LYNIS_SERVICE, LYNIS_TIMER]
LYNIS_UNIT = """# Managed by the Mattermost deploy - local changes are overwritten on the next run.
# lynis' hardening audit, daily: its index is what `make security-report` and the notices read.
[Unit]
Description=lynis hardening audit (for the Mattermost deploy's security report)

[Service]
Type=oneshot
Nice=10
IOSchedulingClass=idle
ExecStart=/usr/sbin/lynis audit system --quick --no-colors --cronjob
"""
LYNIS_TIMER_UNIT = """# Managed by the Mattermost deploy - local changes are overwritten on the next run.
[Unit]
Description=lynis hardening audit, daily

[Timer]
OnCalendar=daily
RandomizedDelaySec=3600
Persistent=true

[Install]
WantedBy=timers.target
"""
JAILS = ("sshd", "mattermost-login", "nginx-limit-req")


def never_ban(s, now: dict) -> list[str]:
    """Loopback, the workstation's address (as this run's SSH session arrived), firewall_never_ban."""
    out = ["127.0.0.1/8", "::1"]
    for address in [now.get("ssh_client"), *s.security.never_ban]:
        if not address:
            continue
        try:
            network = str(ipaddress.ip_network(str(address), strict=False))
        except ValueError:
            continue
        network = network.removesuffix("/32").removesuffix("/128")
        if network not in out:
            out.append(network)
    return out


def jails(s) -> tuple[str, ...]:
    return JAILS if s.place.runs_mattermost else JAILS[:1]


@operation()
def fail2ban_running(changed: bool, log_file: str | None, user: str):
    """Start (or restart) fail2ban with the deploy's jails, checked first; wait until each bans in nftables."""
    s, f2b = settings(), current()["fail2ban"]
    if not changed and f2b["active"] == "active" and f2b["enabled"] == "enabled":
        host.noop("fail2ban runs with the current jails")
        return
    if log_file:  # a jail whose log is missing stops fail2ban from starting
        yield StringCommand("test", "-e", log_file, "||", "install", "-o", user, "-g", user, "-m", "640",
                            "/dev/null", log_file)
    yield "fail2ban-client --test >/dev/null"
    # restarted, not reloaded: a reload that changes a jail's ban action (Debian's own sshd jail
    # started with `nftables` at install) left that jail with no action at all - it "banned"
    # addresses that could still connect (fail2ban 1.1 on Debian 13, measured). Bans survive: fail2ban
    # restores them from its database at start.
    yield "systemctl enable -q fail2ban && systemctl restart fail2ban"
    checks = " && ".join(f"fail2ban-client get {jail} actions 2>/dev/null | grep -q nftables" for jail in jails(s))
    yield StringCommand("for i in $(seq 1 60); do", f"{checks}", "&& exit 0; sleep 0.5; done;",
                        "echo 'fail2ban did not start its jails with their nftables ban within 30 s:' >&2;",
                        "journalctl -u fail2ban -n 20 --no-pager >&2; exit 1")


@operation()
def jails_removed():
    """The way back: the deploy's jails and filter gone, fail2ban stopped (its bans lifted)."""
    if not path_info(JAIL) and not path_info(FILTER):
        host.noop("the deploy has no fail2ban jails here")
        return
    yield StringCommand("rm", "-f", JAIL, FILTER, "&&", "(systemctl disable -q --now fail2ban 2>/dev/null || true)")


def configure():
    s, now = settings(), current()
    units = [managed_file(name="Install lynis' daily audit (its index feeds the security report)", path=LYNIS_SERVICE,
                          content=LYNIS_UNIT, summary="as tasks/security.py has it"),
             managed_file(name="Install its timer", path=LYNIS_TIMER, content=LYNIS_TIMER_UNIT,
                          summary="as tasks/security.py has it")]
    timer_on(name="Enable lynis' daily audit", timer="mattermost-lynis.timer", state_key="lynis_timer",
             what="lynis' daily audit", reload_units=any(op.will_change for op in units))
    if not s.security.fail2ban:
        jails_removed(name="No bans (fail2ban = False): remove the deploy's jails, stop fail2ban")
        return
    mattermost = s.place.runs_mattermost
    ops = [managed_file(name=f"Write fail2ban's jails (never banned: {', '.join(never_ban(s, now)[2:]) or 'loopback only'})",
                        path=JAIL, content=render("etc/fail2ban/jail.d/mattermost-deploy.conf.j2", s=s,
                                                  never_ban=never_ban(s, now), mattermost=mattermost))]
    if mattermost:
        ops.append(managed_file(name="Write fail2ban's filter for Mattermost's failed sign-in line", path=FILTER,
                                content=render("etc/fail2ban/filter.d/mattermost-login.conf.j2"),
                                summary=as_template(FILTER)))
    fail2ban_running(name=f"Run fail2ban (bans for {s.security.ban_time} s after {s.security.max_retry} failures "
                          f"in {s.security.find_time} s, in nftables)",
                     changed=any(op.will_change for op in ops),
                     log_file=f"{s.log_dir}/mattermost.log" if mattermost else None, user=s.user)


def report_spec(s, lynis_max_age: int | None = None) -> dict:
    """What the server side of the security report reads (mmhelper/steps/security.py)."""
    spec = {"fail2ban_jails": list(jails(s)) if s.security.fail2ban else [], "accept": s.security.report_accept,
            "lynis_minimum": s.security.lynis_minimum, "lynis_max_age": lynis_max_age}
    if s.place.runs_mattermost:
        spec.update(config_file=s.config_file, managed_config_file=s.managed_config_file, domain=s.domain,
                    https_port=443, service="mattermost", log_dir=s.log_dir)
    return spec


def open_from_outside(s) -> dict[int, str]:
    """The TCP ports meant to answer from other machines: {port: what}."""
    wanted = {s.firewall_ssh_port: "SSH"}
    if s.place.runs_mattermost:
        wanted.update({80: "nginx (redirect, ACME)", 443: "nginx"})
        if s.calls_on:
            wanted[s.calls.tcp_port] = "Mattermost Calls (TCP fallback)"
    for port in s.firewall_allow_tcp:
        wanted.setdefault(port, "firewall_allow_tcp")
    return wanted
