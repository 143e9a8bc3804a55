"""The checks every settings group uses, written once: each returns the problem, as a
sentence that says what to do, or None."""

from __future__ import annotations

import re

HOST_RE = re.compile(r"^[A-Za-z0-9.-]+$")
TIME_RE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
TEAM_CHANNEL_RE = re.compile(r"^[a-z0-9_-]+:[a-z0-9_-]+$")


def port(key: str, value, optional: bool = False) -> str | None:
    """A TCP/UDP port number."""
    if optional and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        return f"{key} must be a port number, not {value!r}"
    return None


def number(key: str, value, low: int, high: int | None = None, what: str = "a number") -> str | None:
    """A whole number from low to high (no upper end when high is None)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bounds = f"from {low} to {high}" if high is not None else f"of at least {low}"
        return f"{key} must be {what} {bounds}, not {value!r}"
    return None


def time_of_day(key: str, value, optional: bool = False) -> str | None:
    """HH:MM, 24 hours."""
    if optional and value is None:
        return None
    if not TIME_RE.match(str(value)):
        return f"{key} must be HH:MM{' or None' if optional else ''}, not {value!r}"
    return None


def team_channel(key: str, value) -> str | None:
    """team:channel, by their URL names."""
    if not TEAM_CHANNEL_RE.match(str(value)):
        return f"{key} {value!r} must be team:channel (their URL names)"
    return None


def email(key: str, value) -> str | None:
    if "@" not in str(value):
        return f"{key} {value!r} is not an e-mail address"
    return None


def host_name(key: str, value) -> str | None:
    if not HOST_RE.match(str(value or "")):
        return f"{key} {value!r} is not a host name"
    return None


def found(*problems: str | None) -> list[str]:
    """The problems among the checks' answers."""
    return [p for p in problems if p]
