"""Which Mattermost version a server should run: the version policy, as pure functions.

Policy (setting `mattermost_version`):
  latest   the newest server release
  esr      the newest release of the newest Extended Support Release line
  X.Y      the newest patch of line X.Y
  X.Y.Z    exactly that release (no lookup needed)

Never downgrades on its own. An upgrade that would jump over Extended Support Release
lines becomes a chain of hops, one per line in between (Mattermost's "Prepare to upgrade":
backwards compatibility is guaranteed only from one ESR to the next; a delayed upgrade goes
to the closest ESR first, then from ESR to ESR), and a server below 7.1 passes through 7.1
(REQUIRED_LINES). `mattermost_allow_esr_skip` / `mattermost_allow_below_7_1` allow the
direct jump instead. A chain whose stop the release list lacks is refused with the reason.
A version whose upgrade failed and was rolled back is held until the operator clears the
hold; a chain through a held version is refused too.
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


# Lines an upgrade must stop at whatever the ESR list says: Mattermost's upgrade notes ask
# servers older than 7.1 to go through 7.1 first.
REQUIRED_LINES = ("7.1",)

# What an operator should know before a hop crosses these versions (Mattermost's
# "Important upgrade notes" and "Prepare to upgrade"): shown in the plan.
LONG_MIGRATIONS = {
    "6.0.0": "6.0 rewrites large tables (Posts, Channels, Users; Mattermost measured about 1 minute per million "
             "posts on PostgreSQL): the outage of this hop grows with the number of posts",
    "7.1.0": "7.1 adds a column and index to Reactions (Mattermost measured 1 min 18 s for 12M posts and 2.5M "
             "reactions on PostgreSQL)",
}


@dataclass(frozen=True)
class Decision:
    target: str | None  # version the server should run after this run (None: nothing can be installed)
    candidate: str | None  # what the policy points at, before the safety rules
    latest: str | None  # newest server release known (for reports)
    action: str  # "install 11.7.6" / "up to date" / "upgrade 11.7.5 -> 11.7.6" / "blocked: ..."
    blocked: str | None = None  # why an upgrade the policy wants is refused
    hops: tuple = ()  # an upgrade's releases in order, the target last: ("6.3.10", "7.1.0", "9.11.20", ...)
    stops_before: str | None = None  # why the chain stops short of the policy's version (a later hop refused)

    @property
    def upgrade(self) -> bool:
        return self.action.startswith("upgrade ")

    @property
    def chain(self) -> list[tuple[str, str]]:
        """Each hop as (from, to)."""
        if not self.upgrade:
            return []
        start = self.action.split()[1]
        steps = [start, *self.hops]
        return list(zip(steps, steps[1:], strict=False))


def hop_notes(old: str, new: str) -> list[str]:
    """The long migrations a hop from `old` to `new` runs."""
    return [note for version, note in LONG_MIGRATIONS.items() if Version(old) < Version(version) <= Version(new)]


def upgrade_chain(installed: str, target: str, available: list[str] | None, esr_lines: list[str], *,
                  allow_esr_skip: bool = False, allow_below_7_1: bool = False) -> tuple[list[str], str | None]:
    """(hops ending with the target, None) or ([], why the chain cannot be made). One hop per
    ESR line strictly between the installed and the target line (its newest listed release),
    and one per required line (7.1) unless the matching override allows the jump."""
    lines = [] if allow_esr_skip else skipped_esr_lines(installed, target, esr_lines)
    if not allow_below_7_1:
        lines += [r for r in REQUIRED_LINES if Version(line_of(installed)) < Version(r) < Version(line_of(target))
                  and r not in lines]
    hops = []
    for line in sorted(lines, key=Version):
        stop = newest_in_line(available or [], line)
        if stop is None:
            why = "Mattermost asks servers below 7.1 to stop at 7.1" if line in REQUIRED_LINES else \
                "Mattermost guarantees upgrades from one ESR to the next only"
            return [], (f"{installed} -> {target} must stop at the ESR line {line} ({why}), and the release list has "
                        f"no {line} release: pin mattermost_version to one (e.g. \"{line}.0\")"
                        + (" or set mattermost_allow_below_7_1" if line in REQUIRED_LINES else
                           " or set mattermost_allow_esr_skip"))
        hops.append(stop)
    return [*hops, target], None


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
    hops, why_not = upgrade_chain(installed, candidate, available, esr_lines, allow_esr_skip=allow_esr_skip,
                                  allow_below_7_1=allow_below_7_1)
    if why_not:
        return blocked(why_not)
    held = [v for v in hops if hold and hold.get("version") == v]
    if held:
        via = "" if held[0] == candidate else f" (a stop of the chain to {candidate})"
        return blocked(f"{held[0]}{via} is held after a rollback ({hold.get('reason', 'see the report')}); "
                       "`make unhold` to try it again")
    return Decision(candidate, candidate, latest, "upgrade " + " -> ".join([installed, *hops]), hops=tuple(hops))
