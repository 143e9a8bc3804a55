"""settings.release: which Mattermost version (the policy, decided against GitHub's release
list), where releases come from and how each is verified before it is unpacked."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tasks.groups import checks
from tasks.versions import is_valid_policy

VERSION_RE = re.compile(r"^\d+\.\d+\.\d+$")


@dataclass(frozen=True)
class Release:
    policy: str = "esr"
    fallback: str | None = None
    esr_lines: list = field(default_factory=list)
    allow_esr_skip: bool = False
    allow_below_7_1: bool = False
    github_api_url: str = "https://api.github.com"
    github_repository: str = "mattermost/mattermost"
    keep: int = 3
    arch: str = "amd64"
    url: str = ""
    signature_url: str = "{url}.sig"
    checksum_url: str = ""
    sha256: dict = field(default_factory=dict)
    signing_key_url: str = ""
    signing_key_fingerprint: str = ""
    accept: list = field(default_factory=list)  # findings of the checks before a hop, accepted by their id

    def url_for(self, version: str) -> str:
        return self.url.format(version=version, arch=self.arch)


def build(get) -> tuple[Release, list[str]]:
    problems = []
    policy = str(get("mattermost_version") or "")
    if not is_valid_policy(policy):
        problems.append(f"mattermost_version must be esr, latest, a line like 11.7 or a release like 11.7.6, "
                        f"not {policy!r}")
    fallback = get("mattermost_version_fallback") or None
    if fallback is not None and not VERSION_RE.match(str(fallback)):
        problems.append(f"mattermost_version_fallback must be a release like 11.7.6, not {fallback!r}")
    esr_lines = [str(x) for x in (get("mattermost_esr_lines") or [])]
    if not all(re.fullmatch(r"\d+\.\d+", x) for x in esr_lines):
        problems.append(f"mattermost_esr_lines must list lines like \"11.7\", not {esr_lines!r}")
    problems += checks.found(checks.number("mattermost_keep_releases", get("mattermost_keep_releases"), 1,
                                           what="a whole number"))
    arch = get("mattermost_arch")
    if arch not in ("amd64", "arm64"):
        problems.append(f"mattermost_arch must be amd64 or arm64, not {arch!r}")
    url = get("mattermost_release_url") or ""
    if "{version}" not in url:
        problems.append("mattermost_release_url must contain {version}")
    fingerprint = (get("mattermost_signing_key_fingerprint") or "").replace(" ", "").upper()
    if not re.fullmatch(r"[0-9A-F]{40}", fingerprint):
        problems.append("mattermost_signing_key_fingerprint must be a 40-digit key fingerprint")
    sha256 = dict(get("mattermost_release_sha256") or {})
    for version, digest in sha256.items():
        if not re.fullmatch(r"[0-9a-fA-F]{64}", str(digest)):
            problems.append(f"mattermost_release_sha256[{version!r}] is not a SHA-256 (64 hex digits)")
    accept = get("mattermost_upgrade_accept") or []
    if not isinstance(accept, list) or not all(isinstance(a, str) and re.fullmatch(r"[a-z0-9.-]+", a) for a in accept):
        problems.append(f"mattermost_upgrade_accept must list the ids of findings (as make upgrade-plan names them, "
                        f"e.g. [\"user-limit\"]), not {accept!r}")
    return Release(
        policy=policy, fallback=fallback, esr_lines=esr_lines, allow_esr_skip=bool(get("mattermost_allow_esr_skip")),
        allow_below_7_1=bool(get("mattermost_allow_below_7_1")), github_api_url=get("github_api_url"),
        github_repository=get("github_repository"), keep=get("mattermost_keep_releases"), arch=arch, url=url,
        signature_url=get("mattermost_release_signature_url") or "{url}.sig",
        checksum_url=get("mattermost_release_checksum_url") or "", sha256=sha256,
        signing_key_url=get("mattermost_signing_key_url"), signing_key_fingerprint=fingerprint,
        accept=list(accept) if isinstance(accept, list) else []), problems
