"""make status: one row per server - installed and running versions, the version the
policy wants, the newest release, the action a deploy would take, pending OS updates
(when known), the last backup, the off-server copy and the server's health checks (the
ones the notices timer runs; each problem on a line below). `--json` for monitoring;
exit status 1 when something needs the operator.

    .venv/bin/python -m verbs.status [--json] [--data key=value ...]
"""

from __future__ import annotations

import json
import sys
import time

from pyinfra.api.exceptions import PyinfraError

from tasks.common import settings
from tasks.release import decision, installed_version, lookup_releases
from tasks.state import read as read_server_state
from verbs.session import connected, on

COLUMNS = ["host", "installed", "running", "target", "latest", "action", "os_updates", "last_backup", "offsite",
           "checks"]


def offsite_text(state: dict | None) -> str | None:
    """The off-server copy in one cell: ok (when), stale (since when) or FAILED (why)."""
    if not state:
        return None
    since = time.strftime("%Y-%m-%d %H:%M", time.gmtime(state["last_ok"])) if state.get("last_ok") else "never"
    return {"ok": f"ok {since}", "stale": f"STALE: last ok {since}", "none": "no copy yet",
            "failed": f"FAILED: {state.get('error')}"}.get(state["state"], state["state"])


def latest_known(s) -> tuple[str | None, str | None]:
    """The newest release even when the policy pins one (the column is for the operator)."""
    versions, error = lookup_releases(s)
    return (versions[-1] if versions else None), error


def database_server_row(host, s, now) -> dict:
    """A database server's line: PostgreSQL up, its OS updates."""
    active = (now.get("db") or {}).get("server_active")
    row = {"host": host.name, "action": "database server", "healthy": bool(active),
           "os_updates": (now.get("os_updates") or {}).get("count"),
           "database": f"PostgreSQL {(now.get('postgresql') or {}).get('major')} for {', '.join(s.place.clients)}",
           "problems": [] if active else ["PostgreSQL is not running"]}
    row["checks"] = "ok" if active else "1 problem(s)"
    return row


def row_for(host) -> dict:
    with on(host):
        try:
            s, now = settings(), read_server_state(os_updates="cached")
            if s.place.role == "database":
                return database_server_row(host, s, now)
            d = decision()
        except PyinfraError as e:
            return {"host": host.name, "action": f"error: {e}"}
        installed = installed_version(now)
        running = now["health"].get("version")
        latest, error = (d.latest, None) if d.latest else latest_known(s)
        backups = now.get("backups") or {}
        manifest = backups.get("newest_manifest") or {}
        row = {
            "host": host.name,
            "installed": installed,
            "running": running,
            "version_mismatch": bool(installed and running and installed != running),
            "healthy": now["health"]["ok"],
            "target": d.target,
            "latest": latest,
            "action": d.action,
            "os_updates": (now.get("os_updates") or {}).get("count"),
            "last_backup": manifest.get("created"),
            "last_backup_name": backups.get("newest"),
            "offsite": offsite_text(now.get("offsite")),
            "offsite_state": (now.get("offsite") or {}).get("state"),
            "files": (f"bucket {s.files.bucket} at {s.files.endpoint}" if now.get("files_driver") == "amazons3"
                      else "local data folder"),
            "database": f"{s.place.host}:{s.place.port} (TLS verified)" if s.place.remote else "local PostgreSQL",
        }
        probe = now.get("files_probe") or {}
        if now.get("files_driver") == "amazons3" and probe.get("problem"):
            row["problems_files"] = f"the bucket refuses Mattermost's key: {probe['problem']}"
        # The server's own health checks, the same the notices timer runs (mmhelper/steps/notices.py).
        checks = (now.get("notices") or {}).get("checks") or []
        row["problems"] = [c["text"] for c in checks if not c["ok"]] + (
            [row.pop("problems_files")] if row.get("problems_files") else [])
        row["checks"] = f"{len(row['problems'])} problem(s)" if row["problems"] else "ok"
        if error:
            row["latest_error"] = error
        return row


def table(rows: list[dict]) -> str:
    def cell(row, key):
        value = row.get(key)
        if key == "running" and row.get("version_mismatch"):
            return f"{value} (!= installed)"
        if key == "running" and value is None and "healthy" in row:
            return "down"
        return "-" if value is None else str(value)

    cells = [[cell(r, k) for k in COLUMNS] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(COLUMNS)]
    lines = ["  ".join(k.ljust(w) for k, w in zip(COLUMNS, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    notes = [f"note: {r['host']}: latest release unknown: {r['latest_error']}" for r in rows if r.get("latest_error")]
    notes += [f"problem: {r['host']}: {text}" for r in rows for text in r.get("problems") or []]
    return "\n".join(lines + notes)


def main(argv: list[str]) -> int:
    as_json = "--json" in argv
    with connected(argv) as (_, hosts):
        rows = [row_for(h) if error is None else {"host": h.name, "action": "unreachable", "error": error}
                for h, error in hosts]
    print(json.dumps(rows, indent=2) if as_json else table(rows))
    for row in rows:  # one line per server that could not be read, at the end
        if row.get("error"):
            print(f"FAILED: {row['host']}: {row['error']}", file=sys.stderr)
    return 1 if any(r.get("error") or str(r.get("action", "")).startswith("error")
                    or r.get("offsite_state") in ("failed", "stale") or r.get("problems") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
