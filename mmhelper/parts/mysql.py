"""MySQL and MariaDB as the old hand installs used them: the DataSource in Go's MySQL form,
the command-line client with the password in a root-only defaults file (never on a command
line), the dump, and what the server holds.
"""

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import urllib.parse

from mmhelper.parts.common import Failure
from mmhelper.parts.proc import pipe

# Where Debian's MariaDB and MySQL listen by default when a DataSource says tcp(localhost).
DEFAULT_SOCKETS = ("/run/mysqld/mysqld.sock", "/var/run/mysqld/mysqld.sock")


def parse_mysql_datasource(value):
    """Go's MySQL DSN, as Mattermost reads it (github.com/go-sql-driver/mysql ParseDSN):
    `[user[:password]@][net[(addr)]]/dbname[?params]`. The last '/' starts the database
    (a password or a socket path may hold '/'), the last '@' before it ends the
    credentials, the first ':' splits user and password. None when it is not that form."""
    value = value or ""
    if "://" in value:
        return None
    slash = value.rfind("/")
    if slash < 0:
        return None
    head, tail = value[:slash], value[slash + 1:]
    database, _, params = tail.partition("?")
    user = password = ""
    at = head.rfind("@")
    if at >= 0:
        user, _, password = head[:at].partition(":")
        head = head[at + 1:]
    match = re.fullmatch(r"(?P<net>[a-z0-9]*)(?:\((?P<addr>[^)]*)\))?", head)
    if not match or not database:
        return None
    net, addr = match.group("net") or "tcp", match.group("addr") or ""
    out = {"user": user, "password": password, "database": database, "params": params, "net": net,
           "host": None, "port": 3306, "socket": None}
    if net == "unix":
        out["socket"] = addr or DEFAULT_SOCKETS[0]
        out["host"] = "localhost"
    elif net.startswith("tcp"):
        host, _, port = addr.rpartition(":") if addr.count(":") == 1 or addr.startswith("[") else (addr, "", "")
        out["host"] = (host or addr or "127.0.0.1").strip("[]")
        out["port"] = int(port) if port.isdigit() else 3306
    else:
        return None
    return out


def is_local(ds):
    return bool(ds) and (ds["socket"] is not None or ds["host"] in ("localhost", "127.0.0.1", "::1"))


def public_parts(ds):
    """The DataSource without its password, for the workstation and the reports."""
    return {k: v for k, v in (ds or {}).items() if k != "password"}


@contextlib.contextmanager
def defaults_file(ds):
    """A [client] option file holding the login (0600, in a private temporary folder):
    the mysql tools read the password from it, so it never shows in `ps`."""
    folder = tempfile.mkdtemp(prefix="mm-mysql-")
    path = os.path.join(folder, "client.cnf")
    lines = ["[client]", f"user={_option(ds['user'])}", f"password={_option(ds['password'])}"]
    if ds["socket"]:
        lines.append(f"socket={_option(ds['socket'])}")
    else:
        lines += [f"host={_option(ds['host'])}", f"port={ds['port']}", "protocol=TCP"]
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(lines) + "\n")
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _option(value):
    """A value in a MySQL option file: quoted, with backslashes and quotes escaped."""
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def client_command():
    for name in ("mariadb", "mysql"):
        if shutil.which(name):
            return name
    raise Failure("no MySQL client on the server (the deploy installs mariadb-client): run `make deploy` first")


def query(ds, sql, database=True, timeout=600):
    """Rows of `sql` as lists of strings (tab-separated batch output; NULL prints as NULL)."""
    with defaults_file(ds) as cnf:
        cmd = [client_command(), f"--defaults-extra-file={cnf}", "--batch", "--skip-column-names",
               "--default-character-set=utf8mb4", *( [ds["database"]] if database else []), "-e", sql]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise Failure(f"MySQL refused `{sql[:80]}`: {result.stderr.strip()[-300:]}")
    return [line.split("\t") for line in result.stdout.splitlines()]


@contextlib.contextmanager
def rows_of(ds, sql):
    """Stream the rows of a query: an iterator of tab-split lines (the values must not hold
    tabs or newlines: the digests select hex)."""
    with defaults_file(ds) as cnf:
        cmd = [client_command(), f"--defaults-extra-file={cnf}", "--batch", "--skip-column-names", "--quick",
               "--default-character-set=utf8mb4", ds["database"], "-e", sql]
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
            try:
                yield (line.rstrip("\n").split("\t") for line in proc.stdout)
            finally:
                proc.stdout.close()
                status = proc.wait()
                err.seek(0)
                message = err.read().decode(errors="replace").strip()[-300:]
            if status != 0:
                raise Failure(f"MySQL refused `{sql[:80]}`: {message}")


def server_version(ds):
    return query(ds, "SELECT VERSION();", database=False)[0][0]


def auth_plugin(ds):
    """How the DataSource's user authenticates, from the server's own account definition
    (`SHOW CREATE USER CURRENT_USER()`, allowed for one's own account). None if unknown."""
    try:
        text = " ".join(" ".join(row) for row in query(ds, "SHOW CREATE USER CURRENT_USER();", database=False))
    except Failure:
        return None
    return plugin_of(text)


def plugin_of(create_user):
    """The plugin named in a CREATE USER statement (MySQL: IDENTIFIED WITH 'p'; MariaDB:
    IDENTIFIED VIA p; a bare IDENTIFIED BY PASSWORD is the native password)."""
    match = re.search(r"IDENTIFIED\s+(?:WITH|VIA)\s+[`'\"]?([A-Za-z0-9_]+)", create_user, re.I)
    if match:
        return match.group(1).lower()
    if re.search(r"IDENTIFIED\s+BY\s+PASSWORD", create_user, re.I):
        return "mysql_native_password"
    return None


def tables(ds):
    """{table: {"rows": estimate, "bytes": data+index}} of the database's base tables."""
    rows = query(ds, "SELECT TABLE_NAME, IFNULL(TABLE_ROWS, 0), IFNULL(DATA_LENGTH, 0) + IFNULL(INDEX_LENGTH, 0) "
                     "FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE';")
    return {name: {"rows": int(rows_), "bytes": int(size)} for name, rows_, size in rows}


def columns(ds, table):
    """[(column, data type, column type)] in table order."""
    rows = query(ds, "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE FROM information_schema.COLUMNS "
                     f"WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '{table}' ORDER BY ORDINAL_POSITION;")
    return [tuple(r) for r in rows]


def dump(ds, dest):
    """mysqldump of the whole database in one consistent snapshot (--single-transaction:
    InnoDB, no lock), through gzip --rsyncable as the PostgreSQL dumps, into a root-only file.
    Restored with `gunzip -c FILE | mysql DB`."""
    dumper = "mariadb-dump" if shutil.which("mariadb-dump") else "mysqldump"
    with defaults_file(ds) as cnf:
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            (status, error), (gzip_status, gzip_error) = pipe(
                [dumper, f"--defaults-extra-file={cnf}", "--single-transaction", "--quick", "--hex-blob",
                 "--default-character-set=utf8mb4", "--routines", "--no-tablespaces", ds["database"]],
                ["gzip", "--rsyncable", "-6", "-c"], subprocess.DEVNULL, f)
    if status != 0:
        raise Failure(f"{dumper} of {ds['database']} failed: {error}")
    if gzip_status != 0:
        raise Failure(f"compressing the dump of {ds['database']} failed: {gzip_error}")


def quote(value):
    return urllib.parse.quote(str(value), safe="")


# What pgloader's connection-string grammar reads (src/parsers/command-db-uri.lisp): a socket
# path of these characters only, ended by ':' (`unix:/run/mysqld/mysqld.sock:/db`); a password
# is not URL-decoded (so it is never in the string: MYSQL_PWD, below).
SOCKET_PATH = re.compile(r"^[A-Za-z0-9/._-]+$")
NAME = re.compile(r"^[A-Za-z0-9_.$-]+$")


def url(ds, scheme="mysql"):
    """pgloader's connection string for the DataSource, without the password: pgloader reads
    it from MYSQL_PWD when the string has none (command-mysql.lisp), so no special character of
    it needs a form pgloader would decode (it decodes none: measured, a URL-encoded password is
    sent as it is and refused). A Unix socket is `unix:PATH:` (the ':' ends the path; with
    `/` pgloader took the database name as part of the path and read the rest as an SQLite
    file). Measured on Debian's pgloader 3.6.9 (12) and 3.6.2 (11)."""
    for what, value, pattern in (("user", ds["user"], NAME), ("database", ds["database"], NAME)):
        if not pattern.match(value or ""):
            raise Failure(f"the MySQL {what} {value!r} has characters pgloader's connection string cannot carry")
    if ds["socket"]:
        if not SOCKET_PATH.match(ds["socket"]):
            raise Failure(f"the MySQL socket path {ds['socket']!r} has characters pgloader cannot read (letters, digits "
                          "and / . _ - only): give MariaDB a socket path without them, or let it listen on 127.0.0.1")
        return f"{scheme}://{ds['user']}@unix:{ds['socket']}:/{ds['database']}"
    return f"{scheme}://{ds['user']}@{ds['host']}:{ds['port']}/{ds['database']}"
