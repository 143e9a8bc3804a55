# Every public setting of this deploy, with its default and what it does.
# Override per server in inventory.py (host data) or with `--data key=value`.
# Secrets never go here: see README "Secrets".

# --- The Mattermost release -------------------------------------------------------------
mattermost_version = "11.7.6"  # release to install (X.Y.Z); never downgraded on its own
mattermost_arch = "amd64"  # amd64 or arm64, as in the release file names
# Download URL; {version} and {arch} are filled in. The non-"team" build runs as Team Edition without a licence.
mattermost_release_url = "https://releases.mattermost.com/{version}/mattermost-{version}-linux-{arch}.tar.gz"
mattermost_release_signature_url = "{url}.sig"  # detached GPG signature; {url} is the release URL
mattermost_release_checksum_url = ""  # URL of a "HEX  FILE" SHA-256 file, if your mirror publishes one ({url} allowed)
mattermost_release_sha256 = {}  # known SHA-256 per version, from Mattermost's Version Archive: {"11.7.6": "ab12..."}
mattermost_signing_key_url = "https://deb.packages.mattermost.com/pubkey.gpg"  # where the server refreshes the key
mattermost_signing_key_fingerprint = "A1B31D46F0F3A10B02CF2D44F8F2C31744774B28"  # pinned: Mattermost Build

# --- Site ---------------------------------------------------------------------------------
mattermost_domain = None  # public host name; defaults to the inventory name of the server
mattermost_site_url = None  # ServiceSettings.SiteURL; defaults to https://<mattermost_domain>
# Extra config.json keys this deploy owns, "Section.Key": value. Keys not listed stay as the admin sets them.
mattermost_config = {}
mattermost_health_timeout = 180  # seconds to wait for a healthy ping after a (re)start

# --- Where things live on the server -------------------------------------------------------
mattermost_user = "mattermost"  # system user the service runs as
mattermost_install_dir = "/opt/mattermost"  # the operator's path: a link to the release in use
mattermost_releases_dir = "/opt/mattermost-releases"  # one read-only folder per release version
mattermost_state_dir = "/var/lib/mattermost"  # config/, data/, plugins/, client-plugins/: survives upgrades
mattermost_log_dir = "/var/log/mattermost"  # mattermost.log and notifications.log
mattermost_socket_dir = "/run/mattermost"  # local-mode socket for `mmctl --local`

# --- PostgreSQL ---------------------------------------------------------------------------------
postgresql_db_name = "mattermost"  # database, as in Mattermost's install guide
postgresql_db_user = "mmuser"  # role, as in Mattermost's install guide
# True: the password must come from MATTERMOST_DB_PASSWORD on the workstation (the run stops
# when it is unset). False: taken from there when set, else generated once on the server.
postgresql_password_from_env = False

# --- nginx ------------------------------------------------------------------------------------------
nginx_client_max_body_size = "50M"  # largest upload through the proxy (Mattermost asks at least 50M)
nginx_hsts_max_age = 63072000  # Strict-Transport-Security max-age in seconds (2 years)
# Certificate and key already on the server (e.g. from your CA). Empty: a self-signed certificate is made.
nginx_tls_certificate = ""
nginx_tls_certificate_key = ""
