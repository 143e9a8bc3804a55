"""Where the database lives: the server's role (Mattermost and PostgreSQL together, the
Mattermost server of a database elsewhere, or the database server of others), and the
TLS that joins them.

- "all" (the default): today's single server, PostgreSQL on the same machine over loopback.
- "app": Mattermost connects to `db_host` with `sslmode=verify-full` (lib/pq checks the CA
  and the name: measured in ../shared/reference/s3-and-remote-database.md, section 4) and
  a password from MATTERMOST_DB_PASSWORD; the server keeps only PostgreSQL's client.
- "database": Debian's PostgreSQL for the "app" servers named in `db_clients`, listening on
  its private address, TLS with a certificate from the deploy's own CA (kept on the
  workstation in `db_ca_dir`, git-ignored), scram-sha-256, pg_hba and the firewall open to
  those clients alone.

A managed PostgreSQL is an "app" server whose `db_host` is the provider's and whose
`db_ca_file` is the provider's CA: no superuser there, so the deploy only logs in as the
role it is given (see README "When one server is not enough").
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path

ROLES = ("all", "app", "database")
HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class DbPlace:
    role: str = "all"
    host: str | None = None  # app: the database server's name as in its certificate
    port: int = 5432
    ca_file: str | None = None  # app: the CA to trust (workstation path); None: the deploy's own CA
    listen_address: str | None = None  # database: the private address PostgreSQL listens on
    server_name: str | None = None  # database: the name in its certificate (default: listen_address)
    clients: tuple = field(default_factory=tuple)  # database: addresses of the Mattermost servers
    ca_dir: str = str(ROOT / ".local" / "db-ca")
    maintenance_db: str = "postgres"  # app: the database to connect to for CREATE/DROP DATABASE
    move_source_address: str | None = None  # app: this server's private address, for `make move-database`
    own_ca: bool = True  # app: the database's certificate comes from the deploy's CA (a server it runs)
    move_method: str = "auto"  # app: "auto", "replication" or "dump" for `make move-database`

    @property
    def remote(self) -> bool:
        """Mattermost's database is on another machine (this is an "app" server)."""
        return self.role == "app"

    @property
    def runs_mattermost(self) -> bool:
        return self.role in ("all", "app")

    @property
    def runs_postgresql(self) -> bool:
        return self.role in ("all", "database")

    @property
    def certificate_name(self) -> str | None:
        return self.server_name or self.listen_address


def _is_host(value) -> bool:
    if not value:
        return False
    try:
        ipaddress.ip_address(str(value))
        return True
    except ValueError:
        return bool(HOST.match(str(value)))


def _is_network(value) -> bool:
    try:
        ipaddress.ip_network(str(value), strict=False)
        return True
    except ValueError:
        return False


def place_settings(get, password: str | None) -> tuple[DbPlace, list[str]]:
    """The group from host data (`get(key)`), and its problems (each says what to do)."""
    problems: list[str] = []
    role = get("mattermost_role") or "all"
    if role not in ROLES:
        return DbPlace(), [f"mattermost_role must be one of {', '.join(ROLES)}, not {role!r}"]
    port = get("db_port") or 5432
    if not isinstance(port, int) or not 0 < port < 65536:
        problems.append(f"db_port must be a port number, not {port!r}")
    ca_dir = str(Path(str(get("db_ca_dir") or DbPlace.ca_dir)).expanduser())
    if role == "all":
        for key in ("db_host", "db_listen_address", "db_clients"):
            if get(key):
                problems.append(f"{key} is set but mattermost_role is \"all\" (Mattermost and PostgreSQL on one "
                                f"server): set mattermost_role to \"app\" or \"database\", or remove {key}")
        return DbPlace(port=port, ca_dir=ca_dir), problems
    if not password:
        problems.append(f"mattermost_role {role!r}: the database password must be the same on both servers, so it "
                        "comes from this workstation - set MATTERMOST_DB_PASSWORD (environment or secrets.env)")
    if role == "app":
        host = get("db_host")
        if not _is_host(host):
            problems.append(f"mattermost_role \"app\" needs db_host: the database server's name or address as its "
                            f"certificate names it, not {host!r}")
        ca_file = get("db_ca_file") or None
        ca = Path(str(ca_file)).expanduser() if ca_file else Path(ca_dir) / "ca.crt"
        if ca_file and (not ca.is_file() or "BEGIN CERTIFICATE" not in ca.read_text(errors="replace")):
            problems.append(f"db_ca_file {ca_file!r} is not a PEM certificate file on this workstation")
        method = get("db_move_method") or "auto"
        if method not in ("auto", "replication", "dump"):
            problems.append(f"db_move_method must be auto, replication or dump, not {method!r}")
        source = get("db_move_source_address") or None
        if source is not None:
            try:
                ipaddress.ip_address(str(source))
            except ValueError:
                problems.append(f"db_move_source_address must be this server's private IP address, not {source!r}")
        return DbPlace(role=role, host=str(host or ""), port=port, ca_file=str(ca), ca_dir=ca_dir,
                       maintenance_db=str(get("db_maintenance_database") or "postgres"),
                       move_source_address=str(source) if source else None, move_method=method,
                       own_ca=not get("db_ca_file")), problems
    listen = get("db_listen_address")
    try:
        ipaddress.ip_address(str(listen))
    except ValueError:
        problems.append(f"mattermost_role \"database\" needs db_listen_address: the private IP address PostgreSQL "
                        f"listens on (never a public one), not {listen!r}")
    name = get("db_server_name") or None
    if name and not _is_host(name):
        problems.append(f"db_server_name must be a host name or address, not {name!r}")
    clients = tuple(str(c) for c in (get("db_clients") or []))
    if not clients or not all(_is_network(c) for c in clients):
        problems.append(f"mattermost_role \"database\" needs db_clients: the Mattermost servers' private addresses "
                        f"(or networks) allowed to connect, not {list(clients)!r}")
    if port != 5432:
        problems.append("db_port other than 5432 is not supported for a database server this deploy runs")
    return DbPlace(role=role, port=port, listen_address=str(listen or ""), server_name=name, clients=clients,
                   ca_dir=ca_dir), problems


LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "")


def move_pending(s, now: dict) -> bool:
    """The settings put the database elsewhere ("app") but Mattermost still uses its local one:
    `make move-database` is due, and until then the deploy leaves the DataSource alone."""
    if not s.place.remote:
        return False
    engine = now.get("database_engine") or {}
    ds = engine.get("datasource") or {}
    return engine.get("engine") == "postgres" and (ds.get("host") or "") in LOCAL_HOSTS
