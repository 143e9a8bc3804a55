"""Build STAND-IN Mattermost release tarballs for tests (not Mattermost).

The layout follows the real tarball: a top-level `mattermost/` folder with `bin/mattermost`,
`bin/mmctl`, `config/config.json` (the real section names), `client/`, `fonts/`, `i18n/`,
`templates/`, `prepackaged_plugins/`. Each tarball gets a detached GPG signature (`.sig`)
and a `.sha256` file, served by the stand-in upstream like releases.mattermost.com.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import time
from pathlib import Path

from tests.standin import signing

HERE = Path(__file__).parent


def tarball_name(version: str) -> str:
    return f"mattermost-{version}-linux-amd64.tar.gz"


def release_path(upstream_root: Path, version: str) -> Path:
    return upstream_root / "releases" / version / tarball_name(version)


def _files(version: str, behaviour: str) -> dict[str, tuple[bytes, int]]:
    defaults = (HERE / "default_config.json").read_text()
    server = (
        (HERE / "mattermost_bin.py").read_text()
        .replace("@VERSION@", version)
        .replace("@BUILD_NUMBER@", f"{version.replace('.', '')}0042")
        .replace("@BEHAVIOUR@", behaviour)
        .replace("@DEFAULTS@", json.dumps(json.loads(defaults)))
    )
    mmctl = (HERE / "mmctl_bin.py").read_text().replace("@VERSION@", version)
    banner = f"STAND-IN Mattermost {version} for tests ({behaviour}); not the real software.\n"
    return {
        "bin/mattermost": (server.encode(), 0o755),
        "bin/mmctl": (mmctl.encode(), 0o755),
        "config/config.json": (defaults.encode(), 0o644),
        "config/README.md": (b"Configuration files\n", 0o644),
        "client/root.html": (f"<!doctype html><title>Mattermost</title><p>{banner}".encode(), 0o644),
        "client/manifest.json": (json.dumps({"name": "Mattermost"}).encode(), 0o644),
        "client/images/favicon/favicon-16x16.png": (b"\x89PNG standin", 0o644),
        "fonts/OpenSans-Regular.ttf": (b"standin font", 0o644),
        "i18n/en.json": (json.dumps([{"id": "api.context.404.app_error", "translation": "Sorry"}]).encode(), 0o644),
        "templates/welcome_body.html": (b"<p>Welcome</p>", 0o644),
        "prepackaged_plugins/README.md": (b"prepackaged plugins\n", 0o644),
        "manifest.txt": (f"mattermost {version}\n".encode(), 0o644),
        "NOTICE.txt": (b"stand-in\n", 0o644),
        "README.md": (banner.encode(), 0o644),
        "STANDIN.txt": (banner.encode(), 0o644),
    }


def build(
    upstream_root: Path,
    version: str,
    gpg_home: Path,
    fingerprint: str,
    *,
    behaviour: str = "ok",
    pad_mb: int = 0,
    faked_time: str | None = None,
) -> Path:
    """Write releases/{V}/mattermost-{V}-linux-amd64.tar.gz with .sig and .sha256."""
    dest = release_path(upstream_root, version)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".tmp")
    now = int(time.time())
    dirs = set()
    files = _files(version, behaviour)
    with tarfile.open(tmp, "w:gz", compresslevel=1 if pad_mb else 6) as tar:
        for name in files:
            dirs.update(str(p) for p in Path(name).parents if str(p) != ".")
        for d in ["", *sorted(dirs)]:
            info = tarfile.TarInfo(f"mattermost/{d}".rstrip("/"))
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, now
            tar.addfile(info)
        for name, (data, mode) in sorted(files.items()):
            info = tarfile.TarInfo(f"mattermost/{name}")
            info.size, info.mode, info.mtime = len(data), mode, now
            tar.addfile(info, io.BytesIO(data))
        if pad_mb:
            # Incompressible padding so benchmarks move a realistic amount of data.
            info = tarfile.TarInfo("mattermost/client/standin-padding.bin")
            info.size, info.mode, info.mtime = pad_mb * 1024 * 1024, 0o644, now
            tar.addfile(info, _RandomReader(info.size))
    os.replace(tmp, dest)
    signing.sign_detached(gpg_home, fingerprint, dest, faked_time=faked_time)
    write_checksum(dest)
    return dest


def write_checksum(tarball: Path) -> str:
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    tarball.with_name(tarball.name + ".sha256").write_text(f"{digest}  {tarball.name}\n")
    return digest


class _RandomReader(io.RawIOBase):
    def __init__(self, size: int):
        self.left = size

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        self.left -= n
        return os.urandom(n)
