"""A database server for other machines (mattermost_role "database"): Debian's PostgreSQL,
listening on its private address and loopback only, TLS with a certificate from the deploy's
own CA (tasks/db_tls.py) naming the address the Mattermost servers use, scram-sha-256, and
pg_hba and the firewall open to the Mattermost servers in `db_clients` alone - over TLS
only. Mattermost's role may create its own databases (a restore run from the Mattermost
server renames and creates them). Its own unattended upgrades, needrestart and SSH settings
as on every server of this deploy; its backups are the Mattermost server's nightly dump
(one backup holds the database and the files, dumped first, as on one server).
"""

from __future__ import annotations

import json

from pyinfra import host
from pyinfra.api import StringCommand, operation

from mmhelper.parts.config import password_digest
from tasks import database, firewall, hardening, os_updates, security, ssh_access
from tasks.base import helper_bundle, packages_installed
from tasks.common import HELPER, current, managed_file, packages, read_state, settings
from tasks.db_tls import ensure_ca, server_certificate
from tasks.settings import Settings

TLS_DIR = "/etc/postgresql/mattermost-tls"
CERT = f"{TLS_DIR}/server.crt"
KEY = f"{TLS_DIR}/server.key"
CA = f"{TLS_DIR}/ca.crt"
CONF_NAME = "conf.d/50-mattermost-deploy.conf"
HBA_NAME = "pg_hba.conf"


def query(s: Settings, os_updates_mode: str | None = None) -> str:
    """The state query of a database server: packages, the managed files, the role and database."""
    return json.dumps({
        "packages": packages(s),
        "user": "postgres",
        "paths": [HELPER, CERT, CA, os_updates.NEEDRESTART_CONF, os_updates.AUTO_UPGRADES, os_updates.UNATTENDED_CONF,
                  firewall.CONF, firewall.STOP_DROPIN, ssh_access.SUDOERS, ssh_access.SSHD_DROPIN,
                  *security.PATHS, *hardening.PATHS],
        "file_keys": hardening.query_keys(),
        "install_dir": "/nonexistent/mattermost", "releases_dir": "/nonexistent/releases",
        "config_file": "/nonexistent/config.json",
        "password_file": s.password_file,
        "secret_files": [KEY],
        "db": {"user": s.db_user, "name": s.db_name},
        "postgresql_files": [CONF_NAME, HBA_NAME],
        "ssh_admin_user": s.ssh.admin_user,
        "os": os_updates_mode and {"refresh": os_updates_mode == "refresh",
                                   "lists_dir": f"{s.deploy_state_dir}/apt-lists",
                                   "lock_file": s.patch_lock_file, "state_file": s.patch_state_file},
    }, sort_keys=True)


def read_state_of(s: Settings, os_updates_mode: str | None = None) -> dict:
    now = read_state(query(s, os_updates_mode))
    pg = now.get("postgresql") or {}
    if pg.get("conf_dir"):  # the cluster's files by their real path, for managed_file
        for name, info in (pg.get("files") or {}).items():
            now["paths"][f"{pg['conf_dir']}/{name}"] = info
    return now


def conf_content(s: Settings) -> str:
    return f"""# Managed by the Mattermost deploy - local changes are overwritten on the next run.
# PostgreSQL for the Mattermost servers {", ".join(s.place.clients)}: on loopback and the private address
# only, TLS from the deploy's CA, passwords as SCRAM-SHA-256.
listen_addresses = 'localhost,{s.place.listen_address}'
ssl = on
ssl_cert_file = '{CERT}'
ssl_key_file = '{KEY}'
ssl_min_protocol_version = 'TLSv1.2'
password_encryption = 'scram-sha-256'
"""


def hba_content(s: Settings) -> str:
    lines = [
        "# Managed by the Mattermost deploy - local changes are overwritten on the next run.",
        "# TYPE   DATABASE  USER  ADDRESS  METHOD",
        "local    all       postgres       peer",
        "local    all       all            peer",
        "host     all       all   127.0.0.1/32  scram-sha-256",
        "host     all       all   ::1/128       scram-sha-256",
        f"# The Mattermost servers: TLS only, {s.db_user} only, its database and the maintenance one.",
    ]
    for client in s.place.clients:
        network = client if "/" in client else (f"{client}/128" if ":" in client else f"{client}/32")
        lines.append(f"hostssl  {s.db_name},postgres  {s.db_user}  {network}  scram-sha-256")
    lines.append("# Everything else, from anywhere: refused.")
    lines.append("host     all       all   0.0.0.0/0     reject")
    lines.append("host     all       all   ::/0          reject")
    return "\n".join(lines) + "\n"


@operation()
def tls_key(content: str):
    """The server's TLS key (root:postgres 0640, as PostgreSQL accepts a root-owned key),
    compared by digest, never printed."""
    now = current()
    digest = (now.get("secrets") or {}).get(KEY)
    if digest and digest == password_digest(content, now["password"]["salt"]):
        host.noop("the database server's TLS key is in place")
        return
    yield StringCommand("install", "-d", "-m", "0755", "-o", "root", "-g", "root", TLS_DIR)
    from io import StringIO

    from pyinfra.api import FileUploadCommand
    yield StringCommand("install", "-m", "0600", "-o", "root", "-g", "root", "/dev/null", KEY)
    yield FileUploadCommand(StringIO(content), KEY)
    yield StringCommand("chown", "root:postgres", KEY, "&&", "chmod", "640", KEY)


@operation()
def postgresql_applied(restart: bool, reload: bool):
    """Restart PostgreSQL when its listen address or TLS changed, reload when only pg_hba did."""
    if restart:
        yield StringCommand("systemctl", "restart", "postgresql")
    elif reload:
        yield StringCommand("systemctl", "reload", "postgresql")
    else:
        host.noop("PostgreSQL runs with its current settings")
        return
    yield StringCommand("systemctl", "is-active", "--quiet", "postgresql")


def configure():
    s, now = settings(), current()
    packages_installed(name="Install PostgreSQL (the database server of "
                            f"{', '.join(s.place.clients)})", wanted=packages(s))
    bundle = helper_bundle()
    managed_file(name="Install the deploy's server-side helper", path=HELPER, content=bundle, mode=0o755,
                 summary=f"the deploy's server-side helper, built from mmhelper/ ({len(bundle.encode())} bytes)")
    password = database.password_in_place(name="Keep the database password on the server (root only)")
    pg = now.get("postgresql") or {}
    if not pg.get("conf_dir"):
        raise RuntimeError(f"{s.host}: Debian offers no postgresql package here (apt-get update?)")
    name = s.place.certificate_name
    cert_pem, key_pem = server_certificate(s.place.ca_dir, name)
    key = tls_key(name=f"Place the database server's TLS key (from the deploy's CA, for {name})", content=key_pem)
    cert = managed_file(name=f"Place the database server's TLS certificate (names {name})", path=CERT,
                        content=cert_pem)
    # The deploy's CA: `make move-database` checks the Mattermost server's certificate with it.
    managed_file(name="Place the deploy's CA certificate (for the move's replication link)", path=CA,
                 content=ensure_ca(s.place.ca_dir).read_text())
    conf = managed_file(name=f"PostgreSQL listens on localhost and {s.place.listen_address}, TLS on, SCRAM passwords",
                        path=f"{pg['conf_dir']}/{CONF_NAME}", content=conf_content(s), user="postgres",
                        group="postgres")
    hba = managed_file(name=f"pg_hba: {s.db_user} from {', '.join(s.place.clients)} over TLS only, nothing else "
                            "from the network", path=f"{pg['conf_dir']}/{HBA_NAME}", content=hba_content(s),
                       user="postgres", group="postgres", mode=0o640)
    postgresql_applied(name="Apply PostgreSQL's settings",
                       restart=key.will_change or cert.will_change or conf.will_change, reload=hba.will_change)
    database.role_and_database(name=f"Create the PostgreSQL role {s.db_user} and database {s.db_name}",
                               password_changes=password.will_change)
    os_updates.configure()
    firewall.configure()
    security.configure()
    hardening.configure()
    ssh_access.configure()
