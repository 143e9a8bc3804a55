"""Which Mattermost version a server should run: the version policy, as pure functions.

Policy (setting `mattermost_version`):
  latest   the newest server release
  esr      the newest release of the newest Extended Support Release line
  X.Y      the newest patch of line X.Y
  X.Y.Z    exactly that release (no lookup needed)

Never downgrades on its own. Refuses, with the reason, an upgrade that skips an ESR line
(Mattermost: supported but not tested) or starts below 7.1 (Mattermost: go through 7.1
first), unless the operator sets the matching override. A version whose upgrade failed
and was rolled back is held until the operator clears the hold.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from packaging.version import Version

SERVER_TAG = re.compile(r"^v(\d+\.\d+\.\d+)$")
PINNED = re.compile(r"^\d+\.\d+\.\d+$")
LINE = re.compile(r"^\d+\.\d+$")


def is_valid_policy(policy: str) -> bool:
    return policy in ("latest", "esr") or bool(PINNED.match(policy) or LINE.match(policy))


def server_versions(releases: list[dict]) -> list[str]:
    """Server releases only: `vX.Y.Z` tags, no drafts, no prereleases, no Go-module tags
    (`server/public/v0.4.3`), sorted oldest to newest by version (not by date)."""
    found = {
        m.group(1)
        for r in releases
        if not r.get("draft") and not r.get("prerelease") and (m := SERVER_TAG.match(r.get("tag_name") or ""))
    }
    return sorted(found, key=Version)


def line_of(version: str) -> str:
    return ".".join(version.split(".")[:2])


def newest_in_line(available: list[str], line: str) -> str | None:
    in_line = [v for v in available if line_of(v) == line]
    return max(in_line, key=Version) if in_line else None


def newest_esr(available: list[str], esr_lines: list[str]) -> str | None:
    for line in sorted(esr_lines, key=Version, reverse=True):
        newest = newest_in_line(available, line)
        if newest:
            return newest
    return None


@dataclass(frozen=True)
class Decision:
    target: str | None  # version the server should run after this run (None: nothing can be installed)
    candidate: str | None  # what the policy points at, before the safety rules
    latest: str | None  # newest server release known (for reports)
    action: str  # "install 11.7.6" / "up to date" / "upgrade 11.7.5 -> 11.7.6" / "blocked: ..."
    blocked: str | None = None  # why an upgrade the policy wants is refused

    @property
    def upgrade(self) -> bool:
        return self.action.startswith("upgrade ")


def candidate_for(policy: str, available: list[str], esr_lines: list[str]) -> tuple[str | None, str | None]:
    """(version the policy points at, why none) from the available server releases."""
    if PINNED.match(policy):
        return policy, None
    if policy == "latest":
        return (available[-1], None) if available else (None, "GitHub lists no server release")
    if policy == "esr":
        found = newest_esr(available, esr_lines)
        return found, None if found else f"no release of the ESR lines {', '.join(esr_lines)} is listed"
    found = newest_in_line(available, policy)
    return found, None if found else f"no release of line {policy} is listed"


def skipped_esr_lines(installed: str, target: str, esr_lines: list[str]) -> list[str]:
    """ESR lines strictly between the installed line and the target line."""
    low, high = Version(line_of(installed)), Version(line_of(target))
    return sorted((e for e in esr_lines if low < Version(e) < high), key=Version)


def decide(
    policy: str,
    installed: str | None,
    available: list[str] | None,
    esr_lines: list[str],
    *,
    lookup_error: str | None = None,
    fallback: str | None = None,
    allow_esr_skip: bool = False,
    allow_below_7_1: bool = False,
    hold: dict | None = None,
) -> Decision:
    """The version to run, and the action that gets there. `available` is None when the
    release lookup was not needed or failed (`lookup_error` says why)."""
    latest = available[-1] if available else None
    if PINNED.match(policy):
        candidate, why_none = policy, None
    elif available is None:
        candidate = fallback
        why_none = f"release lookup failed ({lookup_error}) and no mattermost_version_fallback is set"
    else:
        candidate, why_none = candidate_for(policy, available, esr_lines)

    if installed is None:
        if candidate is None:
            return Decision(None, None, latest, f"blocked: {why_none}", why_none)
        return Decision(candidate, candidate, latest, f"install {candidate}")

    def blocked(reason: str) -> Decision:
        return Decision(installed, candidate, latest, f"blocked: {reason}", reason)

    if candidate is None:
        return blocked(why_none or "no version to upgrade to")
    if Version(candidate) <= Version(installed):
        action = "up to date"
        if Version(candidate) < Version(installed):
            action += f" (policy points at older {candidate}; never downgrades)"
        return Decision(installed, candidate, latest, action)
    if hold and hold.get("version") == candidate:
        return blocked(f"{candidate} is held after a rollback ({hold.get('reason', 'see the report')}); "
                       "`make unhold` to try it again")
    if Version(installed) < Version("7.1.0") and not allow_below_7_1:
        return blocked(f"{installed} is below 7.1: Mattermost requires upgrading to 7.1 first "
                       "(pin mattermost_version to a 7.1 release) or set mattermost_allow_below_7_1")
    skipped = skipped_esr_lines(installed, candidate, esr_lines)
    if skipped and not allow_esr_skip:
        return blocked(f"{installed} -> {candidate} skips the ESR line {', '.join(skipped)} (Mattermost: supported "
                       f"but not tested): upgrade to {skipped[0]} first (mattermost_version = \"{skipped[0]}\") "
                       "or set mattermost_allow_esr_skip")
    return Decision(candidate, candidate, latest, f"upgrade {installed} -> {candidate}")
