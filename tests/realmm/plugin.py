"""A REAL Mattermost server plugin for the tests: the test's stand-in for a plugin the new
Mattermost version will not run.

An upgrade from 10.x to 11.x can leave a plugin people rely on installed but no longer
running (Mattermost 11 dropped support for some plugins and for manually installed ones on
Team Edition), while the server itself answers its ping. To see what the deploy does about
that, the tests need a plugin that behaves that way on the real servers tests/realmm/build.py
makes: `com.mmdeploy.legacy-helper` (tests/realmm/plugin/), built from Mattermost's own plugin
API module github.com/mattermost/mattermost/server/public at v0.1.22 (what the 11.4.0 build
uses). On Mattermost 10.x it activates, logs "legacy-helper activated" and answers
GET /plugins/com.mmdeploy.legacy-helper/status with "ok"; on 11 and later its OnActivate
returns "legacy-helper stands in for a plugin Mattermost 11 no longer runs: refusing to
activate on <version>".

The bundle is what `mmctl plugin add` (and POST /api/v4/plugins) accepts: a .tar.gz of
`com.mmdeploy.legacy-helper/plugin.json` and `.../server/dist/plugin-linux-amd64` (a static
binary: CGO_ENABLED=0, GOOS=linux, GOARCH=amd64, so it runs wherever the server does). Like
the server builds, plugin/go.mod and go.sum are the pins (GOFLAGS=-mod=readonly, the go.sum
is checked; GONOSUMDB only skips the checksum database for Mattermost's pseudo-versions).

Built once into .cache/realmm/plugin/<first 12 hex of the sha256 of the sources and this
file>/com.mmdeploy.legacy-helper-<version>.tar.gz (a few seconds with a warm module cache;
progress and time on stderr).

    python -m tests.realmm.plugin        # build (if needed) and print the bundle's path
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SOURCE = HERE / "plugin"
CACHE = ROOT / ".cache" / "realmm" / "plugin"
PLUGIN_ID = "com.mmdeploy.legacy-helper"
EXECUTABLE = "server/dist/plugin-linux-amd64"
FALLBACK_GO = Path("/usr/local/go/bin")


class BuildError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"[realmm plugin] {msg}", file=sys.stderr, flush=True)


def manifest() -> dict:
    """plugin/plugin.json, the manifest the bundle carries."""
    data = json.loads((SOURCE / "plugin.json").read_text())
    if data.get("id") != PLUGIN_ID:
        raise BuildError(f"{SOURCE / 'plugin.json'} has id {data.get('id')!r}, expected {PLUGIN_ID!r}")
    return data


def digest() -> str:
    """12 hex of the sha256 of every file under plugin/ (name and content) and this file."""
    h = hashlib.sha256()
    for path in sorted(p for p in SOURCE.rglob("*") if p.is_file()):
        h.update(path.relative_to(SOURCE).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    h.update(Path(__file__).read_bytes())
    return h.hexdigest()[:12]


def bundle_path() -> Path:
    return CACHE / digest() / f"{PLUGIN_ID}-{manifest()['version']}.tar.gz"


def _go_env() -> dict:
    env = dict(os.environ)
    if not shutil.which("go", path=env.get("PATH")) and (FALLBACK_GO / "go").exists():
        env["PATH"] = f"{env.get('PATH', '')}{os.pathsep}{FALLBACK_GO}".lstrip(os.pathsep)
    if not shutil.which("go", path=env.get("PATH")):
        raise BuildError(f"the go command is missing (not on PATH nor in {FALLBACK_GO}): install Go "
                         "(https://go.dev/dl or Debian's golang) to build the tests' Mattermost plugin")
    env.update(
        GONOSUMDB="github.com/mattermost",  # the checksum DB has no entry for server/v8's pseudo-versions
        GOFLAGS="-mod=readonly",  # go.mod and go.sum are the pins: never rewritten by a build
        GOTOOLCHAIN="local",
        CGO_ENABLED="0",  # a static binary: the server runs it as a separate process
        GOOS="linux",
        GOARCH="amd64",
    )
    return env


def _is_static(path: Path) -> bool:
    """True when the ELF file has no PT_INTERP program header (no dynamic loader)."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2:  # 64-bit ELF
        return False
    phoff = int.from_bytes(data[0x20:0x28], "little")
    size, count = int.from_bytes(data[0x36:0x38], "little"), int.from_bytes(data[0x38:0x3A], "little")
    return all(int.from_bytes(data[phoff + i * size:phoff + i * size + 4], "little") != 3 for i in range(count))


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 0
    info.uname = info.gname = "root"
    tar.addfile(info, io.BytesIO(data))


def build() -> Path:
    """The plugin bundle (.tar.gz), built when missing or when the sources changed."""
    dest = bundle_path()
    if dest.exists():
        return dest
    env = _go_env()
    started = time.time()
    work = dest.parent.with_name(dest.parent.name + ".tmp")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    binary = work / "plugin-linux-amd64"
    log(f"building {PLUGIN_ID} {manifest()['version']} against server/public v0.1.22 (static linux-amd64) ...")
    proc = subprocess.run(["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", str(binary), "."],
                          cwd=SOURCE, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        shutil.rmtree(work, ignore_errors=True)
        raise BuildError(f"go build of the plugin in {SOURCE} failed:\n{proc.stderr[-4000:]}")
    if not _is_static(binary):
        raise BuildError(f"{binary} is not a static linux-amd64 binary")
    bundle = work / dest.name
    with open(bundle, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for folder in (PLUGIN_ID, f"{PLUGIN_ID}/server", f"{PLUGIN_ID}/server/dist"):
            info = tarfile.TarInfo(folder)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            tar.addfile(info)
        _add(tar, f"{PLUGIN_ID}/plugin.json", (SOURCE / "plugin.json").read_bytes(), 0o644)
        _add(tar, f"{PLUGIN_ID}/{EXECUTABLE}", binary.read_bytes(), 0o755)
    binary.unlink()
    shutil.rmtree(dest.parent, ignore_errors=True)
    work.rename(dest.parent)
    log(f"plugin built in {time.time() - started:.0f} s -> {dest}")
    return dest


def main(argv: list[str]) -> int:
    try:
        print(build())
    except BuildError as e:
        print(f"BUILD FAILED: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
