# Every public setting of this deploy, with its default and what it does.
# Override per server in inventory.py (host data) or with `--data key=value`.
# Secrets never go here: see README "Secrets".

# --- The Mattermost release -------------------------------------------------------------
# Version policy: "esr" (newest release of the newest ESR line), "latest", "X.Y" (patches of
# one line) or "X.Y.Z" (pinned). Never downgrades on its own.
mattermost_version = "esr"
mattermost_version_fallback = None  # X.Y.Z to use when the GitHub lookup fails; None: no upgrade then
# Extended Support Release lines, past ones included (Mattermost announces one every 6-9 months: extend
# as they appear). An upgrade over several of them runs as a chain, one hop per line (see README "Upgrades").
mattermost_esr_lines = ["5.19", "5.25", "5.31", "5.37", "6.3", "7.1", "7.8", "8.1", "9.5", "9.11", "10.5", "10.11",
                        "11.7"]
mattermost_allow_esr_skip = False  # jump over ESR lines in one hop instead of a chain (supported, not tested)
mattermost_allow_below_7_1 = False  # from below 7.1, skip the stop at 7.1 Mattermost asks for
# Findings of the checks before a hop (make upgrade-plan names them, each with its id and source)
# that you accept, e.g. ["user-limit"]: nothing else lets a refused hop start.
mattermost_upgrade_accept = []
github_api_url = "https://api.github.com"  # releases API (a mirror or GitHub Enterprise works); GITHUB_TOKEN used if set
github_repository = "mattermost/mattermost"  # where the server releases are tagged
mattermost_keep_releases = 3  # release folders kept on the server (for rollback)
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
mattermost_health_timeout = 180  # seconds to wait for a healthy ping once the service reports ready
mattermost_start_timeout = 3600  # seconds an upgraded server may take to start (database migrations run then)

# --- E-mail (password and invitation mails, notifications; see README "E-mail") -----------------
smtp_server = None  # e.g. "smtp.example.org"; None: the deploy leaves EmailSettings alone
smtp_port = 587  # 587 with STARTTLS, 465 with TLS, 25 plain (inside a trusted network only)
smtp_security = "STARTTLS"  # "STARTTLS", "TLS" (implicit) or "" (none)
smtp_user = None  # login name; None: no SMTP authentication. Its password: MATTERMOST_SMTP_PASSWORD (env/secrets.env)
smtp_sender = None  # From: address (EmailSettings.FeedbackEmail), e.g. "chat@example.org"
smtp_sender_name = "Mattermost"  # From: name (EmailSettings.FeedbackName)
smtp_skip_certificate_check = False  # True only for a relay with a self-signed certificate you trust

# --- Operations notices (see README "Notices"): checks on the server every few minutes -------------
notices_channel = None  # "team:channel" the deploy's bot posts to (made private if missing), e.g. "acme:ops"
notices_email = None  # alerts by e-mail when Mattermost cannot post (needs smtp_server), e.g. "ops@example.org"
notices_digest_time = "08:00"  # the daily digest, server time
notices_every_minutes = 15  # how often the server checks itself
notices_cert_days = 14  # warn when the TLS certificate expires within this many days
notices_disk_percent = 90  # warn above this disk use (data, backups, /)
notices_restart_limit = 3  # warn when systemd restarted Mattermost this often in a day
notices_github_api_url = None  # where the SERVER reads the release list; None: github_api_url

# --- Privacy: each outbound flow of Mattermost, True = allowed (see PRIVACY.md) ------------------
mattermost_privacy_strict = False  # True closes every optional flow below, whatever it says
mattermost_privacy = {}  # overrides of tasks/privacy.py DEFAULTS, e.g. {"gif_picker": False}

# --- Calls (the prepackaged plugin; on unless mattermost_privacy says {"calls": False}) -----------------
# Voice and screen sharing travel over the plugin's own media port: the firewall opens it while Calls is on.
calls_udp_port = 8443  # the plugin's RTC server (UDPServerPort)
calls_tcp_port = 8443  # its TCP fallback (TCPServerPort): clients whose UDP is blocked
calls_ice_host_override = None  # the server's public IP when it sits behind NAT (ICEHostOverride); None: leave to the admin

# --- Security ------------------------------------------------------------------------------------
mattermost_open_server = False  # TeamSettings.EnableOpenServer: sign-up without an invitation
mattermost_signup_domains = ""  # TeamSettings.RestrictCreationToDomains, e.g. "example.org,example.net"
mattermost_password_min_length = 12  # PasswordSettings.MinimumLength (Mattermost's default is 8: public/model/config.go)
mattermost_mfa = True  # offer multi-factor authentication (enforcing it needs a licence)
firewall = True  # nftables: default deny inbound; SSH, 80 and 443 open
firewall_ssh_port = 22  # the port sshd listens on ON the server (opened first)
firewall_allow_tcp = []  # more TCP ports to open, e.g. [8443]
# Brute force stopped at the door (tasks/security.py; README "No one in who does not belong"):
security_login_rate = "10r/m"  # nginx: sign-in and password-reset requests per address ("1r/s" form); None: off
security_login_burst = 5  # ... that many more at once before 429 (a person mistyping never gets there)
security_rate_limit = True  # Mattermost's own rate limiter on every route, keyed on the client's real address
security_rate_per_sec = 10  # its requests per second per address (per session once signed in: RateLimitSettings)
security_rate_burst = 100  # ... and at once
fail2ban = True  # ban addresses that fail SSH, Mattermost's sign-in or the login limit (nftables, fail2ban's own table)
fail2ban_max_retry = 5  # failures within fail2ban_find_time that ban an address
fail2ban_find_time = 600  # seconds
fail2ban_ban_time = 3600  # seconds; bans expire (a returning address is banned longer each time)
firewall_never_ban = []  # addresses/networks never banned nor limited, beside the workstation's own (as SSH sees it)
security_hardening = True  # sshd, login.defs, sysctl and more lynis counts (README "Hardening (lynis)"); False: drop-ins removed
security_lynis_minimum = 75  # `make security-report` fails below this lynis hardening index
security_scan_address = None  # the address `make security-report` probes ports on from here; None: the inventory's
security_report_accept = []  # report items (by id) accepted as they are, e.g. ["mfa"]
# Move SSH from root to a named sudo user, key-only (see tasks/ssh_access.py for the safe order):
ssh_admin_user = None  # e.g. "ops": created with ssh_admin_keys and passwordless sudo; password logins off
ssh_admin_keys = []  # public keys ("ssh-ed25519 AAAA... you@laptop") allowed to log in as ssh_admin_user
ssh_disable_root = False  # PermitRootLogin no - accepted only once inventory.py connects as ssh_admin_user

# --- Channels, users and custom emoji (declared housekeeping; see tasks/housekeeping.py) ----------
mattermost_channels_archive = []  # "team:channel" to archive (reversible: mmctl channel unarchive)
mattermost_channels_delete = []  # "team:channel" to delete permanently, posts included (needs the confirmation below)
mattermost_users_create = []  # {"username": "bob", "email": "bob@example.org"}: the user sets a password via e-mail
mattermost_users_deactivate = []  # usernames to deactivate (offboarding: their sessions are revoked)
mattermost_users_erase = []  # usernames to erase permanently with all their posts (right to erasure)
mattermost_confirm_permanent_deletion = False  # must be True for deletions and erasures to happen (a backup comes first)
mattermost_emoji_dir = "emoji"  # folder on the workstation: each PNG/JPEG/GIF (<=512 KiB) becomes :file-name:
mattermost_stale_days = 180  # `make channels` marks a channel stale after this many days without a post
mattermost_retention_days = None  # `make retention`: posts and files older than this are deleted (opt-in)

# --- Where things live on the server -------------------------------------------------------
mattermost_user = "mattermost"  # system user the service runs as
mattermost_install_dir = "/opt/mattermost"  # the operator's path: a link to the release in use
mattermost_releases_dir = "/opt/mattermost-releases"  # one read-only folder per release version
mattermost_state_dir = "/var/lib/mattermost"  # config/, data/, plugins/, client-plugins/: survives upgrades
mattermost_log_dir = "/var/log/mattermost"  # mattermost.log and notifications.log
mattermost_socket_dir = "/run/mattermost"  # local-mode socket for `mmctl --local`
# A hand install the deploy's search cannot see (no unit runs it, not in mattermost_install_dir):
# its folder, to adopt it (its config/config.json). None: the search decides (README "Adopting").
mattermost_adopt_path = None
# Ubuntu and Debian releases other than 11, 12 and 13 are not tested: refused unless this is True
# (then every run says so).
allow_untested_os = False

# --- Backups -------------------------------------------------------------------------------------
mattermost_backup_dir = "/var/backups/mattermost"  # database dump, config.json and a data snapshot per backup
mattermost_backup_keep = 7  # newest backups kept (nightly, manual and pre-upgrade alike)
mattermost_backup_schedule = "*-*-* 03:15:00"  # systemd OnCalendar of the nightly backup; None: no timer
fetched_backups_dir = "backups"  # where `make fetch-backup` puts copies on the workstation (git-ignored)
# Off-server copies with restic (encrypted, deduplicated) after every backup. None: local backups only.
# SFTP (a storage box): "sftp:u123@u123.your-storagebox.de:/mattermost"; S3: "s3:https://s3.example.com/bucket/mm";
# REST server: "rest:https://host:8000/mm". The password comes from RESTIC_PASSWORD (environment or secrets.env):
# keep it OUTSIDE the server too - without it the copies cannot be read. S3 keys: AWS_ACCESS_KEY_ID,
# AWS_SECRET_ACCESS_KEY; REST: RESTIC_REST_USERNAME, RESTIC_REST_PASSWORD (same places).
backup_offsite_repository = None
backup_offsite_keep = {"daily": 7, "weekly": 4, "monthly": 12}  # restic forget --prune policy (also "last", "yearly")
backup_offsite_ssh_key = None  # SFTP: path ON THIS WORKSTATION of the private key the server logs in with
backup_offsite_known_hosts = None  # SFTP: the repository host's public key line(s), pinned ("host ssh-ed25519 AAAA...")

# --- OS updates and patch night ------------------------------------------------------------
unattended_upgrades = True  # install security updates daily with unattended-upgrades (security archive only)
unattended_upgrades_reboot_time = None  # e.g. "04:00": unattended-upgrades may reboot then when needed; None: never
# Upgrading any of these means patch night will reboot (shell patterns of package names).
patch_reboot_packages = ["linux-image-*", "linux-headers-*", "libc6", "systemd", "dbus", "intel-microcode",
                         "amd64-microcode", "firmware-*"]
# Services needrestart may list that patch night never restarts at run time (left to the next reboot).
patch_never_restart = ["dbus.service", "systemd-logind.service", "getty@*.service", "user@*.service"]
patch_reboot_timeout = 600  # seconds to wait for the server (SSH, then Mattermost) after a reboot
# e.g. 7: patch night upgrades Mattermost only after a passed `make upgrade-rehearsal` of that version
# within 7 days; None: no rehearsal needed
patch_require_rehearsal_days = None
reports_dir = "reports"  # where patch night writes its dated summaries on the workstation (git-ignored)

# --- PostgreSQL ---------------------------------------------------------------------------------
postgresql_db_name = "mattermost"  # database, as in Mattermost's install guide
postgresql_db_user = "mmuser"  # role, as in Mattermost's install guide
# True: the password must come from MATTERMOST_DB_PASSWORD on the workstation (the run stops
# when it is unset). False: taken from there when set, else generated once on the server.
postgresql_password_from_env = False

# --- Which part this server plays (see README "When one server is not enough") ----------------------
# "all": Mattermost and its PostgreSQL here. "app": Mattermost here, the database at db_host (a server this
# deploy runs with mattermost_role "database", or a managed PostgreSQL). "database": PostgreSQL for the
# Mattermost servers in db_clients. Split roles need MATTERMOST_DB_PASSWORD on the workstation.
mattermost_role = "all"
db_host = None  # app: the database server's name or private address, as its certificate names it
db_port = 5432  # app: its port
db_ca_file = None  # app: the CA that signed its certificate (a managed service's CA file); None: the deploy's own CA
db_maintenance_database = "postgres"  # app: where CREATE/DROP DATABASE connect (a managed service may say "defaultdb")
db_move_method = "auto"  # app: "replication" (logical, short wait), "dump" (pg_dump | pg_restore while stopped), "auto"
db_move_source_address = None  # app: this server's private address; `make move-database` lets the database server copy from it
db_listen_address = None  # database: the private IP address PostgreSQL listens on (never a public one)
db_server_name = None  # database: the name in its certificate, as the app servers' db_host says; None: the address
db_clients = []  # database: the Mattermost servers' private addresses allowed in (pg_hba and firewall)
db_ca_dir = None  # the deploy's own CA for the database's TLS, on this workstation; None: .local/db-ca (git-ignored)

# --- Uploaded files in an S3-compatible bucket (see README "When the disk is not enough") -----------------
# Mattermost's key: MATTERMOST_S3_ACCESS_KEY_ID and MATTERMOST_S3_SECRET_ACCESS_KEY (environment or secrets.env);
# a read-only key for backups: MATTERMOST_S3_BACKUP_ACCESS_KEY_ID, MATTERMOST_S3_BACKUP_SECRET_ACCESS_KEY.
files_store = "local"  # "local" (the data folder) or "s3"; `make move-files` moves existing files between them
files_s3_bucket = None  # the bucket (made beforehand: Mattermost's key need not be allowed to create buckets)
files_s3_endpoint = None  # host[:port], no https:// - e.g. "fsn1.your-objectstorage.com"
files_s3_region = ""  # when the provider wants one
files_s3_ssl = True  # https to the endpoint
files_s3_path_prefix = ""  # a folder in the bucket for Mattermost's files
files_s3_ca_file = None  # PEM of a private CA on this workstation (a store you run); added to the server's trust store
files_s3_request_timeout_ms = 300000  # each upload must reach the bucket within this (Mattermost's 30000 is too short)

# --- Coming from MySQL/MariaDB (an old hand install; see README "Coming from a hand-made server") ----------
# Tables in the MySQL database that Mattermost did not make (plugins'): "refuse" (the plan names them and the
# move waits), "copy" (pgloader creates and fills them in PostgreSQL as they are) or "leave" (not copied).
db_migrate_extra_tables = "refuse"

# --- nginx ------------------------------------------------------------------------------------------
nginx_client_max_body_size = "50M"  # largest upload through the proxy (Mattermost asks at least 50M)
nginx_hsts_max_age = 63072000  # Strict-Transport-Security max-age in seconds (2 years)
# TLS from ACME (Let's Encrypt): set an e-mail to obtain and renew a certificate for mattermost_domain with
# certbot (webroot through nginx). A failed issuance stops the run; the self-signed certificate keeps serving.
acme_email = None
acme_directory_url = "https://acme-v02.api.letsencrypt.org/directory"  # staging or a private ACME CA work too
acme_server_ca = None  # PEM of the CA behind the ACME server's own HTTPS, when it is private (e.g. step-ca)
# Certificate and key already on the server (e.g. from your CA). Empty: ACME when acme_email is set, else self-signed.
nginx_tls_certificate = ""
nginx_tls_certificate_key = ""
