"""The deploy's settings, checked before anything touches a server.

Defaults and their meaning live in group_data/all.py; this module turns host data into
one typed object and refuses bad input with a sentence that says what to do.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from pyinfra.api.exceptions import DeployError

from tasks import privacy
from tasks.db_migrate import MigrationSettings, migration_settings
from tasks.dbplace import DbPlace, place_settings
from tasks.files import FileStore, files_settings
from tasks.versions import is_valid_policy

ROOT = Path(__file__).resolve().parent.parent
SECRETS_FILE = ROOT / "secrets.env"  # git-ignored: KEY=VALUE lines, read when present
PASSWORD_ENV = "MATTERMOST_DB_PASSWORD"
SMTP_PASSWORD_ENV = "MATTERMOST_SMTP_PASSWORD"
RESTIC_PASSWORD_ENV = "RESTIC_PASSWORD"
# Credentials a restic repository may need, passed to the server's restic.env (root only).
RESTIC_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "RESTIC_REST_USERNAME",
              "RESTIC_REST_PASSWORD")

# Keys the deploy builds itself: the operator's mattermost_config may not set them.
RESERVED_KEYS = {"SqlSettings.DataSource", "SqlSettings.DriverName"}


class SettingsError(DeployError):
    """A setting or secret is wrong: nothing was changed on any server."""


class Secret(str):
    """A string that never shows itself in logs, reprs or tracebacks."""

    def __repr__(self) -> str:
        return "Secret(********)"


@dataclass(frozen=True)
class Settings:
    host: str
    version_policy: str
    version_fallback: str | None
    esr_lines: list
    allow_esr_skip: bool
    allow_below_7_1: bool
    github_api_url: str
    github_repository: str
    keep_releases: int
    backup_dir: str
    backup_keep: int
    backup_schedule: str | None
    arch: str
    release_url: str
    signature_url: str
    checksum_url: str
    release_sha256: dict
    signing_key_url: str
    signing_key_fingerprint: str
    domain: str
    site_url: str
    config: dict
    health_timeout: int
    start_timeout: int
    user: str
    install_dir: str
    releases_dir: str
    state_dir: str
    log_dir: str
    socket_dir: str
    db_name: str
    db_user: str
    db_password: Secret | None = field(repr=False)
    open_server: bool
    signup_domains: str
    password_min_length: int
    mfa: bool
    firewall: bool
    firewall_ssh_port: int
    firewall_allow_tcp: list
    channels_archive: list
    channels_delete: list
    users_create: list
    users_deactivate: list
    users_erase: list
    confirm_permanent_deletion: bool
    emoji_dir: str
    stale_days: int
    retention_days: int | None
    ssh_admin_user: str | None
    ssh_admin_keys: list
    ssh_disable_root: bool
    unattended_upgrades: bool
    unattended_upgrades_reboot_time: str | None
    patch_reboot_packages: list
    patch_never_restart: list
    patch_reboot_timeout: int
    reports_dir: str
    nginx_client_max_body_size: str
    nginx_hsts_max_age: int
    tls_certificate: str
    tls_certificate_key: str
    acme_email: str | None
    acme_directory_url: str
    acme_server_ca: str | None
    offsite_repository: str | None = None
    offsite_keep: dict = field(default_factory=dict)
    offsite_ssh_key: str | None = field(default=None, repr=False)  # the key's content: a secret
    offsite_known_hosts: str | None = None
    offsite_password: Secret | None = field(default=None, repr=False)
    offsite_env: dict = field(default_factory=dict, repr=False)
    smtp_server: str | None = None
    smtp_port: int = 587
    smtp_security: str = "STARTTLS"
    smtp_user: str | None = None
    smtp_password: Secret | None = field(default=None, repr=False)
    smtp_sender: str | None = None
    smtp_sender_name: str = "Mattermost"
    smtp_skip_certificate_check: bool = False
    privacy_strict: bool = False
    adopt_path: str | None = None
    notices_channel: str | None = None
    notices_email: str | None = None
    notices_digest_time: str = "08:00"
    notices_every_minutes: int = 15
    notices_cert_days: int = 14
    notices_disk_percent: int = 90
    notices_restart_limit: int = 3
    notices_github_api_url: str | None = None
    privacy: dict = field(default_factory=dict)
    migration: MigrationSettings = field(default_factory=MigrationSettings)
    files: FileStore = field(default_factory=FileStore)
    place: DbPlace = field(default_factory=DbPlace)
    calls_udp_port: int = 8443
    calls_tcp_port: int = 8443
    calls_ice_host_override: str | None = None

    # ---- derived paths and URLs, one place each
    @property
    def config_file(self) -> str:
        return f"{self.state_dir}/config/config.json"

    @property
    def private_dir(self) -> str:
        return "/etc/mattermost/private"

    @property
    def password_file(self) -> str:
        return f"{self.private_dir}/db-password"

    @property
    def managed_config_file(self) -> str:
        return "/etc/mattermost/managed-config.json"

    @property
    def socket_path(self) -> str:
        return f"{self.socket_dir}/local.socket"

    @property
    def calls_on(self) -> bool:
        """The Calls flow is allowed (tasks/privacy.py): its media ports are opened (on a
        Mattermost server: a database server runs no Calls)."""
        return self.place.runs_mattermost and privacy.choices(self.privacy, self.privacy_strict)["calls"]

    @property
    def site_path(self) -> str:
        """The SiteURL's path ("" at the root, "/chat" for https://host/chat): Mattermost then
        serves everything under it (its router's PathPrefix, channels/app/server.go), also on
        its own port."""
        return urllib.parse.urlsplit(self.site_url).path.rstrip("/")

    @property
    def site_origin(self) -> str:
        parts = urllib.parse.urlsplit(self.site_url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def local_api_base(self) -> str:
        """Mattermost's own listener, under the site's path."""
        return f"http://127.0.0.1:8065{self.site_path}"

    @property
    def ping_url(self) -> str:
        return f"{self.local_api_base}/api/v4/system/ping?get_server_status=true"

    @property
    def deploy_state_dir(self) -> str:
        return "/var/lib/mattermost-deploy"

    @property
    def patch_lock_file(self) -> str:
        return f"{self.deploy_state_dir}/patch-night.lock"

    @property
    def patch_state_file(self) -> str:
        return f"{self.deploy_state_dir}/patch-night.json"

    @property
    def os_upgrade_lock_file(self) -> str:
        return f"{self.deploy_state_dir}/os-upgrade.lock"

    @property
    def os_upgrade_state_file(self) -> str:
        return f"{self.deploy_state_dir}/os-upgrade.json"

    @property
    def offsite_password_file(self) -> str:
        return f"{self.private_dir}/restic-password"

    @property
    def smtp_password_file(self) -> str:
        return f"{self.private_dir}/smtp-password"

    @property
    def offsite_key_file(self) -> str:
        return f"{self.private_dir}/restic-ssh-key"

    @property
    def offsite_env_file(self) -> str:
        return f"{self.private_dir}/restic.env"

    @property
    def offsite_known_hosts_file(self) -> str:
        return "/etc/mattermost/restic-known-hosts"

    @property
    def offsite_status_file(self) -> str:
        return f"{self.deploy_state_dir}/offsite.json"

    @property
    def bot_token_file(self) -> str:
        return f"{self.private_dir}/bot-token"

    @property
    def hold_file(self) -> str:
        return "/etc/mattermost/upgrade-hold.json"

    @property
    def data_dir(self) -> str:
        return f"{self.state_dir}/data"

    def release_dir(self, version: str) -> str:
        return f"{self.releases_dir}/{version}"

    def url_for(self, version: str) -> str:
        return self.release_url.format(version=version, arch=self.arch)

    # ---- TLS: the operator's certificate, else an ACME one, else (and meanwhile) self-signed
    @property
    def self_signed_certificate(self) -> str:
        return f"/etc/ssl/mattermost/{self.domain}.selfsigned.crt"

    @property
    def self_signed_key(self) -> str:
        return f"/etc/ssl/mattermost/{self.domain}.selfsigned.key"

    @property
    def acme_certificate(self) -> str:
        return f"/etc/letsencrypt/live/{self.domain}/fullchain.pem"

    @property
    def acme_key(self) -> str:
        return f"/etc/letsencrypt/live/{self.domain}/privkey.pem"

    @property
    def certificate(self) -> str:
        return self.tls_certificate or (self.acme_certificate if self.acme_email else self.self_signed_certificate)

    @property
    def certificate_key(self) -> str:
        return self.tls_certificate_key or (self.acme_key if self.acme_email else self.self_signed_key)

    @property
    def self_signed(self) -> bool:
        """A self-signed certificate is kept unless the operator brings one: it serves until
        (and whenever) the ACME certificate is not there."""
        return not self.tls_certificate


VERSION_RE = re.compile(r"^\d+\.\d+\.\d+$")
HOST_RE = re.compile(r"^[A-Za-z0-9.-]+$")


def read_secrets_file(path: Path = SECRETS_FILE) -> dict[str, str]:
    values: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, _, value = line.partition("=")
                values[key.strip().removeprefix("export ").strip()] = value.strip().strip("'\"")
    return values


def load_settings(data, host_name: str, environ: dict | None = None) -> Settings:
    """Host data (with group_data/all.py defaults) -> Settings, or SettingsError."""
    env = {**read_secrets_file(), **os.environ} if environ is None else environ

    def get(key):
        value = data.get(key)
        return value

    problems: list[str] = []
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
    for key in ("mattermost_keep_releases", "mattermost_backup_keep"):
        if not isinstance(get(key), int) or get(key) < 1:
            problems.append(f"{key} must be a whole number of at least 1")
    arch = get("mattermost_arch")
    if arch not in ("amd64", "arm64"):
        problems.append(f"mattermost_arch must be amd64 or arm64, not {arch!r}")
    release_url = get("mattermost_release_url") or ""
    if "{version}" not in release_url:
        problems.append("mattermost_release_url must contain {version}")
    fingerprint = (get("mattermost_signing_key_fingerprint") or "").replace(" ", "").upper()
    if not re.fullmatch(r"[0-9A-F]{40}", fingerprint):
        problems.append("mattermost_signing_key_fingerprint must be a 40-digit key fingerprint")
    sha256 = dict(get("mattermost_release_sha256") or {})
    for v, digest in sha256.items():
        if not re.fullmatch(r"[0-9a-fA-F]{64}", str(digest)):
            problems.append(f"mattermost_release_sha256[{v!r}] is not a SHA-256 (64 hex digits)")
    domain = get("mattermost_domain") or host_name
    if not HOST_RE.match(domain or ""):
        problems.append(f"mattermost_domain {domain!r} is not a host name")
    site_url = (get("mattermost_site_url") or f"https://{domain}").rstrip("/")
    if not site_url.startswith("https://"):
        problems.append(f"mattermost_site_url must start with https:// (nginx serves TLS), not {site_url!r}")
    parts = urllib.parse.urlsplit(site_url)
    if parts.query or parts.fragment or not re.fullmatch(r"(/[A-Za-z0-9._~-]+)*", parts.path.rstrip("/")):
        problems.append(f"mattermost_site_url {site_url!r}: a path is served (https://chat.example.org/chat), but "
                        "only letters, digits and . _ ~ - in its parts, and no query or fragment")
    config = dict(get("mattermost_config") or {})
    for key in config:
        if key.count(".") < 1:
            problems.append(f"mattermost_config key {key!r} must look like Section.Key")
        if key in RESERVED_KEYS:
            problems.append(f"mattermost_config may not set {key}: the deploy builds it from the postgresql_* settings")
    for key in ("mattermost_install_dir", "mattermost_releases_dir", "mattermost_state_dir",
                "mattermost_log_dir", "mattermost_socket_dir", "mattermost_backup_dir"):
        if not str(get(key) or "").startswith("/"):
            problems.append(f"{key} must be an absolute path")
    if get("mattermost_adopt_path") and not str(get("mattermost_adopt_path")).startswith("/"):
        problems.append(f"mattermost_adopt_path must be an absolute path (the hand install's folder), not "
                        f"{get('mattermost_adopt_path')!r}")

    password = env.get(PASSWORD_ENV) or None
    if get("postgresql_password_from_env") and not password:
        problems.append(
            f"postgresql_password_from_env is set but {PASSWORD_ENV} is empty on this workstation: "
            f"export it or put it in secrets.env (git-ignored), then re-run")
    if password is not None and len(password) < 12:
        problems.append(f"{PASSWORD_ENV} is shorter than 12 characters: choose a longer one")

    for key in ("firewall_ssh_port", "mattermost_password_min_length"):
        if not isinstance(get(key), int) or not 0 < get(key) < 65536:
            problems.append(f"{key} must be a number, not {get(key)!r}")
    if not all(isinstance(p, int) and 0 < p < 65536 for p in get("firewall_allow_tcp") or []):
        problems.append("firewall_allow_tcp must list port numbers")
    for key in ("mattermost_channels_archive", "mattermost_channels_delete"):
        for ref in get(key) or []:
            if not re.fullmatch(r"[a-z0-9_-]+:[a-z0-9_-]+", str(ref)):
                problems.append(f"{key}: {ref!r} must be team:channel (their URL names)")
    for user in get("mattermost_users_create") or []:
        if not isinstance(user, dict) or not user.get("username") or "@" not in str(user.get("email", "")):
            problems.append(f"mattermost_users_create: {user!r} needs a username and an email (never a password)")
        elif "password" in user:
            problems.append(f"mattermost_users_create: {user['username']}: no password in the settings - the user "
                            "sets one through the reset e-mail")
    retention_days = get("mattermost_retention_days")
    if retention_days is not None and (not isinstance(retention_days, int) or retention_days < 1):
        problems.append("mattermost_retention_days must be a number of days, or None")
    admin = get("ssh_admin_user") or None
    admin_keys = [str(k).strip() for k in (get("ssh_admin_keys") or [])]
    if admin and not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", admin):
        problems.append(f"ssh_admin_user {admin!r} is not a valid user name")
    if admin and not admin_keys:
        problems.append("ssh_admin_keys must list at least one public key for ssh_admin_user")
    if not all(re.match(r"^(ssh-|ecdsa-|sk-)\S+ \S+", k) for k in admin_keys):
        problems.append("ssh_admin_keys must hold public keys like 'ssh-ed25519 AAAA... you@laptop'")
    if get("ssh_disable_root") and not admin:
        problems.append("ssh_disable_root needs ssh_admin_user (or nobody could log in)")
    reboot_time = get("unattended_upgrades_reboot_time") or None
    if reboot_time is not None and not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", str(reboot_time)):
        problems.append(f"unattended_upgrades_reboot_time must be HH:MM or None, not {reboot_time!r}")
    cert, key = get("nginx_tls_certificate") or "", get("nginx_tls_certificate_key") or ""
    if bool(cert) != bool(key):
        problems.append("set both nginx_tls_certificate and nginx_tls_certificate_key, or neither")

    acme_email = get("acme_email") or None
    if acme_email and (cert or re.fullmatch(r"[\d.]+", domain or "")):
        problems.append("acme_email needs mattermost_domain to be a DNS name and no nginx_tls_certificate")
    if acme_email and "@" not in str(acme_email):
        problems.append(f"acme_email {acme_email!r} is not an e-mail address")

    repository = get("backup_offsite_repository") or None
    offsite_key, offsite_password, offsite_env = None, None, {}
    keep = dict(get("backup_offsite_keep") or {})
    if repository:
        if not re.match(r"^(sftp|s3|rest|b2|azure|gs|swift|rclone):", str(repository)) and not str(repository).startswith("/"):
            problems.append(f"backup_offsite_repository {repository!r} is not a restic repository (sftp:user@host:/path, "
                            "s3:https://..., rest:https://...)")
        offsite_password = env.get(RESTIC_PASSWORD_ENV) or None
        if not offsite_password:
            problems.append(f"backup_offsite_repository is set but {RESTIC_PASSWORD_ENV} is empty on this workstation: "
                            "export it or put it in secrets.env (and keep a copy outside the server)")
        elif len(offsite_password) < 16:
            problems.append(f"{RESTIC_PASSWORD_ENV} is shorter than 16 characters: choose a longer one")
        if not all(k in ("last", "hourly", "daily", "weekly", "monthly", "yearly") and isinstance(v, int) and v >= 0
                   for k, v in keep.items()) or not any(keep.values()):
            problems.append("backup_offsite_keep must map last/daily/weekly/monthly/yearly to numbers, at least one > 0")
        if str(repository).startswith("sftp:"):
            key_path = get("backup_offsite_ssh_key")
            if not key_path or not Path(str(key_path)).expanduser().is_file():
                problems.append(f"an SFTP repository needs backup_offsite_ssh_key: the path of a private key file on "
                                f"this workstation (not found: {key_path!r})")
            else:
                offsite_key = Path(str(key_path)).expanduser().read_text()
            if not get("backup_offsite_known_hosts"):
                problems.append("an SFTP repository needs backup_offsite_known_hosts: the host's key line, pinned "
                                "(e.g. from `ssh-keyscan -t ed25519 HOST` checked against your provider)")
        offsite_env = {k: env[k] for k in RESTIC_ENV if env.get(k)}

    smtp_server = get("smtp_server") or None
    smtp_port, smtp_security = get("smtp_port") or 587, get("smtp_security") or ""
    smtp_user, smtp_sender = get("smtp_user") or None, get("smtp_sender") or None
    smtp_password = env.get(SMTP_PASSWORD_ENV) or None
    if smtp_server:
        if not HOST_RE.match(str(smtp_server)):
            problems.append(f"smtp_server {smtp_server!r} is not a host name")
        if not isinstance(smtp_port, int) or not 0 < smtp_port < 65536:
            problems.append(f"smtp_port must be a port number, not {smtp_port!r}")
        if smtp_security not in ("STARTTLS", "TLS", ""):
            problems.append(f"smtp_security must be \"STARTTLS\", \"TLS\" or \"\" (none), not {smtp_security!r}")
        if not smtp_sender or "@" not in str(smtp_sender):
            problems.append("smtp_sender must be the From: address of Mattermost's mails, e.g. chat@example.org")
        if smtp_user and not smtp_password:
            problems.append(f"smtp_user is set but {SMTP_PASSWORD_ENV} is empty on this workstation: export it or "
                            "put it in secrets.env (git-ignored), then re-run")
        if smtp_user and smtp_security == "":
            problems.append("smtp_user without TLS would send the SMTP password in clear: set smtp_security")
        clash = sorted(k for k in config if k.startswith("EmailSettings.") and k.split(".")[1] in (
            "SMTPServer", "SMTPPort", "ConnectionSecurity", "EnableSMTPAuth", "SMTPUsername", "SMTPPassword",
            "FeedbackEmail", "FeedbackName", "SkipServerCertificateVerification"))
        if clash:
            problems.append(f"mattermost_config sets {', '.join(clash)} while smtp_server is set: use the smtp_* "
                            "settings only")
    if any(k.endswith("SMTPPassword") for k in config):
        problems.append(f"no SMTP password in mattermost_config: set smtp_user and {SMTP_PASSWORD_ENV}")
    notices_channel, notices_email = get("notices_channel") or None, get("notices_email") or None
    if notices_channel and not re.fullmatch(r"[a-z0-9_-]+:[a-z0-9_-]+", str(notices_channel)):
        problems.append(f"notices_channel {notices_channel!r} must be team:channel (their URL names)")
    if notices_email and "@" not in str(notices_email):
        problems.append(f"notices_email {notices_email!r} is not an e-mail address")
    if notices_email and not smtp_server and not config.get("EmailSettings.SMTPServer"):
        problems.append("notices_email needs smtp_server: the alert mail goes through that relay")
    digest_time = str(get("notices_digest_time") or "08:00")
    if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", digest_time):
        problems.append(f"notices_digest_time must be HH:MM, not {digest_time!r}")
    for name, low, high in (("notices_every_minutes", 1, 59), ("notices_cert_days", 1, 90),
                            ("notices_disk_percent", 1, 99), ("notices_restart_limit", 1, 1000)):
        if get(name) is not None and (not isinstance(get(name), int) or not low <= get(name) <= high):
            problems.append(f"{name} must be a number from {low} to {high}, not {get(name)!r}")
    privacy_overrides = dict(get("mattermost_privacy") or {})
    problems += privacy.problems(privacy_overrides)
    migration, migration_problems = migration_settings(get)
    problems += migration_problems
    files, files_problems = files_settings(get, env)
    problems += files_problems
    place, place_problems = place_settings(get, password)
    problems += place_problems
    for port_key in ("calls_udp_port", "calls_tcp_port"):
        port = get(port_key)
        if port is not None and (not isinstance(port, int) or not 0 < port < 65536):
            problems.append(f"{port_key} must be a port number, not {port!r}")
    ice = get("calls_ice_host_override") or None
    if ice and not HOST_RE.match(str(ice)):
        problems.append(f"calls_ice_host_override must be the server's public IP address or name, not {ice!r}")

    if problems:
        raise SettingsError(f"settings for {host_name}: " + "; ".join(problems) +
                            " (nothing was changed on the server)")

    return Settings(
        host=host_name,
        version_policy=policy,
        version_fallback=fallback,
        esr_lines=esr_lines,
        allow_esr_skip=bool(get("mattermost_allow_esr_skip")),
        allow_below_7_1=bool(get("mattermost_allow_below_7_1")),
        github_api_url=get("github_api_url"),
        github_repository=get("github_repository"),
        keep_releases=get("mattermost_keep_releases"),
        backup_dir=get("mattermost_backup_dir").rstrip("/"),
        backup_keep=get("mattermost_backup_keep"),
        backup_schedule=get("mattermost_backup_schedule") or None,
        arch=arch,
        release_url=release_url,
        signature_url=get("mattermost_release_signature_url") or "{url}.sig",
        checksum_url=get("mattermost_release_checksum_url") or "",
        release_sha256=sha256,
        signing_key_url=get("mattermost_signing_key_url"),
        signing_key_fingerprint=fingerprint,
        domain=domain,
        site_url=site_url,
        config=config,
        health_timeout=int(get("mattermost_health_timeout") or 180),
        start_timeout=int(get("mattermost_start_timeout") or 3600),
        user=get("mattermost_user"),
        install_dir=get("mattermost_install_dir").rstrip("/"),
        releases_dir=get("mattermost_releases_dir").rstrip("/"),
        state_dir=get("mattermost_state_dir").rstrip("/"),
        log_dir=get("mattermost_log_dir").rstrip("/"),
        socket_dir=get("mattermost_socket_dir").rstrip("/"),
        db_name=get("postgresql_db_name"),
        db_user=get("postgresql_db_user"),
        db_password=Secret(password) if password else None,
        open_server=bool(get("mattermost_open_server")),
        signup_domains=str(get("mattermost_signup_domains") or ""),
        password_min_length=get("mattermost_password_min_length"),
        mfa=bool(get("mattermost_mfa")),
        firewall=bool(get("firewall")),
        firewall_ssh_port=get("firewall_ssh_port"),
        firewall_allow_tcp=list(get("firewall_allow_tcp") or []),
        channels_archive=list(get("mattermost_channels_archive") or []),
        channels_delete=list(get("mattermost_channels_delete") or []),
        users_create=list(get("mattermost_users_create") or []),
        users_deactivate=list(get("mattermost_users_deactivate") or []),
        users_erase=list(get("mattermost_users_erase") or []),
        confirm_permanent_deletion=bool(get("mattermost_confirm_permanent_deletion")),
        emoji_dir=str(get("mattermost_emoji_dir") or "emoji"),
        stale_days=int(get("mattermost_stale_days") or 180),
        retention_days=retention_days,
        ssh_admin_user=admin,
        ssh_admin_keys=admin_keys,
        ssh_disable_root=bool(get("ssh_disable_root")),
        unattended_upgrades=bool(get("unattended_upgrades")),
        unattended_upgrades_reboot_time=reboot_time,
        patch_reboot_packages=list(get("patch_reboot_packages") or []),
        patch_never_restart=list(get("patch_never_restart") or []),
        patch_reboot_timeout=int(get("patch_reboot_timeout") or 600),
        reports_dir=get("reports_dir") or "reports",
        nginx_client_max_body_size=get("nginx_client_max_body_size"),
        nginx_hsts_max_age=int(get("nginx_hsts_max_age")),
        tls_certificate=cert,
        tls_certificate_key=key,
        acme_email=acme_email,
        acme_directory_url=get("acme_directory_url") or "https://acme-v02.api.letsencrypt.org/directory",
        acme_server_ca=get("acme_server_ca") or None,
        offsite_repository=repository,
        offsite_keep=keep,
        offsite_ssh_key=offsite_key,
        offsite_known_hosts=(str(get("backup_offsite_known_hosts")).strip() + "\n") if repository and
        get("backup_offsite_known_hosts") else None,
        offsite_password=Secret(offsite_password) if offsite_password else None,
        offsite_env=offsite_env,
        smtp_server=smtp_server,
        smtp_port=smtp_port,
        smtp_security=smtp_security,
        smtp_user=smtp_user,
        smtp_password=Secret(smtp_password) if smtp_server and smtp_user and smtp_password else None,
        smtp_sender=smtp_sender,
        smtp_sender_name=str(get("smtp_sender_name") or "Mattermost"),
        smtp_skip_certificate_check=bool(get("smtp_skip_certificate_check")),
        privacy_strict=bool(get("mattermost_privacy_strict")),
        adopt_path=(str(get("mattermost_adopt_path")).rstrip("/") or "/") if get("mattermost_adopt_path") else None,
        privacy=privacy_overrides,
        notices_channel=notices_channel,
        notices_email=notices_email,
        notices_digest_time=digest_time,
        notices_every_minutes=get("notices_every_minutes") or 15,
        notices_cert_days=get("notices_cert_days") or 14,
        notices_disk_percent=get("notices_disk_percent") or 90,
        notices_restart_limit=get("notices_restart_limit") or 3,
        notices_github_api_url=get("notices_github_api_url") or None,
        migration=migration,
        files=files,
        place=place,
        calls_udp_port=get("calls_udp_port") or 8443,
        calls_tcp_port=get("calls_tcp_port") or 8443,
        calls_ice_host_override=ice,
    )
