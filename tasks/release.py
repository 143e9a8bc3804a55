"""The Mattermost release: downloaded ON the server, checksum and signature verified
against the pinned key before anything is unpacked, unpacked into its own read-only
folder under mattermost_releases_dir."""

from __future__ import annotations

from packaging.version import Version
from pyinfra import host
from pyinfra.api import operation
from pyinfra.api.exceptions import DeployError

from tasks.common import current, helper, settings, streamed
from tasks.settings import Settings


def state_links(s: Settings) -> dict[str, str]:
    """Inside each release, the familiar folders point at their places outside it."""
    return {
        "config": f"{s.state_dir}/config",
        "data": f"{s.state_dir}/data",
        "plugins": f"{s.state_dir}/plugins",
        "client/plugins": f"{s.state_dir}/client-plugins",
        "logs": s.log_dir,
    }


def fetch_spec(s: Settings, version: str) -> dict:
    url = s.url_for(version)
    return {
        "version": version,
        "url": url,
        "sig_url": s.signature_url.format(url=url),
        "checksum_url": s.checksum_url.format(url=url) if s.checksum_url else None,
        "sha256": s.release_sha256.get(version),
        "key_url": s.signing_key_url,
        "key_cache": "/etc/mattermost/release-signing-key.asc",
        "fingerprint": s.signing_key_fingerprint,
        "releases_dir": s.releases_dir,
        "user": s.user,
        "links": state_links(s),
    }


def check_no_downgrade(installed: str | None, target: str, where: str) -> None:
    """The deploy never downgrades on its own (database migrations are one-way)."""
    if installed and Version(installed) > Version(target):
        raise DeployError(
            f"{where} runs Mattermost {installed}, newer than mattermost_version {target}: "
            f"the deploy never downgrades - set mattermost_version to {installed} or newer "
            "(nothing was changed on the server)")


@operation()
def release_unpacked(version: str):
    """Download, verify and unpack release `version` unless its folder exists."""
    s, now = settings(), current()
    if version in now["releases"]:
        host.noop(f"release {version} is already verified and unpacked")
        return
    yield streamed(helper("fetch-release", fetch_spec(s, version)))


def configure():
    s, now = settings(), current()
    check_no_downgrade(now["install"].get("version"), s.version, s.host)
    release_unpacked(name=f"Download, verify and unpack Mattermost {s.version}", version=s.version)
