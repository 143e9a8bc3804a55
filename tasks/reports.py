"""The channel and user reports, as pure functions of the housekeeping state."""

from __future__ import annotations

import time

DAY_MS = 86_400_000
DEFAULT_CHANNELS = {"town-square"}  # Mattermost does not let the default channel be archived


def is_stale(channel: dict, now_ms: int, days: int) -> bool:
    """Nobody posted for `days` - people's and bots' posts count, the server's system messages
    (joins, leaves, header changes) do not; a channel never posted in counts from its creation."""
    last = channel.get("last_post_at") or channel.get("create_at") or 0
    return now_ms - last > days * DAY_MS


def channel_rows(state: dict, days: int, now_ms: int | None = None) -> list[dict]:
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    rows = []
    for team in state.get("teams", []):
        for c in team["channels"]:
            rows.append({
                "team": team["name"], "channel": c["name"],
                "type": {"O": "public", "P": "private"}.get(c["type"], c["type"]) + (" (archived)" if c["archived"] else ""),
                "members": c.get("members"), "messages": c.get("messages"),
                "last_post": day(c.get("last_post_at")) or "never",
                "last_post_at": c.get("last_post_at"),
                "stale": not c["archived"] and is_stale(c, now_ms, days),
                "archived": c["archived"],
            })
    return rows


def stale_channels(state: dict, days: int, now_ms: int | None = None) -> list[str]:
    """team:channel of the stale channels that can be archived."""
    return [f"{r['team']}:{r['channel']}" for r in channel_rows(state, days, now_ms)
            if r["stale"] and r["channel"] not in DEFAULT_CHANNELS]


def day(ms: int | None) -> str | None:
    return time.strftime("%Y-%m-%d", time.gmtime(ms / 1000)) if ms else None


def user_rows(state: dict) -> list[dict]:
    """"never" when the server has no record of any activity (no status, no session)."""
    return [{"username": u["username"], "email": u["email"], "state": "active" if u["active"] else "deactivated",
             "bot": u.get("is_bot", False), "last_activity": day(u.get("last_activity_at")) or "never",
             "last_activity_at": u.get("last_activity_at")} for u in state.get("users", [])]


def table(rows: list[dict], columns: list[str]) -> str:
    cells = [[("-" if r.get(c) is None else str(r[c])) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)
