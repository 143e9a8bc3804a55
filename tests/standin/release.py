"""Tiny STAND-IN release tarballs for the bad-input tests only (tampered, signed by another
key, signed by an expired key): the deploy refuses them before unpacking, so nothing in
them ever runs. Every release that is installed in the tests is real Mattermost
(tests/realmm). Same file names as releases.mattermost.com: the tarball, a detached GPG
signature (`.sig`) and a `.sha256` file, served by the stand-in upstream."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import time
from pathlib import Path

from tests.standin import signing

NEVER_RUN = b"#!/bin/sh\necho 'stand-in release for a refusal test: must never be unpacked' >&2\nexit 1\n"


def tarball_name(version: str) -> str:
    return f"mattermost-{version}-linux-amd64.tar.gz"


def release_path(upstream_root: Path, version: str) -> Path:
    return upstream_root / "releases" / version / tarball_name(version)


def build(upstream_root: Path, version: str, gpg_home: Path, fingerprint: str, *,
          faked_time: str | None = None) -> Path:
    """Write releases/{V}/mattermost-{V}-linux-amd64.tar.gz with .sig and .sha256."""
    dest = release_path(upstream_root, version)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".tmp")
    now = int(time.time())
    with tarfile.open(tmp, "w:gz") as tar:
        for name in ("mattermost", "mattermost/bin"):
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, now
            tar.addfile(info)
        info = tarfile.TarInfo("mattermost/bin/mattermost")
        info.size, info.mode, info.mtime = len(NEVER_RUN), 0o755, now
        tar.addfile(info, io.BytesIO(NEVER_RUN))
    os.replace(tmp, dest)
    signing.sign_detached(gpg_home, fingerprint, dest, faked_time=faked_time)
    write_checksum(dest)
    return dest


def write_checksum(tarball: Path) -> str:
    h = hashlib.sha256()
    with open(tarball, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    digest = h.hexdigest()
    tarball.with_name(tarball.name + ".sha256").write_text(f"{digest}  {tarball.name}\n")
    return digest
