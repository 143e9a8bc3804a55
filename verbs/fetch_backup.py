"""make fetch-backup [BACKUP=<name>]: copy a backup from each server to this workstation
(the off-server copy), streamed over the deploy's SSH connection as a tar file:
`<fetched_backups_dir>/<host>/<backup>.tar` (git-ignored). Checked after the transfer:
the archive must read back whole and hold the backup's manifest and database dump.

    .venv/bin/python -m verbs.fetch_backup [name|latest] [--data key=value ...]
"""

from __future__ import annotations

import shlex
import sys
import tarfile

from mmhelper.steps.backup import DUMP, DUMP_NAMES
from tasks.common import settings
from tasks.state import read as read_server_state
from verbs.session import ROOT, connected, on, positional, stream_to


def pick(backups: dict, wanted: str) -> str | None:
    return backups.get("newest") if wanted in ("", "latest") else wanted


def fetch(host, wanted: str) -> str:
    with on(host):
        s, now = settings(), read_server_state()
        name = pick(now.get("backups") or {}, wanted)
        if not name:
            return f"{host.name}: no backup on the server yet: run `make backup` first"
        dest_dir = (ROOT / (host.data.get("fetched_backups_dir") or "backups") / host.name)
        dest_dir.mkdir(parents=True, exist_ok=True)
        dest = dest_dir / f"{name}.tar"
        partial = dest.with_suffix(".tar.partial")
        command = f"tar -C {shlex.quote(s.backup_dir)} -cf - -- {shlex.quote(name)}"
        ok, done, error = stream_to(host, command, partial, host.name)
        if not ok:
            partial.unlink(missing_ok=True)
            return f"{host.name}: tar of {name} failed: {error}"
        with tarfile.open(partial) as tar:
            names = set(tar.getnames())
        missing = {f"{name}/manifest.json"} - names
        if not names & {f"{name}/{dump}" for dump in DUMP_NAMES}:
            missing.add(f"{name}/{DUMP}")
        if missing:
            partial.unlink(missing_ok=True)
            return f"{host.name}: the copy of {name} lacks {', '.join(sorted(missing))}: not kept"
        partial.rename(dest)
        print(f"{host.name}: {name} -> {dest} ({done >> 20} MB, {len(names)} entries)")
        return ""


def main(argv: list[str]) -> int:
    names = positional(argv)
    wanted = names[0] if names else "latest"
    errors = []
    with connected(argv) as (_, hosts):
        for host, error in hosts:
            errors.append(f"{host.name}: {error}" if error else fetch(host, wanted))
    for e in filter(None, errors):
        print(f"FAILED: {e}", file=sys.stderr)
    return 1 if any(errors) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
