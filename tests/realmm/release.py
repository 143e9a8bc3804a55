"""Release tarballs around the REAL Mattermost builds (tests and `make demo` without
internet): the layout of releases.mattermost.com's `mattermost-<V>-linux-amd64.tar.gz`
(server/build/release.mk): `mattermost/bin/{mattermost,mmctl}`, `config/config.json`
(0600, as the real binary's config_generator writes it), `config/README.md`, `fonts/`,
`templates/`, `i18n/`, `logs/`, `prepackaged_plugins/`, `client/`.

Only the packaging is ours; the program is Mattermost's. Two things are not real:
- `client/`: the web app is built with npm from the monorepo's webapp/, which is not in
  the Go module. A placeholder in the real root.html's shape (webapp/channels/src/root.html
  as HtmlWebpackPlugin emits it, with the same Content-Security-Policy meta tag, so the
  server rewrites it at start exactly as it rewrites the real one), a manifest.json and
  the initial loading screen's css. The server starts and serves the API; a browser
  gets an empty page.
- `prepackaged_plugins/` is empty (the real one holds plugins downloaded at release time).

Signed with the test key and served by the stand-in upstream, like the real releases.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import time
from pathlib import Path

from tests.realmm import build
from tests.standin import signing
from tests.standin.release import release_path, write_checksum

ROOT_HTML = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">\
<meta http-equiv="Content-Security-Policy" content="script-src 'self' cdn.rudderlabs.com/ js.stripe.com/v3">\
<meta name='viewport' content='width=device-width, initial-scale=1.0'><meta name='robots' content='noindex, nofollow'>\
<meta name='referrer' content='no-referrer'><title>Mattermost</title>\
<link rel="manifest" href="/static/manifest.json">\
<link id="initialLoadingScreenCSS" rel='stylesheet' href='/static/css/initial_loading_screen.css'>\
</head><body class='font--open_sans enable-animations'><div id='root'></div><div id='root-portal'></div>\
<noscript>Mattermost {version} built from source for tests: the web app is not part of this build.</noscript>\
</body></html>
"""
MANIFEST = {"name": "Mattermost", "short_name": "Mattermost", "start_url": "..", "display": "standalone",
            "icons": [{"src": "/static/icon_96x96.png", "sizes": "96x96", "type": "image/png"}]}
LOADING_CSS = "#initialLoadingScreen { background: url('/static/images/logo.png'); }\n"

# A release that runs the real 11.x migrations and then fails to start: a STAND-IN wrapper
# around the real binary (Mattermost publishes no broken release to test a rollback with).
# "broken-no-downgrade": its `db downgrade` fails as well, so the rollback must fall back to
# the pre-upgrade dump.
BROKEN_WRAPPER = """#!/bin/sh
# STAND-IN for tests: a broken release. `version` answers as {version}; started, it runs the
# REAL Mattermost {base} binary's database migrations, then fails as a bad release would.
real="$(dirname "$(readlink -f "$0")")/mattermost.real"
if [ "$1" = version ]; then "$real" version | sed 's/^Version: .*/Version: {version}/'; exit; fi
if [ "$1 $2" = "db downgrade" ] && [ "{behaviour}" = broken-no-downgrade ]; then
  echo "stand-in broken release {version}: its schema downgrade fails too" >&2; exit 1
fi
if [ "$#" -gt 0 ]; then exec "$real" "$@"; fi
"$real" db migrate || exit 1
echo "stand-in broken release {version}: failing after the migrations" >&2
exit 1
"""


def _client_files(version: str) -> dict[str, bytes]:
    return {
        "client/root.html": ROOT_HTML.format(version=version).encode(),
        "client/manifest.json": json.dumps(MANIFEST).encode(),
        "client/css/initial_loading_screen.css": LOADING_CSS.encode(),
    }


def _stamp(version: str, base: str, behaviour: str, key: str) -> dict:
    return {"build": json.loads((build.built_dir(base) / "build.json").read_text()),
            "packaging": hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
            "version": version, "behaviour": behaviour, "key": key}


def ensure_release(upstream_root: Path, version: str, gpg: tuple[Path, str], *, base: str | None = None,
                   behaviour: str = "ok", key_name: str = "main") -> Path:
    """releases/<V>/mattermost-<V>-linux-amd64.tar.gz (+ .sig, .sha256) around the real build
    of `base` (default: `version` itself); rebuilt only when the build or this file changed."""
    base = base or version
    built = build.ensure_built(base)
    dest = release_path(upstream_root, version)
    stamp_file = dest.with_name("build.json")
    wanted = _stamp(version, base, behaviour, key_name)
    if stamp_file.exists() and dest.exists() and json.loads(stamp_file.read_text()) == wanted:
        return dest
    build.log(f"packaging release {version} ({'real ' + base if behaviour == 'ok' else behaviour + ' around ' + base})")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    now = int(time.time())
    with tarfile.open(tmp, "w:gz", compresslevel=6) as tar:
        def add_dir(name):
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, now
            tar.addfile(info)

        def add_bytes(name, data, mode=0o644):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, now
            tar.addfile(info, io.BytesIO(data))

        add_dir("mattermost")
        for path in sorted(built.rglob("*")):
            rel = path.relative_to(built).as_posix()
            if rel == "build.json":
                continue
            name = f"mattermost/{rel}"
            if behaviour.startswith("broken") and rel == "bin/mattermost":
                tar.add(path, arcname="mattermost/bin/mattermost.real", recursive=False)
                add_bytes(name, BROKEN_WRAPPER.format(version=version, base=base, behaviour=behaviour).encode(), 0o755)
                continue
            tar.add(path, arcname=name, recursive=False)
        for folder in ("logs", "prepackaged_plugins", "client", "client/css"):
            add_dir(f"mattermost/{folder}")
        for name, data in _client_files(version).items():
            add_bytes(f"mattermost/{name}", data)
    os.replace(tmp, dest)
    signing.sign_detached(gpg[0], gpg[1], dest)
    write_checksum(dest)
    stamp_file.write_text(json.dumps(wanted))
    return dest
