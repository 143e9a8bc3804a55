"""The database password (generated on the server, root only) and the role and database.
"""

import os
import secrets
import string

from mmhelper.parts.common import Failure, read_password, write_private
from mmhelper.parts.pg import create_database, database_exists, ident, literal, psql_as_postgres, remote_login


def db_password(path):
    """Generate the database password once, on the server, readable by root only."""
    if read_password(path):
        print("database password already present")
        return
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    alphabet = string.ascii_letters + string.digits
    write_private(path, "".join(secrets.choice(alphabet) for _ in range(32)) + "\n")
    print(f"generated a database password in {path} (root only)")


def database(spec):
    """Role with the password from the root-only file (fed on stdin, never on a command
    line), and the database owned by it."""
    password = read_password(spec["password_file"])
    if not password:
        raise Failure(f"{spec['password_file']} is missing or empty: run the full deploy")
    user, name = spec["user"], spec["name"]
    role_exists = psql_as_postgres(f"SELECT 1 FROM pg_roles WHERE rolname = {literal(user)};").stdout.strip()
    verb = "ALTER" if role_exists else "CREATE"
    # CREATEDB for a database server of other machines: a restore there renames and creates
    # databases as this role (there is no superuser on the Mattermost server's side).
    createdb = " CREATEDB" if spec.get("createdb") else ""
    psql_as_postgres(f"{verb} ROLE {ident(user)} WITH LOGIN{createdb} PASSWORD {literal(password)};")
    if spec.get("createdb") and int(psql_as_postgres("SHOW server_version_num;").stdout.strip()) >= 160000:
        # `make move-database` subscribes to the Mattermost server's database as this role.
        psql_as_postgres(f"GRANT pg_create_subscription TO {ident(user)};")
    if not database_exists(name):
        create_database(name, user)
    else:
        psql_as_postgres(f"ALTER DATABASE {ident(name)} OWNER TO {ident(user)};")
    psql_as_postgres(f"GRANT ALL ON SCHEMA public TO {ident(user)};", database=name)
    print(f"role {user} and database {name} are in place")


def db_remote_check(spec):
    """Mattermost's role logs in to its remote database as Mattermost will (verify-full TLS:
    the CA and the server's name checked), or one line saying why not and what to check."""

    password = read_password(spec["password_file"])
    if not password:
        raise Failure(f"{spec['password_file']} is missing or empty: set MATTERMOST_DB_PASSWORD and run the deploy")
    outcome = remote_login(spec, password)
    if outcome is not True:
        raise Failure(f"{spec['user']} cannot log in to {spec['database']} at {spec['host']}:{spec['port']}: {outcome} "
                      "- check that the database server is converged (mattermost_role \"database\", this server in "
                      "its db_clients), that db_host is the name in its certificate, and the password")
    print(f"{spec['user']} logs in to {spec['database']} at {spec['host']}:{spec['port']} (verify-full)")
