"""make security-report [JSON=1] [FRESH=1]: one page per server - Mattermost's security
settings against a baseline with each item's reason, the ports that answer from outside
(probed from this workstation), TLS, the service's `systemd-analyze security` exposure,
fail2ban's bans and the failed logins of the last day, the lynis hardening index (lynis
runs again when its report is older than a day; FRESH=1: now). Exit status 1 when an item
fails. Changes nothing.

    .venv/bin/python -m verbs.security_report [--json] [--fresh] [--data key=value ...]
"""

from __future__ import annotations

import ipaddress
import json
import socket
import sys
from concurrent.futures import ThreadPoolExecutor

from pyinfra.api.exceptions import PyinfraError

from tasks import security
from tasks.common import HELPER, helper, path_info, run_on, settings
from tasks.state import read as read_server_state
from verbs.session import each_host

PROBED = (22, 25, 80, 443, 3306, 5432, 6379, 8065, 8067, 8074, 8075, 9000, 9090, 11211)


def answers(address: str, port: int, timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def scan_address(s, host) -> str:
    return s.security.scan_address or host.data.get("ssh_hostname") or host.name


def outside_items(s, host, listening: list[dict]) -> list[dict]:
    """Each port the server listens on beyond loopback (and the usual suspects), probed from
    here: open where it should not be fails."""
    address = scan_address(s, host)
    try:
        resolved = socket.gethostbyname(address)
    except OSError as e:
        return [{"id": "ports", "area": "network", "ok": None, "text": f"ports not probed: {address}: {e}",
                 "reason": ""}]
    if ipaddress.ip_address(resolved).is_loopback:
        return [{"id": "ports", "area": "network", "ok": None,
                 "text": f"ports not probed from outside: the server is reached at {address} (loopback here); set "
                         "security_scan_address to its address", "reason": ""}]
    wanted = security.open_from_outside(s)
    names = {item["port"]: item["process"] for item in listening}
    ports = sorted(set(names) | set(PROBED) | set(wanted))
    with ThreadPoolExecutor(max_workers=16) as pool:
        opened = dict(zip(ports, pool.map(lambda p: answers(resolved, p), ports), strict=True))
    out = []
    for port in ports:
        if opened[port] and port not in wanted:
            out.append({"id": f"port-{port}", "area": "network", "ok": False,
                        "text": f"port {port} ({names.get(port, 'unknown')}) answers from outside ({address})",
                        "reason": "only SSH, 80 and 443 (and Calls while on) are meant to be reachable; anything "
                                  "else is one more way in - close it in the firewall (firewall_allow_tcp) or bind "
                                  "it to loopback"})
        elif not opened[port] and port in wanted and port != 80:
            out.append({"id": f"port-{port}", "area": "network", "ok": None,
                        "text": f"port {port} ({wanted[port]}) does not answer from here ({address})",
                        "reason": "people may not reach it either"})
    shown = ", ".join(f"{p}" for p in ports if opened[p])
    out.append({"id": "ports", "area": "network", "ok": not any(i["ok"] is False for i in out),
                "text": f"from this workstation to {address}: {shown or 'nothing'} answer(s); {len(ports)} ports "
                        "probed", "reason": "what an attacker on the internet sees"})
    return out


def read(fresh: bool):
    def one(host) -> dict:
        s = settings()
        read_server_state()
        if not path_info(HELPER):
            raise PyinfraError("the deploy's helper is not on the server yet: run `make deploy` first")
        ok, output = run_on(host, helper("security-report", security.report_spec(s, 0 if fresh else 86400)))
        if not ok:
            raise PyinfraError((output.stderr or output.stdout).strip()[-500:])
        found = json.loads(output.stdout.strip().splitlines()[-1])
        items = outside_items(s, host, found["listening"]) + found["items"]
        return {"items": items, "failed": [i["id"] for i in items if i["ok"] is False]}
    return one


MARK = {True: "ok  ", False: "FAIL", None: "note"}


def page(name: str, result: dict) -> str:
    lines = [f"{name}: security report - " + (f"{len(result['failed'])} failing: {', '.join(result['failed'])}"
                                               if result["failed"] else "passes")]
    area = None
    for item in result["items"]:
        if item["area"] != area:
            area = item["area"]
            lines.append(f"  [{area}]")
        lines.append(f"  {MARK[item['ok']]} {item['id']}: {item['text']}")
        if item["ok"] is False and item.get("reason"):
            lines.append(f"         why: {item['reason']}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    results = each_host(argv, read("--fresh" in argv), database_servers=True)
    pages = {name: result for name, result, error in results if not error}
    if "--json" in argv:
        print(json.dumps(pages, indent=1, sort_keys=True))
    else:
        print("\n\n".join(page(name, result) for name, result in pages.items()))
    for name, _, error in results:
        if error:
            print(f"FAILED: {name}: {error}", file=sys.stderr)
    return 1 if any(error or result["failed"] for _, result, error in results) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
