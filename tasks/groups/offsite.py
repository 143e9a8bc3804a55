"""settings.offsite: the restic repository that keeps a copy of every backup off the server
(an SFTP storage box, S3, a REST server); its password from the workstation's RESTIC_PASSWORD."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from tasks.groups.secret import Secret

PASSWORD_ENV = "RESTIC_PASSWORD"
# Credentials a restic repository may need, passed to the server's restic.env (root only).
ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "RESTIC_REST_USERNAME",
       "RESTIC_REST_PASSWORD")
KEEP = ("last", "hourly", "daily", "weekly", "monthly", "yearly")


@dataclass(frozen=True)
class Offsite:
    repository: str | None = None
    keep: dict = field(default_factory=dict)
    ssh_key: str | None = field(default=None, repr=False)  # the key's content: a secret
    known_hosts: str | None = None
    password: Secret | None = field(default=None, repr=False)
    env: dict = field(default_factory=dict, repr=False)


def build(get, env: dict) -> tuple[Offsite, list[str]]:
    repository = get("backup_offsite_repository") or None
    keep = dict(get("backup_offsite_keep") or {})
    if not repository:
        return Offsite(keep=keep), []
    problems, ssh_key = [], None
    if not re.match(r"^(sftp|s3|rest|b2|azure|gs|swift|rclone):", str(repository)) and not str(repository).startswith("/"):
        problems.append(f"backup_offsite_repository {repository!r} is not a restic repository (sftp:user@host:/path, "
                        "s3:https://..., rest:https://...)")
    password = env.get(PASSWORD_ENV) or None
    if not password:
        problems.append(f"backup_offsite_repository is set but {PASSWORD_ENV} is empty on this workstation: "
                        "export it or put it in secrets.env (and keep a copy outside the server)")
    elif len(password) < 16:
        problems.append(f"{PASSWORD_ENV} is shorter than 16 characters: choose a longer one")
    if not all(k in KEEP and isinstance(v, int) and v >= 0 for k, v in keep.items()) or not any(keep.values()):
        problems.append("backup_offsite_keep must map last/daily/weekly/monthly/yearly to numbers, at least one > 0")
    known_hosts = get("backup_offsite_known_hosts")
    if str(repository).startswith("sftp:"):
        key_path = get("backup_offsite_ssh_key")
        if not key_path or not Path(str(key_path)).expanduser().is_file():
            problems.append(f"an SFTP repository needs backup_offsite_ssh_key: the path of a private key file on "
                            f"this workstation (not found: {key_path!r})")
        else:
            ssh_key = Path(str(key_path)).expanduser().read_text()
        if not known_hosts:
            problems.append("an SFTP repository needs backup_offsite_known_hosts: the host's key line, pinned "
                            "(e.g. from `ssh-keyscan -t ed25519 HOST` checked against your provider)")
    return Offsite(repository=repository, keep=keep, ssh_key=ssh_key,
                   known_hosts=(str(known_hosts).strip() + "\n") if known_hosts else None,
                   password=Secret(password) if password else None,
                   env={k: env[k] for k in ENV if env.get(k)}), problems
