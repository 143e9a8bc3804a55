"""Populate the STAND-IN upstream folder (it plays releases.mattermost.com, the signing key
URL and GitHub's releases API): test signing keys, the release tarballs and the
GitHub-shaped release listing. Everything here is for tests and `make demo` only.

The releases it serves are REAL Mattermost built from its Go module (tests/realmm), packaged
in the real tarball layout and signed with the test key. Only the bad-input cases (a
tampered download, a release signed by another key or by an expired key) are tiny stand-in
tarballs: the deploy refuses them before anything is unpacked, so no program in them runs."""

from __future__ import annotations

import hashlib
import json
from datetime import date
from pathlib import Path

from tests.realmm import build as realmm
from tests.realmm import release as real_release
from tests.standin import release, signing

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
UPSTREAM_HOST = "http://mmdeploy-upstream:8080"  # as the test servers reach it on the network
KEY_UID = "Stand-in Release Signing (tests only) <standin@example.invalid>"
OTHER_UID = "Someone Else (tests only) <other@example.invalid>"
EXPIRED_UID = "Expired Signing Key (tests only) <expired@example.invalid>"

# The real builds (tests/realmm/modules): the oldest and the newest of Mattermost 8+, with real
# schema migrations between them. In the tests their lines play the ESR lines (ESR_LINES), so
# the default policy "esr" installs ESR_VERSION and upgrades OLDER_ESR to it. The Mattermost 5
# and 6 builds (OLD_RELEASES) are the releases of the servers installed years ago; their
# lines play ESR lines too, so an old server's upgrade chain passes through each of them.
OLDER_ESR, ESR_VERSION = realmm.modern_versions()[0], realmm.modern_versions()[-1]
OLD_RELEASES = realmm.old_versions()
ESR_LINES = sorted({v.rsplit(".", 1)[0] for v in realmm.versions()}, key=lambda x: tuple(map(int, x.split("."))))
_major, _minor, _ = (int(x) for x in ESR_VERSION.split("."))
FEATURE = f"{_major}.{_minor + 1}.0"  # a newer feature release, LISTED only: what "latest" would pick
BROKEN = f"{_major}.{_minor}.1"  # the real ESR_VERSION binary runs its migrations, then fails to start
NO_DOWNGRADE = f"{_major}.{_minor}.2"  # as BROKEN, and its `db downgrade` fails too
# The GitHub-shaped listing mixes server releases with a release candidate, a draft and a
# Go-module tag, and the ESR release is published after the newer feature release - as on
# github.com/mattermost/mattermost. BROKEN and NO_DOWNGRADE are downloadable but not listed.
LISTING = [  # (tag, draft, prerelease, day published)
    *((f"v{old}", False, False, -400 + 30 * i) for i, old in enumerate(OLD_RELEASES)),  # years before
    (f"v{OLDER_ESR}", False, False, 1),
    (f"v{FEATURE}", False, False, 10),
    (f"v{ESR_VERSION}", False, False, 12),
    (f"v{_major}.{_minor + 2}.0-rc1", False, True, 14),
    (f"v{_major}.{_minor + 2}.0", True, False, 15),
    ("server/public/v0.4.3", False, False, 16),
]
# Versions of the bad-input cases (never unpacked).
TAMPERED, OTHER_KEY, EXPIRED_KEY, MIRROR_DOWN = (f"{_major}.{_minor}.{n}" for n in (90, 91, 92, 93))


def default_version() -> str:
    return ESR_VERSION


# A key made in 2020 that expired in 2021, signing as of mid-2020: what automation met
# when Mattermost's real key expired in 2022 and 2024.
EXPIRED_KEY_TIME = "20200101T000000"
EXPIRED_SIGN_TIME = "20200601T000000"


def keys(root: Path) -> dict[str, tuple[Path, str]]:
    """The stand-in's keys: `main` plays Mattermost's key; `other` signs bad releases;
    `expired` is a pinned key past its expiry."""
    gnupg = root.parent / "gnupg"
    result = {
        "main": (gnupg / "main", signing.ensure_key(gnupg / "main", KEY_UID)),
        "other": (gnupg / "other", signing.ensure_key(gnupg / "other", OTHER_UID)),
        "expired": (gnupg / "expired", signing.ensure_key(
            gnupg / "expired", EXPIRED_UID, faked_time=EXPIRED_KEY_TIME, expire="1y")),
    }
    for name, (home, fpr) in result.items():
        dest = root / ("pubkey.gpg" if name == "main" else f"{name}-pubkey.gpg")
        if not dest.exists():
            root.mkdir(parents=True, exist_ok=True)
            signing.export_public(home, fpr, dest)
    return result


def ensure_release(root: Path, version: str, *, behaviour: str = "ok") -> Path:
    """A release around the REAL Mattermost build (behaviour "broken": the real binary of
    ESR_VERSION behind a stand-in wrapper that fails after the migrations)."""
    base = ESR_VERSION if behaviour.startswith("broken") else version
    return real_release.ensure_release(root, version, keys(root)["main"], base=base, behaviour=behaviour)


def ensure_refused_release(root: Path, version: str, *, key: str = "main") -> Path:
    """A tiny STAND-IN tarball for the bad-input tests: refused before it is unpacked
    (checksum or signature), so its program never runs - no real build is needed."""
    home, fpr = keys(root)[key]
    stamp = release.release_path(root, version).with_name("build.json")
    wanted = {"sources": hashlib.sha256((HERE / "release.py").read_bytes()).hexdigest(), "key": key}
    if stamp.exists() and json.loads(stamp.read_text()) == wanted:
        return release.release_path(root, version)
    path = release.build(root, version, home, fpr, faked_time=EXPIRED_SIGN_TIME if key == "expired" else None)
    stamp.write_text(json.dumps(wanted))
    return path


def tamper(root: Path, version: str) -> None:
    """Change a tarball after it was signed and its checksum published (a bad mirror)."""
    path = release.release_path(root, version)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    stamp = path.with_name("build.json")
    meta = json.loads(stamp.read_text())
    meta["tampered"] = True
    stamp.write_text(json.dumps(meta))


def publish_github_releases(root: Path, releases: list[dict]) -> None:
    (root / "github").mkdir(parents=True, exist_ok=True)
    (root / "github" / "releases.json").write_text(json.dumps(releases, indent=1))


EPOCH = date(2026, 1, 1).toordinal()  # day 0 of the listing's publication days


def github_release(tag: str, *, draft: bool = False, prerelease: bool = False, day: int = 1) -> dict:
    """One entry shaped like GitHub's `GET /repos/{owner}/{repo}/releases`."""
    return {
        "url": f"https://api.github.com/repos/mattermost/mattermost/releases/{day}",
        "html_url": f"https://github.com/mattermost/mattermost/releases/tag/{tag}",
        "id": 100000 + day, "tag_name": tag, "target_commitish": "master",
        "name": tag, "draft": draft, "prerelease": prerelease,
        "created_at": f"{date.fromordinal(EPOCH + day).isoformat()}T10:00:00Z",
        "published_at": f"{date.fromordinal(EPOCH + day).isoformat()}T12:00:00Z",
        "assets": [], "body": f"Mattermost {tag}",
    }


def ensure_default_releases(root: Path, only_default: bool = False) -> dict:
    """What the tests need: the listed releases and the broken one (only_default: just the
    release the default policy installs, which is all `make demo` needs)."""
    root.mkdir(parents=True, exist_ok=True)
    main_fpr = keys(root)["main"][1]
    ensure_release(root, ESR_VERSION)
    if not only_default:
        ensure_release(root, OLDER_ESR)
        for old in OLD_RELEASES:
            ensure_release(root, old)
        ensure_release(root, BROKEN, behaviour="broken")
        ensure_release(root, NO_DOWNGRADE, behaviour="broken-no-downgrade")
    publish_github_releases(root, [github_release(tag, draft=d, prerelease=p, day=day)
                                   for tag, d, p, day in sorted(LISTING, key=lambda r: -r[3])])
    return {
        "data": {
            "mattermost_release_url": UPSTREAM_HOST + "/releases/{version}/mattermost-{version}-linux-{arch}.tar.gz",
            "mattermost_release_checksum_url": "{url}.sha256",
            "mattermost_signing_key_url": UPSTREAM_HOST + "/pubkey.gpg",
            "mattermost_signing_key_fingerprint": main_fpr,
            "mattermost_esr_lines": ESR_LINES,
        },
    }
