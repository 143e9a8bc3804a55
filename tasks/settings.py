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
from tasks.groups import calls as groups_calls
from tasks.groups import checks
from tasks.groups import email as groups_email
from tasks.groups import notices as groups_notices
from tasks.groups import offsite as groups_offsite
from tasks.groups import release as groups_release
from tasks.groups import security as groups_security
from tasks.groups import ssh as groups_ssh
from tasks.groups import updates as groups_updates
from tasks.groups.calls import Calls
from tasks.groups.email import Email
from tasks.groups.notices import Notices
from tasks.groups.offsite import Offsite
from tasks.groups.release import Release
from tasks.groups.secret import Secret
from tasks.groups.security import Security
from tasks.groups.ssh import SshAccess
from tasks.groups.updates import Updates

ROOT = Path(__file__).resolve().parent.parent
SECRETS_FILE = ROOT / "secrets.env"  # git-ignored: KEY=VALUE lines, read when present
PASSWORD_ENV = "MATTERMOST_DB_PASSWORD"

# Keys the deploy builds itself: the operator's mattermost_config may not set them.
RESERVED_KEYS = {"SqlSettings.DataSource", "SqlSettings.DriverName"}


class SettingsError(DeployError):
    """A setting or secret is wrong: nothing was changed on any server."""


@dataclass(frozen=True)
class Settings:
    host: str
    backup_dir: str
    backup_keep: int
    backup_schedule: str | None
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
    reports_dir: str
    nginx_client_max_body_size: str
    nginx_hsts_max_age: int
    tls_certificate: str
    tls_certificate_key: str
    acme_email: str | None
    acme_directory_url: str
    acme_server_ca: str | None
    privacy_strict: bool = False
    adopt_path: str | None = None
    privacy: dict = field(default_factory=dict)
    release: Release = field(default_factory=Release)
    email: Email = field(default_factory=Email)
    notices: Notices = field(default_factory=Notices)
    offsite: Offsite = field(default_factory=Offsite)
    ssh: SshAccess = field(default_factory=SshAccess)
    calls: Calls = field(default_factory=Calls)
    updates: Updates = field(default_factory=Updates)
    security: Security = field(default_factory=Security)
    migration: MigrationSettings = field(default_factory=MigrationSettings)
    files: FileStore = field(default_factory=FileStore)
    place: DbPlace = field(default_factory=DbPlace)

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
    def probe_token_file(self) -> str:
        return f"{self.private_dir}/probe-token"

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
    """Host data (with group_data/all.py defaults) -> Settings, or SettingsError. Each group
    is built and checked by its own module (tasks/groups/); what stays here is the core:
    where things live, the site, the database's login, the declared users and channels."""
    env = {**read_secrets_file(), **os.environ} if environ is None else environ

    def get(key):
        return data.get(key)

    problems: list[str] = []
    problems += checks.found(checks.number("mattermost_backup_keep", get("mattermost_backup_keep"), 1,
                                           what="a whole number"))
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

    # Mattermost accepts a minimum password length from 5 to 72 (model/config.go:
    # PasswordMinimumLength, PasswordMaximumLength; config.IsValid refuses others).
    problems += checks.found(
        checks.port("firewall_ssh_port", get("firewall_ssh_port")),
        checks.number("mattermost_password_min_length", get("mattermost_password_min_length"), 5, 72,
                      what="a number of characters"))
    if not all(isinstance(p, int) and 0 < p < 65536 for p in get("firewall_allow_tcp") or []):
        problems.append("firewall_allow_tcp must list port numbers")
    for key in ("mattermost_channels_archive", "mattermost_channels_delete"):
        problems += checks.found(*(checks.team_channel(key, ref) for ref in get(key) or []))
    for user in get("mattermost_users_create") or []:
        if not isinstance(user, dict) or not user.get("username") or "@" not in str(user.get("email", "")):
            problems.append(f"mattermost_users_create: {user!r} needs a username and an email (never a password)")
        elif "password" in user:
            problems.append(f"mattermost_users_create: {user['username']}: no password in the settings - the user "
                            "sets one through the reset e-mail")
    retention_days = get("mattermost_retention_days")
    if retention_days is not None and (not isinstance(retention_days, int) or retention_days < 1):
        problems.append("mattermost_retention_days must be a number of days, or None")
    cert, key = get("nginx_tls_certificate") or "", get("nginx_tls_certificate_key") or ""
    if bool(cert) != bool(key):
        problems.append("set both nginx_tls_certificate and nginx_tls_certificate_key, or neither")
    acme_email = get("acme_email") or None
    if acme_email and (cert or re.fullmatch(r"[\d.]+", domain or "")):
        problems.append("acme_email needs mattermost_domain to be a DNS name and no nginx_tls_certificate")
    if acme_email and "@" not in str(acme_email):
        problems.append(f"acme_email {acme_email!r} is not an e-mail address")

    privacy_overrides = dict(get("mattermost_privacy") or {})
    problems += privacy.problems(privacy_overrides)
    release, release_problems = groups_release.build(get)
    email, email_problems = groups_email.build(get, env, config)
    notices, notices_problems = groups_notices.build(
        get, smtp_configured=bool(email.server or config.get("EmailSettings.SMTPServer")))
    offsite, offsite_problems = groups_offsite.build(get, env)
    ssh, ssh_problems = groups_ssh.build(get)
    calls, calls_problems = groups_calls.build(get)
    updates, updates_problems = groups_updates.build(get)
    security, security_problems = groups_security.build(get)
    migration, migration_problems = migration_settings(get)
    files, files_problems = files_settings(get, env)
    place, place_problems = place_settings(get, password)
    problems += (release_problems + email_problems + notices_problems + offsite_problems + ssh_problems
                 + calls_problems + updates_problems + security_problems + migration_problems + files_problems + place_problems)

    if problems:
        raise SettingsError(f"settings for {host_name}: " + "; ".join(problems) +
                            " (nothing was changed on the server)")

    return Settings(
        host=host_name,
        backup_dir=get("mattermost_backup_dir").rstrip("/"),
        backup_keep=get("mattermost_backup_keep"),
        backup_schedule=get("mattermost_backup_schedule") or None,
        domain=domain,
        site_url=site_url,
        config=config,
        health_timeout=get("mattermost_health_timeout"),
        start_timeout=get("mattermost_start_timeout"),
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
        emoji_dir=str(get("mattermost_emoji_dir")),
        stale_days=get("mattermost_stale_days"),
        retention_days=retention_days,
        reports_dir=get("reports_dir"),
        nginx_client_max_body_size=get("nginx_client_max_body_size"),
        nginx_hsts_max_age=int(get("nginx_hsts_max_age")),
        tls_certificate=cert,
        tls_certificate_key=key,
        acme_email=acme_email,
        acme_directory_url=get("acme_directory_url"),
        acme_server_ca=get("acme_server_ca") or None,
        privacy_strict=bool(get("mattermost_privacy_strict")),
        adopt_path=(str(get("mattermost_adopt_path")).rstrip("/") or "/") if get("mattermost_adopt_path") else None,
        privacy=privacy_overrides,
        release=release, email=email, notices=notices, offsite=offsite, ssh=ssh, calls=calls, updates=updates,
        security=security,
        migration=migration,
        files=files,
        place=place,
    )
