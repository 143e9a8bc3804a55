"""The Debian release upgrades (11 bullseye -> 12 bookworm -> 13 trixie, one release at a time:
Debian supports no skip): the plan, as pure functions of
what the server reported (mmhelper/jobs/os_release.py simulates the upgrade against the new
release's package lists in a private folder), and the report. verbs/os_upgrade.py and
verbs/os_upgrade_plan.py act on it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

NEXT = {"bullseye": "bookworm", "bookworm": "trixie"}  # the release upgrades this deploy makes
VERSION = {"bullseye": "11", "bookworm": "12", "trixie": "13"}
NEWEST = "trixie"


def cannot_undo(current: str | None) -> str:
    """What a release upgrade cannot undo by itself."""
    number = VERSION.get(current or "", "?")
    return (f"the packages cannot be downgraded to Debian {number}: the way back is the pre-upgrade backup restored "
            f"onto a Debian {number} server (README: Debian releases)")


@dataclass
class OsPlan:
    host: str
    current: str | None
    target: str | None
    refusals: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    third_party: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    upgraded: int = 0
    new: int = 0
    download: int = 0
    more_disk: int = 0
    disk_needed: int = 0
    disk_free: int = 0
    postgresql: tuple[int, int] | None = None
    db_bytes: int = 0
    outage: str = ""
    done: list[str] = field(default_factory=list)
    lock: dict | None = None
    nothing_to_do: bool = False

    @property
    def safe(self) -> bool:
        return not self.refusals


def mb(n: int) -> str:
    return f"{n / 1e6:,.0f} MB"


def make_os_plan(host: str, os_info: dict, state: dict, healthy: bool, postgresql_next: int | None = None) -> OsPlan:
    """What the release upgrade would do on this server, and whether it is safe to start."""
    codename = os_info.get("codename")
    run = state.get("run")
    plan = OsPlan(host, (run or {}).get("release_before") or codename, (run or {}).get("target") or NEXT.get(codename),
                  lock=state.get("lock"), done=list((run or {}).get("done", [])))
    if run:
        plan.notes.append(f"an unfinished release upgrade (started {run.get('started_text')}) continues: done so far "
                          f"{', '.join(plan.done) or 'nothing'}")
    elif os_info.get("id") != "debian" or codename not in NEXT:
        if codename == NEWEST:
            plan.nothing_to_do = True
            plan.notes.append(f"already Debian {VERSION.get(codename, '?')} ({codename}): nothing to do")
            return plan
        plan.refusals.append(f"this server runs {os_info.get('id')} {codename}; the release upgrades go from "
                             "Debian 11 (bullseye) to 12 (bookworm) to 13 (trixie)")
        return plan
    if state.get("dpkg_audit") and not run:
        plan.refusals.append("dpkg has unfinished packages (dpkg --audit): finish them first "
                             f"(`dpkg --configure -a`): {state['dpkg_audit'][:200]}")
    if state.get("held") and "packages" not in plan.done:
        plan.refusals.append(f"held packages would block the upgrade: {', '.join(state['held'])} - "
                             f"`apt-mark unhold {' '.join(state['held'])}` or upgrade by hand")
    if not healthy and not run:
        plan.refusals.append("Mattermost is not healthy now: fix that first (the upgrade checks its health after "
                             "each step and would stop)")
    plan.third_party = sorted({f"{e['file']} ({e['uri']})" for e in state.get("sources", [])
                               if e["enabled"] and not e["debian"]})
    sim = state.get("simulation") or {}
    if sim.get("error"):
        plan.refusals.append(sim["error"])
    plan.removed, plan.upgraded, plan.new = sim.get("removed", []), sim.get("upgraded", 0), sim.get("new", 0)
    plan.download, plan.more_disk = sim.get("download", 0), sim.get("more_disk", 0)
    serving = [c for c in state.get("clusters", []) if c["port"] == 5432]
    new_major = postgresql_next or max((int(p.split("-")[1]) for p in sim.get("postgresql", [])), default=None)
    if serving and new_major and new_major > serving[0]["version"]:
        plan.postgresql = (serving[0]["version"], new_major)
        gone = [p for p in plan.removed if p == f"postgresql-{serving[0]['version']}"]
        if gone:
            plan.refusals.append(f"the upgrade would remove {gone[0]} before its cluster is upgraded: hold it "
                                 f"(`apt-mark manual {gone[0]}`) and plan again")
    plan.db_bytes = state.get("db_bytes", 0)
    # apt's download and the unpacked packages, plus a copy of the database (pg_upgrade copies), with a margin.
    plan.disk_needed = int(1.2 * (plan.download + max(plan.more_disk, 0) + (plan.db_bytes if plan.postgresql else 0)))
    free = state.get("free_bytes", {})
    plan.disk_free = min(free.values()) if free else 0
    if "packages" not in plan.done and free and plan.disk_free < plan.disk_needed:
        plan.refusals.append(f"not enough free disk: the upgrade needs about {mb(plan.disk_needed)}, "
                             f"{mb(plan.disk_free)} are free: free some space")
    cluster = f" + the cluster upgrade (about {5 + plan.db_bytes / 100e6:.0f} s)" if plan.postgresql else ""
    restart = (" - except while the packages restart PostgreSQL: Mattermost stops with its database and "
               "systemd starts it again (3 to 14 s measured by make bench-bullseye)") if serving else ""
    plan.outage = (f"Mattermost is down for the reboot (about a minute on a VPS){cluster}; it serves during the "
                   f"package upgrade{restart}")
    return plan


def plan_text(plan: OsPlan) -> str:
    head = f"{plan.host}: Debian {VERSION.get(plan.current or '', '?')} ({plan.current}) -> " \
           f"{VERSION.get(plan.target or '', '?')} ({plan.target})"
    if plan.nothing_to_do:
        return f"{plan.host}: {plan.notes[0]}"
    lines = [head]
    lines += [f"  note: {n}" for n in plan.notes]
    if plan.done:  # a run under way: what is left
        steps = ["backup", "sources", "packages", "reboot", "postgresql"]
        lines.append("  still to do: " + ", ".join([x for x in steps if x not in plan.done] + ["report"])
                     + " (an interrupted dpkg run is finished first)")
        lines += [f"  REFUSED: {r}" for r in plan.refusals]
        return "\n".join(lines)
    lines.append(f"  sources: Debian's {plan.target} (deb822 /etc/apt/sources.list.d/debian.sources); the old ones "
                 "are set aside, renamed *.disabled-by-os-upgrade")
    lines.append("  third-party sources set aside: " + (", ".join(plan.third_party) or "none"))
    lines.append(f"  packages: {plan.upgraded} upgraded, {plan.new} new, {len(plan.removed)} removed"
                 + (f" ({', '.join(plan.removed[:12])}{'...' if len(plan.removed) > 12 else ''})" if plan.removed else ""))
    lines.append(f"  download {mb(plan.download)}, disk needed about {mb(plan.disk_needed)}, free {mb(plan.disk_free)}")
    if plan.postgresql:
        lines.append(f"  PostgreSQL {plan.postgresql[0]} -> {plan.postgresql[1]}: pg_upgradecluster (database "
                     f"{mb(plan.db_bytes)}); the old cluster is kept, stopped, until you drop it")
    lines.append(f"  downtime: {plan.outage}")
    lines.append("  steps: backup, sources, packages (upgrade, then full-upgrade; local config files kept), "
                 "reboot, PostgreSQL cluster, health check, report")
    lines.append(f"  cannot be undone automatically: {cannot_undo(plan.current)}")
    if NEXT.get(plan.target or ""):
        lines.append(f"  then: Debian {VERSION[NEXT[plan.target]]} ({NEXT[plan.target]}) in the same `make os-upgrade`, "
                     "one release at a time")
    if plan.refusals:
        lines += [f"  REFUSED: {r}" for r in plan.refusals]
    else:
        lines.append("  safe to start: yes")
    return "\n".join(lines)


def report_text(host: str, record: dict, plan: OsPlan) -> str:
    took = record.get("finished", time.time()) - record.get("started", time.time())
    pg = record.get("postgresql") or {}
    planned = record.get("planned") or {"upgraded": plan.upgraded, "new": plan.new, "removed": plan.removed}
    lines = [
        f"Debian release upgrade on {host}: {record.get('started_text')}, {took / 60:.1f} min",
        f"  release: {plan.current or record.get('release_before')} -> {record.get('release_after')}",
        f"  packages: {planned['upgraded']} upgraded, {planned['new']} new, {len(planned['removed'])} removed "
        f"({record.get('packages_seconds', '?')} s for the last run of the upgrade)",
        "  sources set aside: " + (", ".join(record.get("disabled_sources", [])) or "none")
        + f" - check third-party ones for a release of theirs for Debian {VERSION.get(record.get('release_after') or '', '')} "
        "before enabling them again",
        f"  rebooted: {'yes' if record.get('rebooted') else 'no'}",
        (f"  PostgreSQL: {pg['from']} -> {pg['to']} (Mattermost down {pg['outage_seconds']} s); the old cluster is "
         f"kept, stopped: `pg_dropcluster {pg['from']} main` once you are satisfied") if pg else
        "  PostgreSQL: no cluster upgrade",
        f"  Mattermost after: {record.get('mattermost_after')} ({'healthy' if record.get('healthy') else 'NOT healthy'})",
        "  next: `make deploy` (settings for the new release, e.g. nginx's http2 directive)",
    ]
    return "\n".join(lines)
