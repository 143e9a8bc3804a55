"""Populate the STAND-IN upstream folder: test signing keys, stand-in releases and the
GitHub-shaped release listing. Everything here is for tests and `make demo` only."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tests.standin import release, signing

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
UPSTREAM_HOST = "http://mmdeploy-upstream:8080"  # as the test servers reach it on the network
KEY_UID = "Stand-in Release Signing (tests only) <standin@example.invalid>"
OTHER_UID = "Someone Else (tests only) <other@example.invalid>"
EXPIRED_UID = "Expired Signing Key (tests only) <expired@example.invalid>"


# What the stand-in upstream offers. The GitHub-shaped listing mixes server releases with
# a release candidate, a draft and a Go-module tag, and the ESR patch 11.7.6 is published
# after the newer feature release 11.8.0 - as on github.com/mattermost/mattermost.
OLDER_ESR = "11.7.5"
ESR_VERSION = "11.7.6"  # what the default policy ("esr", lines up to 11.7) installs
FEATURE = "11.8.0"  # newer feature line: what "latest" installs
BROKEN = "11.8.1"  # runs its migration, then fails to start; downloadable, not listed
LISTING = [  # (tag, draft, prerelease, day published)
    (f"v{OLDER_ESR}", False, False, 1),
    (f"v{FEATURE}", False, False, 10),
    (f"v{ESR_VERSION}", False, False, 12),
    ("v11.9.0-rc1", False, True, 14),
    ("v11.9.0", True, False, 15),
    ("server/public/v0.4.3", False, False, 16),
]


def default_version() -> str:
    return ESR_VERSION


def _sources_digest() -> str:
    h = hashlib.sha256()
    for name in ("mattermost_bin.py", "mmctl_bin.py", "default_config.json", "release.py"):
        h.update((HERE / name).read_bytes())
    return h.hexdigest()


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


def ensure_release(root: Path, version: str, *, behaviour: str = "ok", key: str = "main",
                   pad_mb: int = 0) -> Path:
    """Build one stand-in release unless an identical build is already there."""
    home, fpr = keys(root)[key]
    stamp = release.release_path(root, version).with_name("build.json")
    wanted = {"sources": _sources_digest(), "behaviour": behaviour, "key": key, "pad_mb": pad_mb}
    if stamp.exists() and json.loads(stamp.read_text()) == wanted:
        return release.release_path(root, version)
    path = release.build(root, version, home, fpr, behaviour=behaviour, pad_mb=pad_mb,
                         faked_time=EXPIRED_SIGN_TIME if key == "expired" else None)
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


def github_release(tag: str, *, draft: bool = False, prerelease: bool = False, day: int = 1) -> dict:
    """One entry shaped like GitHub's `GET /repos/{owner}/{repo}/releases`."""
    return {
        "url": f"https://api.github.com/repos/mattermost/mattermost/releases/{day}",
        "html_url": f"https://github.com/mattermost/mattermost/releases/tag/{tag}",
        "id": 100000 + day, "tag_name": tag, "target_commitish": "master",
        "name": tag, "draft": draft, "prerelease": prerelease,
        "created_at": f"2026-{1 + day // 28:02d}-{1 + day % 28:02d}T10:00:00Z",
        "published_at": f"2026-{1 + day // 28:02d}-{1 + day % 28:02d}T12:00:00Z",
        "assets": [], "body": f"Mattermost {tag}",
    }


def ensure_default_releases(root: Path) -> dict:
    """What `make demo` and the tests need: the listed releases and the broken one."""
    root.mkdir(parents=True, exist_ok=True)
    main_fpr = keys(root)["main"][1]
    for version in (OLDER_ESR, ESR_VERSION, FEATURE):
        ensure_release(root, version)
    ensure_release(root, BROKEN, behaviour="broken")
    publish_github_releases(root, [github_release(tag, draft=d, prerelease=p, day=day)
                                   for tag, d, p, day in sorted(LISTING, key=lambda r: -r[3])])
    return {
        "data": {
            "mattermost_release_url": UPSTREAM_HOST + "/releases/{version}/mattermost-{version}-linux-{arch}.tar.gz",
            "mattermost_release_checksum_url": "{url}.sha256",
            "mattermost_signing_key_url": UPSTREAM_HOST + "/pubkey.gpg",
            "mattermost_signing_key_fingerprint": main_fpr,
        },
    }
