"""config.json: the deploy merges only the keys it owns (desired_config below, plus
the operator's mattermost_config) into the existing file. Everything an admin sets in
the System Console survives every run. 0600, owned by the service user."""

from __future__ import annotations

import json

from pyinfra import host, logger, state
from pyinfra.api import StringCommand, operation

from tasks import email, files, privacy
from tasks.common import current, helper, managed_file, settings
from tasks.housekeeping import emoji_files, emoji_folder
from tasks.release import decision
from tasks.secrets import files_secrets, secret_in_place, smtp_secrets
from tasks.settings import Settings, SettingsError

# Where an "app" server keeps the CA of its database's certificate (public: Mattermost's
# service user reads it for sslrootcert).
DB_CA_PATH = "/etc/mattermost/db-ca.crt"


def datasource_parts(s: Settings) -> dict:
    """Mattermost's DataSource without its password: loopback without TLS on one server, the
    database server with TLS, its CA and its name checked (lib/pq's verify-full) otherwise."""
    if s.place.remote:
        return {"user": s.db_user, "host": s.place.host, "port": s.place.port, "database": s.db_name,
                "params": f"sslmode=verify-full&sslrootcert={DB_CA_PATH}&connect_timeout=10&binary_parameters=yes"}
    return {"user": s.db_user, "host": "localhost", "port": 5432, "database": s.db_name,
            "params": "sslmode=disable&connect_timeout=10&binary_parameters=yes"}


def desired_config(s: Settings) -> dict:
    """The config.json keys this deploy owns (dotted). Everything else is the admin's."""
    owned = {
        "ServiceSettings.SiteURL": s.site_url,
        "ServiceSettings.ListenAddress": "127.0.0.1:8065",
        "ServiceSettings.EnableLocalMode": True,
        "ServiceSettings.LocalModeSocketLocation": s.socket_path,
        "SqlSettings.DriverName": "postgres",
        # On an "app" server still on its local database (before `make move-database`), the
        # DataSource stays as it is: the move switches it (mmhelper/parts/config.py applicable).
        "SqlSettings.DataSource": ({"$after_move": {"$datasource": datasource_parts(s)}} if s.place.remote
                                   else {"$datasource": datasource_parts(s)}),
        "FileSettings.Directory": f"{s.state_dir}/data/",
        "LogSettings.FileLocation": s.log_dir,
        # Only where the version still has the section (gone in v11): see mmhelper applicable.
        "NotificationLogSettings.FileLocation": {"$if_section": s.log_dir},
        "PluginSettings.Directory": f"{s.state_dir}/plugins",
        "PluginSettings.ClientDirectory": f"{s.state_dir}/client-plugins",
        # Security: invitations only unless chosen otherwise, longer passwords, MFA offered,
        # permanent deletion through the API off (housekeeping uses the local socket).
        "TeamSettings.EnableOpenServer": s.open_server,
        "TeamSettings.RestrictCreationToDomains": s.signup_domains,
        "PasswordSettings.MinimumLength": s.password_min_length,
        "ServiceSettings.EnableMultifactorAuthentication": s.mfa,
        "ServiceSettings.EnableAPIUserDeletion": False,
        "ServiceSettings.EnableAPIChannelDeletion": False,
        "ServiceSettings.EnableAPITeamDeletion": False,
        # Brute force (tasks/security.py): Mattermost's own limiter on every route, per session once
        # signed in, else per address - the client's real one: nginx sets X-Real-IP, and Mattermost
        # (listening on loopback, so only nginx reaches it) trusts that header alone. Measured on the
        # real 10.3 and 11.4: with the header trusted, the failed-sign-in line, the Audits rows and
        # the limiter's key carry the client's address (127.0.0.1 without); the limiter reads both
        # settings at start only (channels/app/server.go), so a change restarts Mattermost.
        "ServiceSettings.TrustedProxyIPHeader": ["X-Real-IP"],
        "RateLimitSettings.Enable": s.security.rate_limit,
        "RateLimitSettings.PerSec": s.security.rate_per_sec,
        "RateLimitSettings.MaxBurst": s.security.rate_burst,
        "RateLimitSettings.VaryByRemoteAddr": True,
        "RateLimitSettings.VaryByUser": True,
    }
    if emoji_files(emoji_folder(s)) or s.notices.channel:
        # Custom emoji go through the REST API with the deploy's bot and its token (the bot
        # is made over the local socket, so EnableBotAccountCreation stays off). The real
        # 10.3 server refused the converted bot a token with EnableUserAccessTokens off
        # ("Personal access tokens are disabled", HTTP 501) where 11.4 allowed it: owned on.
        # The notices' bot posts with the same token.
        owned["ServiceSettings.EnableUserAccessTokens"] = True
    if emoji_files(emoji_folder(s)):
        owned["ServiceSettings.EnableCustomEmoji"] = True
    # Privacy: each outbound flow as chosen (tasks/privacy.py, PRIVACY.md); e-mail (tasks/email.py).
    owned.update(files.owned_keys(s.files, s.private_dir))
    owned.update(privacy.owned_keys(s.privacy, s.privacy_strict))
    if s.calls_on:
        # The plugin's RTC server listens where the firewall opens (its plugin.json: UDPServerPort,
        # TCPServerPort, ICEHostOverride; config.json keeps plugin settings in lower case).
        calls = "PluginSettings.Plugins[com.mattermost.calls]"
        owned[f"{calls}.udpserverport"] = s.calls.udp_port
        owned[f"{calls}.tcpserverport"] = s.calls.tcp_port
        if s.calls.ice_host_override:
            owned[f"{calls}.icehostoverride"] = s.calls.ice_host_override
    owned.update(email.owned_keys(s))
    owned.update(s.config)
    return owned


@operation()
def owned_keys_merged(force: bool = False):
    """Merge the owned keys into config.json when one differs (or the file is new)."""
    s, now = settings(), current()
    config = now["config"]
    if config.get("error"):
        raise ValueError(config["error"])
    if config["exists"] and not config["differs"] and not force:
        host.noop("config.json has every owned key as wanted")
        return
    if state.config.DIFF:
        wanted = desired_config(s)
        for key in config["differs"]:
            value = wanted[key]
            if isinstance(value, dict) and "$if_section" in value:
                value = value["$if_section"]
            shown = ("postgres://...:********@..." if isinstance(value, dict) and "$datasource" in value
                     else "********" if isinstance(value, dict) else json.dumps(value))
            logger.info(f"    {key}: {json.dumps(config['current'].get(key))} -> {shown}")
    yield helper("merge-config", {
        "desired_file": s.managed_config_file,
        "config_file": s.config_file,
        "seed_file": f"{s.release_dir(decision().target)}/config.dist/config.json",
        "password_file": s.password_file,
        "user": s.user,
        # the bucket is probed with the key as placed now, before config.json takes it
        "files_probe": files.probe_spec(s.files, s.private_dir),
    })


@operation()
def ca_trusted(changed: bool):
    """Debian's trust store rebuilt with the private CA (Mattermost, rclone and the helper
    trust the system's store only)."""
    if not changed:
        host.noop("the object store's CA is trusted")
        return
    yield StringCommand("update-ca-certificates")


def files_preflight(s, now: dict, keys_change: bool, ca_change: bool) -> None:
    """Stop before any change when the bucket refuses Mattermost's key as it is on the server;
    a key or CA this run places is probed by the merge instead (config.json unchanged then)."""
    result = now.get("files_probe") or {}
    if result.get("problem") and not (keys_change or ca_change):
        raise SettingsError(f"settings for {s.host}: the object store refuses Mattermost's key: {result['problem']} - "
                            "check files_s3_* and MATTERMOST_S3_ACCESS_KEY_ID/SECRET_ACCESS_KEY (the key needs "
                            "read, write and delete in the bucket) (nothing was changed on the server)")


def configure(password_op):
    s, now = settings(), current()
    email.preflight(s, now)
    secret_ops = [secret_in_place(name="Keep the SMTP password on the server (root only)", path=path,
                                  what="the SMTP password") for path in smtp_secrets(s)]
    key_ops = [secret_in_place(name="Keep the object store's keys on the server (root only)", path=path,
                               what="the object store's keys") for path in sorted(files_secrets(s))]
    ca_ops = []
    if s.files.ca_pem:
        ca_ops.append(managed_file(name="Add the object store's private CA to the server's trust store",
                                   path=files.CA_PATH, content=s.files.ca_pem))
        ca_trusted(name="Rebuild the trust store (update-ca-certificates)", changed=ca_ops[0].will_change)
    files_preflight(s, now, any(op.will_change for op in key_ops), any(op.will_change for op in ca_ops))
    secret_ops += key_ops
    managed_file(
        name="Write the settings the deploy owns (/etc/mattermost/managed-config.json)",
        path=s.managed_config_file, content=json.dumps(desired_config(s), indent=2, sort_keys=True) + "\n")
    return owned_keys_merged(
        name="Merge the owned settings into config.json (System Console changes are kept)",
        force=password_op.will_change or any(op.will_change for op in secret_ops))
