"""The Mattermost release: which version (the policy, decided on the workstation against
GitHub's release list), then downloaded ON the server, checksum and signature verified
against the pinned key before anything is unpacked, unpacked into its own read-only
folder under mattermost_releases_dir."""

from __future__ import annotations

from pyinfra import host, logger
from pyinfra.api import operation
from pyinfra.api.exceptions import DeployError

from facts.github import ReleaseLookupError, fetch_releases
from tasks.common import current, helper, on_mysql, settings, streamed
from tasks.dbplace import move_pending
from tasks.settings import Settings
from tasks.upgrade_checks import checked, hop_findings
from tasks.versions import PINNED, Decision, decide, server_versions

# One lookup per run, shared by every host (the API has a rate limit).
_lookups: dict[tuple[str, str], tuple[list[str] | None, str | None]] = {}


def available_releases(s: Settings) -> tuple[list[str] | None, str | None]:
    """What the version policy needs: nothing for a pinned version, else the lookup."""
    return (None, None) if PINNED.match(s.release.policy) else lookup_releases(s)


def lookup_releases(s: Settings) -> tuple[list[str] | None, str | None]:
    """(server versions GitHub lists, None) or (None, why the lookup failed); once per run."""
    key = (s.release.github_api_url, s.release.github_repository)
    if key not in _lookups:
        try:
            _lookups[key] = (server_versions(fetch_releases(s.release.github_api_url, s.release.github_repository)), None)
        except ReleaseLookupError as e:
            _lookups[key] = (None, str(e))
    return _lookups[key]


def installed_version(now: dict) -> str | None:
    """The version of the release folder in use (or of the hand install to adopt)."""
    return now["install"].get("version") if now["install"]["kind"] in ("link", "dir") else None


def decision() -> Decision:
    """This host's version decision, once per run."""
    cached = getattr(host, "_mm_decision", None)
    if cached is not None:
        return cached
    s, now = settings(), current()
    if now["install"]["kind"] == "dir" and not now["install"].get("version"):
        raise DeployError(f"{s.host}: the hand install in {s.install_dir} does not tell its version "
                          "(bin/mattermost version failed); fix it before adopting")
    available, error = available_releases(s)

    def decided():
        return decide(s.release.policy, installed_version(now), available, s.release.esr_lines, lookup_error=error,
                      fallback=s.release.fallback, allow_esr_skip=s.release.allow_esr_skip,
                      allow_below_7_1=s.release.allow_below_7_1, hold=now.get("hold"))

    d = decided()
    if d.blocked and available is None and error is None and "the release list has no" in d.blocked:
        # A pinned version far ahead: its chain's stops come from the release list after all.
        available, error = lookup_releases(s)
        d = decided()
    # Each hop checked before any outage, against the server as it is (tasks/upgrade_checks.py).
    facts = now.get("upgrade_facts")
    for old, new in d.chain:
        for finding in hop_findings(old, new, facts, s.release.accept):
            if not finding.refuses:
                logger.warning(f"    [{s.host}] {old} -> {new}: {finding.line()}")
    host._mm_policy_chain = d.chain  # every hop the policy wants, before the checks (make upgrade-plan)
    d = checked(d, facts, s.release.accept)
    if d.stops_before:
        logger.warning(f"    [{s.host}] the upgrade stops at {d.target}: {d.stops_before}")
    if error:
        logger.warning(f"    [{s.host}] release lookup failed: {error}")
    if d.upgrade and on_mysql(now):
        reason = (f"the database is MySQL/MariaDB, which upgrades here do not run on (Mattermost 11 dropped it; backups "
                  f"and rollbacks of upgrades are PostgreSQL's): `make db-migrate-plan`, then `make db-migrate` moves "
                  f"it to PostgreSQL at {installed_version(now)}; the upgrade {' -> '.join([installed_version(now), *d.hops])} "
                  "follows")
        d = Decision(installed_version(now), d.candidate, d.latest, f"blocked: {reason}", reason)
    if d.upgrade and move_pending(s, now):
        reason = (f"the settings put the database at {s.place.host} but Mattermost still uses this server's: "
                  "`make move-database-plan`, then `make move-database`; the upgrade follows on the new database")
        d = Decision(installed_version(now), d.candidate, d.latest, f"blocked: {reason}", reason)
    if d.target is None:
        raise DeployError(f"{s.host}: no Mattermost version to install: {d.blocked} (nothing was changed)")
    if d.blocked:
        if host.data.get("mattermost_upgrade_required"):
            raise DeployError(f"{s.host}: upgrade refused: {d.blocked} (nothing was changed)")
        logger.warning(f"    [{s.host}] no upgrade: {d.blocked}")
    host._mm_decision = d
    return d


def policy_chain() -> list[tuple[str, str]]:
    """Every hop the version policy wants, the ones the checks refuse included."""
    decision()
    return getattr(host, "_mm_policy_chain", [])


def state_links(s: Settings) -> dict[str, str]:
    """Inside each release, the familiar folders point at their places outside it."""
    return {
        "config": f"{s.state_dir}/config",
        "data": s.data_dir,
        "plugins": f"{s.state_dir}/plugins",
        "client/plugins": f"{s.state_dir}/client-plugins",
        "logs": s.log_dir,
    }


def fetch_spec(s: Settings, version: str) -> dict:
    url = s.release.url_for(version)
    return {
        "version": version,
        "url": url,
        "sig_url": s.release.signature_url.format(url=url),
        "checksum_url": s.release.checksum_url.format(url=url) if s.release.checksum_url else None,
        "sha256": s.release.sha256.get(version),
        "key_url": s.release.signing_key_url,
        "key_cache": "/etc/mattermost/release-signing-key.asc",
        "fingerprint": s.release.signing_key_fingerprint,
        "releases_dir": s.releases_dir,
        "user": s.user,
        "links": state_links(s),
    }


def versions_to_fetch(now: dict, d: Decision) -> list[str]:
    """The hand install's own version when adopting (adoption never changes the version; an
    upgrade after it does, with its backup and rollback), every stop of an upgrade chain,
    and the target: all verified before the first hop starts."""
    wanted = []
    if now["install"]["kind"] == "dir":
        wanted.append(now["install"]["version"])
    for version in [*d.hops, d.target]:
        if version not in wanted:
            wanted.append(version)
    return wanted


@operation()
def release_unpacked(version: str):
    """Download, verify and unpack release `version` unless its folder exists."""
    s, now = settings(), current()
    if version in now["releases"]:
        host.noop(f"release {version} is already verified and unpacked")
        return
    yield streamed(helper("fetch-release", fetch_spec(s, version)))


def configure():
    d, now = decision(), current()
    for version in versions_to_fetch(now, d):
        release_unpacked(name=f"Download, verify and unpack Mattermost {version}", version=version)
