"""make channels | make users: what the server holds, read over mmctl --local.

    .venv/bin/python -m verbs.report channels|users [--json] [--data key=value ...]

channels: a table per team - channel, type, members, last post, messages, and `stale`
when nothing was posted for mattermost_stale_days (default 180).
users: username, e-mail, active or deactivated, bot, last activity when known.
"""

from __future__ import annotations

import json
import sys

from pyinfra.api.exceptions import PyinfraError

from tasks.common import settings
from tasks.reports import channel_rows, table, user_rows
from tasks.state import read as read_server_state
from verbs.session import connected, on, positional


def main(argv: list[str]) -> int:
    what = (positional(argv) or ["channels"])[0]
    as_json = "--json" in argv
    result, failed = {}, False
    with connected(argv) as (_, hosts):
        for host, error in hosts:
            with on(host):
                try:
                    if error:
                        raise PyinfraError(error)
                    if settings().place.role == "database":
                        continue  # a database server of other machines: its Mattermost server reports
                    s, state = settings(), read_server_state(housekeeping=True).get("housekeeping") or {}
                    if state.get("error"):
                        raise PyinfraError(state["error"])
                except PyinfraError as e:
                    print(f"FAILED: {host.name}: {e}", file=sys.stderr)
                    failed = True
                    continue
                rows = channel_rows(state, s.stale_days) if what == "channels" else user_rows(state)
                result[host.name] = rows
                if as_json:
                    continue
                if what == "channels":
                    for team in sorted({r["team"] for r in rows}):
                        print(f"{host.name} - team {team} (stale: no post for {s.stale_days} days)")
                        team_rows = [{**r, "stale": "stale" if r["stale"] else ""} for r in rows if r["team"] == team]
                        print(table(team_rows, ["channel", "type", "members", "last_post", "messages", "stale"]) + "\n")
                else:
                    print(f"{host.name}")
                    print(table(rows, ["username", "email", "state", "bot", "last_activity"]) + "\n")
    if as_json:
        print(json.dumps(result, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
