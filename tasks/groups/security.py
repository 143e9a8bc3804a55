"""settings.security: brute force stopped at the door (nginx's limit on the sign-in and
password-reset routes, Mattermost's own rate limiter keyed on the client's real address,
fail2ban's bans in nftables) and what `make security-report` holds the server to."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from tasks.groups import checks

RATE = re.compile(r"^[1-9][0-9]{0,4}r/[sm]$")


@dataclass(frozen=True)
class Security:
    login_rate: str | None = "10r/m"  # nginx limit_req on sign-in and password reset, per address; None: off
    login_burst: int = 5
    rate_limit: bool = True  # Mattermost's RateLimitSettings (every route), keyed on the real address
    rate_per_sec: int = 10
    rate_burst: int = 100
    fail2ban: bool = True
    max_retry: int = 5
    find_time: int = 600
    ban_time: int = 3600
    never_ban: list = field(default_factory=list)  # addresses and networks, beside the workstation's own
    hardening: bool = True  # sysctl, sshd, login.defs, ... (tasks/hardening.py)
    lynis_minimum: int = 75
    scan_address: str | None = None  # where the report probes ports from the workstation
    report_accept: list = field(default_factory=list)


def build(get) -> tuple[Security, list[str]]:
    rate = get("security_login_rate")
    if rate is False or str(rate).strip().lower() in ("", "none", "off", "false"):
        rate = None  # off (also as `--data security_login_rate=off`)
    never = [str(a).strip() for a in (get("firewall_never_ban") or [])]
    problems = checks.found(
        None if rate is None or RATE.fullmatch(str(rate)) else
        f"security_login_rate {rate!r} must be nginx's rate form, e.g. \"10r/m\" or \"1r/s\" (or None: off)",
        checks.number("security_login_burst", get("security_login_burst"), 0, 1000),
        checks.number("security_rate_per_sec", get("security_rate_per_sec"), 1, 100_000),
        checks.number("security_rate_burst", get("security_rate_burst"), 1, 1_000_000),
        checks.number("fail2ban_max_retry", get("fail2ban_max_retry"), 1, 1000),
        checks.number("fail2ban_find_time", get("fail2ban_find_time"), 10, what="a number of seconds"),
        checks.number("fail2ban_ban_time", get("fail2ban_ban_time"), 10, what="a number of seconds"),
        checks.number("security_lynis_minimum", get("security_lynis_minimum"), 0, 100),
        *(f"firewall_never_ban: {a!r} is not an IP address or network (e.g. 203.0.113.7 or 198.51.100.0/24)"
          for a in never if not _network(a)))
    scan = get("security_scan_address") or None
    if scan and not _network(str(scan)):
        problems += checks.found(checks.host_name("security_scan_address", scan))
    return Security(
        login_rate=str(rate) if rate else None, login_burst=get("security_login_burst"),
        rate_limit=bool(get("security_rate_limit")), rate_per_sec=get("security_rate_per_sec"),
        rate_burst=get("security_rate_burst"), fail2ban=bool(get("fail2ban")), max_retry=get("fail2ban_max_retry"),
        find_time=get("fail2ban_find_time"), ban_time=get("fail2ban_ban_time"), never_ban=never,
        hardening=bool(get("security_hardening")), lynis_minimum=get("security_lynis_minimum"),
        scan_address=str(scan) if scan else None,
        report_accept=[str(x) for x in (get("security_report_accept") or [])]), problems


def _network(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
        return True
    except ValueError:
        return False
