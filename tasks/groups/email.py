"""settings.email: the SMTP relay Mattermost sends through (smtp_* settings); its password
comes from the workstation's MATTERMOST_SMTP_PASSWORD and lands in a root-only file."""

from __future__ import annotations

from dataclasses import dataclass, field

from tasks.groups import checks
from tasks.groups.secret import Secret

PASSWORD_ENV = "MATTERMOST_SMTP_PASSWORD"
OWNED = ("SMTPServer", "SMTPPort", "ConnectionSecurity", "EnableSMTPAuth", "SMTPUsername", "SMTPPassword",
         "FeedbackEmail", "FeedbackName", "SkipServerCertificateVerification")


@dataclass(frozen=True)
class Email:
    server: str | None = None
    port: int = 587
    security: str = "STARTTLS"
    user: str | None = None
    password: Secret | None = field(default=None, repr=False)
    sender: str | None = None
    sender_name: str = "Mattermost"
    skip_certificate_check: bool = False


def build(get, env: dict, config: dict) -> tuple[Email, list[str]]:
    server, port, security = get("smtp_server") or None, get("smtp_port"), get("smtp_security") or ""
    user, sender = get("smtp_user") or None, get("smtp_sender") or None
    password = env.get(PASSWORD_ENV) or None
    problems = []
    if server:
        problems += checks.found(
            checks.host_name("smtp_server", server), checks.port("smtp_port", port),
            None if security in ("STARTTLS", "TLS", "") else
            f"smtp_security must be \"STARTTLS\", \"TLS\" or \"\" (none), not {security!r}",
            None if sender and "@" in str(sender) else
            "smtp_sender must be the From: address of Mattermost's mails, e.g. chat@example.org",
            f"smtp_user is set but {PASSWORD_ENV} is empty on this workstation: export it or put it in secrets.env "
            "(git-ignored), then re-run" if user and not password else None,
            "smtp_user without TLS would send the SMTP password in clear: set smtp_security"
            if user and security == "" else None)
        clash = sorted(k for k in config if k.startswith("EmailSettings.") and k.split(".")[1] in OWNED)
        if clash:
            problems.append(f"mattermost_config sets {', '.join(clash)} while smtp_server is set: use the smtp_* "
                            "settings only")
    if any(k.endswith("SMTPPassword") for k in config):
        problems.append(f"no SMTP password in mattermost_config: set smtp_user and {PASSWORD_ENV}")
    return Email(server=server, port=port, security=security, user=user,
                 password=Secret(password) if server and user and password else None, sender=sender,
                 sender_name=str(get("smtp_sender_name")), skip_certificate_check=bool(get("smtp_skip_certificate_check"))
                 ), problems
