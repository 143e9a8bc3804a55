"""make fetch-backup [BACKUP=<name>]: copy a backup from each server to this workstation
(the off-server copy), streamed over the deploy's SSH connection as a tar file:
`<fetched_backups_dir>/<host>/<backup>.tar` (git-ignored). Checked after the transfer:
the archive must read back whole and hold the backup's manifest and database dump.

    .venv/bin/python -m verbs.fetch_backup [name|latest] [--data key=value ...]
"""

from __future__ import annotations

import os
import shlex
import sys
import tarfile

from tasks.common import current, settings
from verbs.session import ROOT, connected, on, positional


def pick(backups: dict, wanted: str) -> str | None:
    return backups.get("newest") if wanted in ("", "latest") else wanted


def fetch(host, wanted: str) -> str:
    with on(host):
        s, now = settings(), current()
        name = pick(now.get("backups") or {}, wanted)
        if not name:
            return f"{host.name}: no backup on the server yet: run `make backup` first"
        dest_dir = (ROOT / (host.data.get("fetched_backups_dir") or "backups") / host.name)
        dest_dir.mkdir(parents=True, exist_ok=True)
        dest = dest_dir / f"{name}.tar"
        partial = dest.with_suffix(".tar.partial")
        command = f"tar -C {shlex.quote(s.backup_dir)} -cf - -- {shlex.quote(name)}"
        if host.data.get("_sudo"):
            command = "sudo -n " + command
        _, stdout, stderr = host.connector.client.exec_command(command)
        done, shown = 0, 0
        with open(partial, "wb") as f:
            os.chmod(partial, 0o600)  # the dump holds every message; config.json holds secrets
            while chunk := stdout.read(1 << 20):
                f.write(chunk)
                done += len(chunk)
                if done - shown >= 64 << 20:
                    print(f"  {host.name}: {done >> 20} MB", flush=True)
                    shown = done
        status = stdout.channel.recv_exit_status()
        if status != 0:
            partial.unlink(missing_ok=True)
            return f"{host.name}: tar of {name} failed: {stderr.read().decode(errors='replace').strip()[-300:]}"
        with tarfile.open(partial) as tar:
            names = set(tar.getnames())
        missing = {f"{name}/manifest.json", f"{name}/database.dump"} - names
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
