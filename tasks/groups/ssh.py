"""settings.ssh: an admin account of the operator's with their keys and sudo, and root's SSH
login switched off once that account works."""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class SshAccess:
    admin_user: str | None = None
    admin_keys: list = field(default_factory=list)
    disable_root: bool = False


def build(get) -> tuple[SshAccess, list[str]]:
    admin = get("ssh_admin_user") or None
    keys = [str(k).strip() for k in (get("ssh_admin_keys") or [])]
    problems = []
    if admin and not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", admin):
        problems.append(f"ssh_admin_user {admin!r} is not a valid user name")
    if admin and not keys:
        problems.append("ssh_admin_keys must list at least one public key for ssh_admin_user")
    if not all(re.match(r"^(ssh-|ecdsa-|sk-)\S+ \S+", k) for k in keys):
        problems.append("ssh_admin_keys must hold public keys like 'ssh-ed25519 AAAA... you@laptop'")
    if get("ssh_disable_root") and not admin:
        problems.append("ssh_disable_root needs ssh_admin_user (or nobody could log in)")
    return SshAccess(admin_user=admin, admin_keys=keys, disable_root=bool(get("ssh_disable_root"))), problems
