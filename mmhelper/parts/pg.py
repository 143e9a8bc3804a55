"""PostgreSQL as the deploy reaches it: the local cluster as its postgres superuser, or the
remote one (mattermost_role "app") as Mattermost's own role over verify-full TLS, the
password in the environment and never in argv; quoting; the databases the jobs make.
"""

import os
import subprocess

from mmhelper.parts.common import Failure, read_json, read_password, run

# On a Mattermost server whose database is elsewhere (mattermost_role "app"), the deploy
# writes where it is (no password: that stays in the root-only password file).
REMOTE_DB_FILE = "/etc/mattermost/db-remote.json"


def remote_db():
    """{host, port, user, database, sslrootcert, maintenance_db, password_file} when this
    server's database is on another machine, else None (the local cluster)."""
    return read_json(REMOTE_DB_FILE)


def pg_command(program, database, *args):
    """(argv, env) for a PostgreSQL client program against Mattermost's database server: the
    local cluster as the postgres superuser, or the remote one as Mattermost's own role over
    TLS with the CA and the name checked (sslmode=verify-full), its password in the
    environment, never in argv. "postgres" means the maintenance database."""
    conn = remote_db()
    if not conn:
        return ["runuser", "-u", "postgres", "--", program, *args, "-d", database], None
    password = read_password(conn["password_file"])
    if password is None:
        raise Failure(f"{conn['password_file']} is missing: run the full deploy (MATTERMOST_DB_PASSWORD)")
    env = client_env(conn, password)
    if database == "postgres":
        database = conn.get("maintenance_db") or "postgres"
    return [program, *args, "-d", database], env


def psql_as_postgres(sql, database="postgres", port=None):
    """SQL as the database's administrator: the postgres superuser on the local cluster, the
    owner role on a remote one (which may create, rename and drop its own databases)."""
    if port:
        return run(["runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1",
                    "-d", database, "-p", str(port)], input=sql)
    cmd, env = pg_command("psql", database, "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1")
    return run(cmd, input=sql, env=env)


def ident(name):
    """A PostgreSQL identifier, quoted."""
    return '"' + name.replace('"', '""') + '"'


def literal(text):
    """A PostgreSQL string literal, quoted (standard_conforming_strings is on)."""
    return "'" + text.replace("'", "''") + "'"


def terminate_connections(database_name):
    psql_as_postgres(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     f"WHERE datname = {literal(database_name)} AND pid <> pg_backend_pid();")


def put_database_back(kept, db):
    """Replace database `db` by the copy `kept` (a rename: instant, whatever the size)."""
    terminate_connections(db)
    psql_as_postgres(f"DROP DATABASE IF EXISTS {ident(db)};")
    psql_as_postgres(f"ALTER DATABASE {ident(kept)} RENAME TO {ident(db)};")


def database_exists(name):
    return bool(psql_as_postgres(f"SELECT 1 FROM pg_database WHERE datname = {literal(name)};").stdout.strip())


def psql_login_ok(spec, password):
    env = client_env(spec, password, sslmode="disable", timeout=5, database=spec["database"])
    return subprocess.run(["psql", "-X", "-q", "-t", "-A", "-c", "SELECT 1"], env=env, capture_output=True).returncode == 0


def remote_login(remote, password):
    """True when Mattermost's role logs in to its remote database (verify-full), else the
    server's own words for why not."""
    env = client_env(remote, password, timeout=5, database=remote["database"])
    result = subprocess.run(["psql", "-X", "-q", "-t", "-A", "-c", "SELECT 1"], env=env, capture_output=True, text=True)
    return True if result.returncode == 0 else (result.stderr.strip()[-300:] or "psql failed")


def client_env(conn, password, sslmode="verify-full", timeout=10, app="mattermost-deploy", database=None):
    """libpq's environment for a login to `conn` ({host, port, user[, sslrootcert]}): the
    password there, never in argv; TLS with the CA and the name checked unless told."""
    env = dict(os.environ, PGHOST=str(conn["host"]), PGPORT=str(conn["port"]), PGUSER=conn["user"],
               PGSSLMODE=sslmode, PGPASSWORD=password, PGCONNECT_TIMEOUT=str(timeout), PGAPPNAME=app)
    if conn.get("sslrootcert") and sslmode.startswith("verify"):
        env["PGSSLROOTCERT"] = conn["sslrootcert"]
    if database:
        env["PGDATABASE"] = database
    return env


def create_database(name, owner, port=None):
    """An empty database as Mattermost's install guide makes it (UTF-8, the C.UTF-8 collation,
    from template0), owned by Mattermost's role."""
    psql_as_postgres(f"CREATE DATABASE {ident(name)} WITH OWNER {ident(owner)} ENCODING 'UTF8' "
                     "LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8' TEMPLATE template0;", port=port)


# What people (and their bots) wrote: not Mattermost's own system messages (joins, header
# changes) nor the notices a server posts by itself (5.x posts a warn_metric_status at start).
PEOPLES_POSTS = "type NOT LIKE 'system\\_%' AND type <> 'warn_metric_status'"


def posts_since(sql, since_ms):
    """How many posts people wrote after `since_ms` (a job's switch): what a way back would
    lose. `sql` runs a query on the database Mattermost uses now and returns its text."""
    return int((sql(f"SELECT count(*) FROM posts WHERE createat > {int(since_ms)} AND {PEOPLES_POSTS};") or "0")
               .strip() or 0)


def files_named(database):
    """(uploads {path: size}, thumbnails and previews [path]) the live FileInfo rows name."""
    out = psql_as_postgres("SELECT path, size, thumbnailpath, previewpath FROM fileinfo WHERE deleteat = 0;",
                           database).stdout
    uploads, extras = {}, []
    for line in out.splitlines():
        path, size, thumb, preview = (line.split("|") + ["", "", "", ""])[:4]
        uploads[path] = int(size) if size.isdigit() else None
        extras += [p for p in (thumb, preview) if p]
    return uploads, extras
