"""make upgrade-plan: the Mattermost upgrade the version policy wants on each server, hop by
hop (one per Extended Support Release line on the way, and 7.1 for servers below it), each
hop's long migrations, and why an upgrade is refused - changing nothing.

    .venv/bin/python -m verbs.upgrade_plan [--json] [--data key=value ...]
"""

from __future__ import annotations

import sys
from dataclasses import asdict

from tasks.common import on_mysql, settings
from tasks.release import decision, installed_version, policy_chain
from tasks.state import read as read_server_state
from tasks.upgrade_checks import Finding, hop_findings
from tasks.versions import hop_notes
from verbs.session import report_plans


def plan_for(host) -> dict:
    now = read_server_state()
    d, s = decision(), settings()
    facts = now.get("upgrade_facts")
    return {"host": host.name, "installed": installed_version(now), "target": d.target, "candidate": d.candidate,
            "action": d.action, "blocked": d.blocked, "stops_before": d.stops_before, "on_mysql": on_mysql(now),
            "facts": facts,
            "hops": [{"from": a, "to": b, "notes": hop_notes(a, b),
                      "findings": [asdict(f) | {"refuses": f.refuses} for f in hop_findings(a, b, facts, s.release.accept)]}
                     for a, b in policy_chain()]}


def plan_text(plan: dict) -> str:
    lines = [f"{plan['host']}: Mattermost {plan['installed'] or 'not installed'}; the policy wants "
             f"{plan['candidate'] or plan['target']}"]
    for number, hop in enumerate(plan["hops"], 1):
        lines.append(f"  hop {number}: {hop['from']} -> {hop['to']} (backup first, health check, automatic rollback "
                     "of this hop)")
        lines += [f"    note: {note}" for note in hop["notes"]]
        lines += [f"    {Finding(**{k: v for k, v in f.items() if k != 'refuses'}).line()}" for f in hop.get("findings", [])]
    if plan["blocked"]:
        lines.append(f"  REFUSED: {plan['blocked']}")
    elif plan.get("stops_before"):
        lines.append(f"  the upgrade stops at {plan['target']}: {plan['stops_before']}")
    elif not plan["hops"]:
        lines.append(f"  {plan['action']}")
    else:
        lines.append("  `make upgrade` runs the hops in order; a failed hop is rolled back and the run stops at the last "
                     "healthy one, where the next run goes on")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    return report_plans(argv, plan_for, lambda name, plan: plan_text(plan))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
