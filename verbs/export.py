"""make export: Mattermost's bulk export of the whole server (data portability), copied to
this workstation as exports/<host>/<file>.zip (git-ignored) and checked to be readable.

    .venv/bin/python -m verbs.export [--data key=value ...]
"""

from __future__ import annotations

import shlex
import sys
import zipfile

from tasks.common import ROOT, helper, run_on, settings
from tasks.housekeeping import helper_spec
from verbs.session import connected, on, stream_to


def export(host) -> str:
    with on(host):
        s = settings()
        status, output = run_on(host, helper("export", helper_spec(s)))
        if not status:
            return f"{host.name}: the export failed: {output.stderr.strip()[-300:]}"
        remote = output.stdout.strip().splitlines()[-1]
        folder = ROOT / (host.data.get("exports_dir") or "exports") / host.name
        folder.mkdir(parents=True, exist_ok=True)
        dest = folder / remote.rsplit("/", 1)[-1]
        partial = dest.with_suffix(".partial")
        ok, size, error = stream_to(host, f"cat -- {shlex.quote(remote)}", partial, host.name)
        if not ok:
            partial.unlink(missing_ok=True)
            return f"{host.name}: copying {remote} failed: {error}"
        with zipfile.ZipFile(partial) as z:
            if "import.jsonl" not in z.namelist():
                partial.unlink()
                return f"{host.name}: {remote} holds no import.jsonl: not a Mattermost export"
        partial.rename(dest)
        print(f"{host.name}: bulk export -> {dest} ({size >> 10} KiB)")
        return ""


def main(argv: list[str]) -> int:
    errors = []
    with connected(argv) as (_, hosts):
        for host, error in hosts:
            errors.append(f"{host.name}: {error}" if error else export(host))
    for e in filter(None, errors):
        print(f"FAILED: {e}", file=sys.stderr)
    return 1 if any(errors) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
