"""Root-only secret files the deploy places on the server from the workstation's
environment or secrets.env: the off-server backup credentials and the SMTP password.
Each is compared by a salted slow digest the state query reports (the content is never
read back) and uploaded only when it differs - never printed, never in an operation name."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import operation

from mmhelper.parts.config import password_digest
from tasks import files
from tasks.common import current, settings, upload_secret


def offsite_secrets(s) -> dict[str, str]:
    """Root-only files the off-server copies need: path -> content (secret)."""
    if not s.offsite.repository:
        return {}
    files = {s.offsite_password_file: str(s.offsite.password) + "\n"}
    if s.offsite.ssh_key:
        files[s.offsite_key_file] = s.offsite.ssh_key if s.offsite.ssh_key.endswith("\n") else s.offsite.ssh_key + "\n"
    if s.offsite.env:
        files[s.offsite_env_file] = "".join(f"{k}={v}\n" for k, v in sorted(s.offsite.env.items()))
    return files


def smtp_secrets(s) -> dict[str, str]:
    """The SMTP password, merged into config.json on the server (EmailSettings.SMTPPassword)."""
    return {s.smtp_password_file: str(s.email.password) + "\n"} if s.email.server and s.email.password else {}


def files_secrets(s) -> dict[str, str]:
    """The object store's keys: Mattermost's (merged into config.json) and the backups' read-only one."""
    return files.secrets(s.files, s.private_dir)


def all_secrets(s) -> dict[str, str]:
    return {**offsite_secrets(s), **smtp_secrets(s), **files_secrets(s)}


def secret_paths(s) -> list[str]:
    return sorted(all_secrets(s))


@operation()
def secret_in_place(path: str, what: str):
    """A secret file (root, 0600), uploaded only when the server's differs from this
    workstation's (compared by a salted slow digest, the content never read back)."""
    s, now = settings(), current()
    content = all_secrets(s)[path]
    digest = (now.get("secrets") or {}).get(path)
    if digest and digest == password_digest(content, now["password"]["salt"]):
        host.noop(f"{what} is in place")
        return
    yield from upload_secret(content, path, s.private_dir)
