"""The upgrade rehearsal's decisions (verbs/rehearsal.py runs it): what makes the copy of
production harmless before Mattermost starts on the scratch server, the report of a run, and
whether patch night may upgrade production (a passed rehearsal of the same version, recent
enough, when the settings ask for one). Pure: tested without a server.

A restored copy is the production server under another name: it would mail people, push to
their phones, call outgoing webhooks and slash commands, and post notices
(../shared/reference/upgrade-notes.md, "A copy that must not reach people").
"""

from __future__ import annotations

import json
import time
from pathlib import Path


def harmless(site_url: str) -> dict:
    """The config.json keys set on the copy before its first start."""
    return {
        "ServiceSettings.SiteURL": site_url,
        "EmailSettings.SendEmailNotifications": False,
        "EmailSettings.SMTPServer": "",
        "EmailSettings.SendPushNotifications": False,
        "EmailSettings.PushNotificationServer": "",
        "ServiceSettings.EnableOutgoingWebhooks": False,
        "ServiceSettings.EnableCommands": False,
        "ServiceSettings.EnableOutgoingOAuthConnections": False,
    }


TIMERS = ("mattermost-notices.timer", "mattermost-backup.timer")  # the copy posts no notices, takes no backups


def timers_off() -> str:
    """The command that stops and disables the timers the scratch server has (a server without
    notices has no notices timer: `systemctl disable` of a unit that is not there fails)."""
    return "; ".join(f"if systemctl cat {t} >/dev/null 2>&1; then systemctl disable --now {t} || exit 1; fi"
                     for t in TIMERS)


def outage_of(output: str) -> float | None:
    """Seconds users waited in one hop, from the upgrade helper's own line
    (`stop 0.21s, start with migrations and health 3.10s`)."""
    import re

    match = re.search(r"stop ([\d.]+)s, start with migrations and health ([\d.]+)s", output)
    return round(float(match.group(1)) + float(match.group(2)), 2) if match else None


def report_text(record: dict) -> str:
    lines = [f"Upgrade rehearsal of {record['production']} on {record['scratch']}: backup {record['backup']} "
             f"(Mattermost {record['from']}), target {record['target']}",
             "  made harmless before its start: " + ", ".join(f"{k}={v!r}" for k, v in record["harmless"].items())
             + "; timers off: " + ", ".join(TIMERS)]
    for number, hop in enumerate(record["hops"], 1):
        lines.append(f"  hop {number}: {hop['from']} -> {hop['to']}")
        lines += [f"    before: {line}" for line in hop["findings"]]
        if hop.get("refused"):
            lines.append(f"    REFUSED before any outage: {hop['refused']}")
            continue
        if hop.get("outage_s") is not None:
            lines.append(f"    users waited {hop['outage_s']} s on the copy: the forecast of production's outage for this "
                         "hop (the same data; another machine's speed may differ)")
        lines.append("    check after the start: " + ("passed" if hop["ok"] else f"FAILED: {hop['error']}"))
    lines.append("  result: " + ("PASSED - `make upgrade` on production runs these hops" if record["passed"] else
                                 "FAILED - production would stop (or roll back) at the hop above; fix that first"))
    return "\n".join(lines)


def passed_rehearsal(reports_dir: Path, host: str, target: str, days: int, now: float | None = None) -> dict | None:
    """The newest passed rehearsal of `target` for production `host` within `days`, or None."""
    now = time.time() if now is None else now
    found = []
    for path in reports_dir.glob(f"rehearsal-{host}-*.json"):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if record.get("passed") and record.get("target") == target and now - record.get("finished", 0) <= days * 86400:
            found.append(record)
    return max(found, key=lambda r: r["finished"]) if found else None
