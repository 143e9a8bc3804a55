"""E-mail as the deploy's own setting: the SMTP relay Mattermost sends password, invitation
and notification mails through. The deploy owns the EmailSettings keys below once
`smtp_server` is set; the password stays a secret (MATTERMOST_SMTP_PASSWORD -> a root-only
file -> config.json on the server). The relay is checked before the keys are enabled: the
state query tries the connection and TLS (a refusal stops the run before any change), the
merge tries the login and leaves config.json unchanged when it fails.
Key names and values: server/public/model/config.go (EmailSettings, ConnSecurity*)."""

from __future__ import annotations

from tasks.settings import Settings, SettingsError


def owned_keys(s: Settings) -> dict:
    if not s.email.server:
        return {}
    return {
        "EmailSettings.SendEmailNotifications": True,
        "EmailSettings.SMTPServer": s.email.server,
        "EmailSettings.SMTPPort": str(s.email.port),  # a string in config.json
        "EmailSettings.ConnectionSecurity": s.email.security,
        "EmailSettings.SkipServerCertificateVerification": s.email.skip_certificate_check,
        "EmailSettings.EnableSMTPAuth": bool(s.email.user),
        "EmailSettings.SMTPUsername": s.email.user or "",
        "EmailSettings.SMTPPassword": {"$secret_file": s.smtp_password_file} if s.email.user else "",
        "EmailSettings.FeedbackEmail": s.email.sender,
        "EmailSettings.FeedbackName": s.email.sender_name,
    }


def probe(s: Settings) -> dict | None:
    """What the state query connects to (no secret: the login is tried at the merge)."""
    if not s.email.server:
        return None
    return {"EmailSettings": {"SMTPServer": s.email.server, "SMTPPort": str(s.email.port),
                              "ConnectionSecurity": s.email.security,
                              "SkipServerCertificateVerification": s.email.skip_certificate_check}}


def preflight(s: Settings, now: dict) -> None:
    """Stop before any change when the server cannot reach the relay as configured."""
    problem = (now.get("smtp") or {}).get("problem")
    if s.email.server and problem:
        raise SettingsError(f"settings for {s.host}: the server cannot use the SMTP relay: {problem} - check "
                            "smtp_server, smtp_port and smtp_security, and that the provider allows outgoing "
                            "connections on that port (nothing was changed on the server)")
