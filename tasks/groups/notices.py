"""settings.notices: where the server tells the operator what needs them (a channel its bot
posts in, an e-mail address when Mattermost itself is down) and how often it looks."""

from __future__ import annotations

from dataclasses import dataclass

from tasks.groups import checks


@dataclass(frozen=True)
class Notices:
    channel: str | None = None
    email: str | None = None
    digest_time: str = "08:00"
    every_minutes: int = 15
    cert_days: int = 14
    disk_percent: int = 90
    restart_limit: int = 3
    github_api_url: str | None = None


LIMITS = {"every_minutes": (1, 59), "cert_days": (1, 90), "disk_percent": (1, 99), "restart_limit": (1, 1000)}


def build(get, smtp_configured: bool) -> tuple[Notices, list[str]]:
    channel, email = get("notices_channel") or None, get("notices_email") or None
    problems = checks.found(
        checks.team_channel("notices_channel", channel) if channel else None,
        checks.email("notices_email", email) if email else None,
        "notices_email needs smtp_server: the alert mail goes through that relay" if email and not smtp_configured
        else None,
        checks.time_of_day("notices_digest_time", get("notices_digest_time")),
        *(checks.number(f"notices_{name}", get(f"notices_{name}"), low, high) for name, (low, high) in LIMITS.items()))
    return Notices(channel=channel, email=email, digest_time=str(get("notices_digest_time")),
                   github_api_url=get("notices_github_api_url") or None,
                   **{name: get(f"notices_{name}") for name in LIMITS}), problems
