"""Patch night's plan and report, as pure functions of the server's state (OS updates,
reboot flag, needrestart) and the version decision."""

from __future__ import annotations

import fnmatch
import getpass
import socket
import time
from dataclasses import dataclass, field

STEPS = ("backup", "packages", "restarts", "reboot", "mattermost")


def operator_id() -> str:
    """Who runs patch night, as the lock names them."""
    return f"{getpass.getuser()}@{socket.gethostname()}"


@dataclass
class PatchPlan:
    packages: list[dict]
    held: list[str]
    reboot: str | None  # why a reboot will follow, or None
    restarts: list[str]  # what needrestart lists now (more may follow the upgrade)
    deferred: list[str]  # listed but never restarted at run time
    mattermost: str  # the version decision's action
    mattermost_upgrade: bool | None  # None: no Mattermost here (a database server)
    lock: dict | None
    unfinished: dict | None
    done: list[str] = field(default_factory=list)

    @property
    def nothing_to_do(self) -> bool:
        return not (self.packages or self.reboot or self.restarts or self.mattermost_upgrade or self.unfinished)


class NoMattermost:
    """The version decision of a database server of other machines: nothing to upgrade here."""
    action = "none here (a database server: its Mattermost servers follow it in the same run)"
    upgrade = None


def reboot_reason(os_state: dict, patterns: list[str]) -> str | None:
    if os_state.get("reboot_required"):
        pkgs = ", ".join(os_state.get("reboot_packages") or []) or "an earlier upgrade"
        return f"already required by {pkgs} (/run/reboot-required)"
    if (os_state.get("needrestart") or {}).get("kernel_status") in (2, 3):
        return "a newer kernel is installed than the one running"
    matches = [p["name"] for p in os_state.get("pending", []) if any(fnmatch.fnmatch(p["name"], pat) for pat in patterns)]
    if matches:
        return f"upgrading {', '.join(matches)} (patch_reboot_packages)"
    return None


def make_plan(os_state: dict, decision, reboot_patterns: list[str], never_restart: list[str]) -> PatchPlan:
    listed = (os_state.get("needrestart") or {}).get("services", [])
    deferred = [s for s in listed if any(fnmatch.fnmatch(s, pat) for pat in never_restart)]
    run = os_state.get("run")
    return PatchPlan(
        packages=os_state.get("pending", []),
        held=os_state.get("held", []),
        reboot=reboot_reason(os_state, reboot_patterns),
        restarts=[s for s in listed if s not in deferred],
        deferred=deferred,
        mattermost=decision.action,
        mattermost_upgrade=decision.upgrade,
        lock=os_state.get("lock"),
        unfinished=run,
        done=(run or {}).get("done", []),
    )


def plan_text(host: str, plan: PatchPlan) -> str:
    lines = [f"Patch night plan for {host}:"]
    if plan.unfinished:
        lines.append(f"  an unfinished run started {plan.unfinished.get('started_text')} by "
                     f"{plan.unfinished.get('holder')}; done: {', '.join(plan.done) or 'nothing'} - it continues")
    if plan.nothing_to_do:
        lines.append("  nothing to do: no package upgrades, no restart or reboot needed, Mattermost " + plan.mattermost)
        return "\n".join(lines)
    security = sum(1 for p in plan.packages if p.get("security"))
    lines.append(f"  packages to upgrade: {len(plan.packages)} ({security} from the security archive)")
    for p in plan.packages:
        flag = "  [security]" if p.get("security") else ""
        lines.append(f"    {p['name']} {p.get('current') or '(new)'} -> {p['new']}{flag}")
    if plan.held:
        lines.append(f"  held back (apt-mark hold): {', '.join(plan.held)}")
    if plan.reboot:
        lines.append(f"  reboot: yes - {plan.reboot}; services restart with it")
    else:
        lines.append("  reboot: no (unless the upgrade asks for one in /run/reboot-required)")
        now = ", ".join(plan.restarts) or "none yet"
        lines.append(f"  restarts: what needrestart lists after the upgrade (now: {now})")
    if plan.deferred:
        lines.append(f"  left to the next reboot: {', '.join(plan.deferred)}")
    lines.append(f"  Mattermost: {plan.mattermost}")
    if plan.mattermost_upgrade is not None:
        lines.append("  first: a backup (database, config.json, data)")
    return "\n".join(lines)


def report_text(host: str, record: dict, plan: PatchPlan) -> str:
    started, finished = record.get("started", time.time()), record.get("finished", time.time())
    upgraded = record.get("upgraded", [])
    restarted = ", ".join(record.get("restarted", [])) or "none"
    if record.get("rebooted") and record.get("restarts_by_reboot"):
        restarted = "all, by the reboot"
    lines = [
        f"Patch night on {host}",
        f"  started  {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(started))} by {record.get('holder')}",
        f"  duration {int(finished - started) // 60} min {int(finished - started) % 60} s",
        f"  packages upgraded: {len(upgraded)}",
        *[f"    {p['name']} {p.get('current') or '(new)'} -> {p['new']}" for p in upgraded],
        f"  services restarted: {restarted}",
        f"  left to the next reboot: {', '.join(record.get('deferred', [])) or 'nothing'}",
        f"  rebooted: {'yes' if record.get('rebooted') else 'no'}",
        (f"  PostgreSQL: {'running' if record.get('healthy') else 'NOT RUNNING'} (the database server)"
         if record.get("role") == "database" else
         f"  Mattermost: {record.get('mattermost_before')} -> {record.get('mattermost_after')} "
         f"({'healthy' if record.get('healthy') else 'NOT HEALTHY'})"),
    ]
    if record.get("reboot_still_required"):
        lines.append("  a reboot is still required (/run/reboot-required)")
    offsite = record.get("offsite")
    if offsite:
        lines.append(f"  off-server copy: {offsite['state']}" + (f" ({offsite.get('error')})" if offsite.get("error") else ""))
    problems = all_good_problems(record)
    lines.append("  all good: " + ("yes" if not problems else "NO - " + "; ".join(problems)))
    return "\n".join(lines)


def all_good_problems(record: dict) -> list[str]:
    """What keeps a patch night from being all good."""
    problems = []
    if not record.get("healthy"):
        problems.append("PostgreSQL is not running" if record.get("role") == "database" else
                        "Mattermost is not healthy")
    if (record.get("offsite") or {}).get("state") in ("failed", "stale"):
        problems.append(f"the off-server copy is {record['offsite']['state']}")
    if record.get("reboot_still_required"):
        problems.append("a reboot is still required")
    return problems
