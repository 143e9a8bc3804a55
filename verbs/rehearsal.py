"""make upgrade-rehearsal SCRATCH=<server>: the upgrade the version policy wants, rehearsed on a
copy of production before production is touched.

Production's newest backup is copied to this workstation (as `make fetch-backup` does: read-only
on production), onto the scratch server (a server converged by this deploy with the same
settings and its own name), and restored there made harmless before Mattermost starts on it
(its site URL, no e-mail, no push, no outgoing webhooks or slash commands, the notices and backup
timers off: tasks/rehearsal.py). Then the same hops as production would run, each with the same
checks before it and the same check after its start; each hop's outage measured. The report
(reports/rehearsal-<production>-<time>.txt and .json) names the findings, each check, and the
forecast of production's outage per hop; patch night can require a passed one
(patch_require_rehearsal_days).

    .venv/bin/python -m verbs.rehearsal SCRATCH [--data key=value ...]
"""

from __future__ import annotations

import json
import sys
import time

from tasks.common import helper, run_on, settings
from tasks.rehearsal import harmless, outage_of, report_text, timers_off
from tasks.release import decision, fetch_spec, policy_chain
from tasks.service import upgrade_spec
from tasks.state import read as read_server_state
from tasks.upgrade_checks import hop_findings
from verbs.fetch_backup import fetch
from verbs.server_actions import restore_spec, save_report
from verbs.session import ROOT, connected, on, positional

MARKER = "/var/lib/mattermost-deploy/rehearsal.json"  # this server holds a rehearsal's copy


def upload(host, local_path, remote_dir: str) -> tuple[bool, str]:
    """Stream a local tar file into `remote_dir` on the host (unpacked there)."""
    command = f"tar -C {remote_dir} -xf -"
    if host.data.get("_sudo"):
        command = "sudo -n " + command
    stdin, stdout, stderr = host.connector.client.exec_command(command)
    with open(local_path, "rb") as f:
        while chunk := f.read(1 << 20):
            stdin.write(chunk)
    stdin.channel.shutdown_write()
    ok = stdout.channel.recv_exit_status() == 0
    return ok, "" if ok else stderr.read().decode(errors="replace").strip()[-300:]


def step(host, command, what: str) -> str:
    ok, output = run_on(host, command, print_output=True)
    text = "\n".join(line.line for line in output) if output else ""
    if not ok:
        raise RuntimeError(f"{what} failed on {host.name}: {text.strip().splitlines()[-1] if text.strip() else ''}")
    return text


def rehearse(production, scratch, fetched) -> dict:
    """Everything on the scratch server; production is not touched."""
    with on(scratch):
        s, now = settings(), read_server_state(housekeeping=True)
        people = [u for u in (now.get("housekeeping") or {}).get("users", []) if not u.get("is_bot")]
        marked = run_on(scratch, f"test -f {MARKER}")[0]
        if people and not marked:
            raise RuntimeError(f"{scratch.name} has {len(people)} people's accounts and holds no earlier rehearsal: "
                               "rehearse on a scratch server (converged by this deploy, nobody using it)")
        name = fetched.name.removesuffix(".tar")
        print(f"  copying {name} onto {scratch.name}", flush=True)
        ok, error = upload(scratch, fetched, s.backup_dir)
        if not ok:
            raise RuntimeError(f"copying the backup onto {scratch.name} failed: {error}")
        step(scratch, timers_off(), "turning the timers off")
        overrides = harmless(s.site_url)
        step(scratch, helper("restore", {**restore_spec(s, name), "config_overrides": overrides}),
             "restoring the copy")
        step(scratch, f"mkdir -p /var/lib/mattermost-deploy && echo "
                      f"'{json.dumps({'production': production, 'backup': name, 'at': time.time()})}' > {MARKER}",
             "marking the server as a rehearsal's copy")
        for cached in ("_mm_state", "_mm_decision", "_mm_policy_chain"):  # the copy is read afresh
            if hasattr(scratch, cached):
                delattr(scratch, cached)
        now = read_server_state()
        d, facts = decision(), now.get("upgrade_facts")
        record = {"production": production, "scratch": scratch.name, "backup": name, "from": now["install"].get("version"),
                  "target": d.candidate, "harmless": overrides, "hops": [], "started": time.time()}
        allowed = d.chain
        for version in dict.fromkeys(b for _, b in allowed):
            step(scratch, helper("fetch-release", fetch_spec(s, version)), f"fetching {version}")
        for old, new in policy_chain():
            findings = hop_findings(old, new, facts, s.release.accept)
            hop = {"from": old, "to": new, "findings": [f.line() for f in findings]}
            record["hops"].append(hop)
            if (old, new) not in allowed:
                hop["refused"] = d.blocked or d.stops_before
                hop["ok"] = False
                break
            ok, output = run_on(scratch, helper("upgrade", upgrade_spec(s, old, new)), print_output=True)
            text = "\n".join(line.line for line in output)
            hop.update(ok=ok, outage_s=outage_of(text),
                       error=None if ok else (text.strip().splitlines() or ["?"])[-1].removeprefix("ERROR: "))
            if not ok:
                break
        record["passed"] = bool(record["hops"]) and all(h["ok"] for h in record["hops"])
        record["finished"] = time.time()
        return record


def main(argv: list[str]) -> int:
    names = positional(argv)
    if not names:
        print("name the scratch server: make upgrade-rehearsal SCRATCH=<server in the inventory>", file=sys.stderr)
        return 2
    with connected(argv) as (_, hosts):
        reachable = {h.name: h for h, error in hosts if error is None}
        errors = [f"{h.name}: {error}" for h, error in hosts if error]
        scratch = reachable.get(names[0])
        production = [h for name, h in reachable.items() if name != names[0]]
        if scratch is None or len(production) != 1:
            print(f"FAILED: the inventory must hold the scratch server {names[0]} and one production server "
                  f"(found {sorted(reachable)}){'; ' + '; '.join(errors) if errors else ''}", file=sys.stderr)
            return 1
        prod = production[0]
        failed = fetch(prod, "latest")  # read-only on production: a tar of its newest backup
        if failed:
            print(f"FAILED: {failed}", file=sys.stderr)
            return 1
        with on(prod):
            folder = ROOT / (prod.data.get("fetched_backups_dir") or "backups") / prod.name
        fetched = max(folder.glob("*.tar"), key=lambda p: p.stat().st_mtime)
        try:
            record = rehearse(prod.name, scratch, fetched)
        except RuntimeError as e:
            print(f"FAILED: {e}", file=sys.stderr)
            return 1
        with on(prod):
            save_report("rehearsal", prod.name, record, report_text(record))
    return 0 if record["passed"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
