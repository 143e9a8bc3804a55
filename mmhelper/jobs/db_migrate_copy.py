"""The mechanics of the MySQL -> PostgreSQL move (mmhelper/jobs/db_migrate.py tells the story):
the schema made by Mattermost's own binary, the copy by pgloader, the check of what arrived.
"""

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time

from mmhelper.parts import db_compare, mysql
from mmhelper.parts.common import Failure, ping
from mmhelper.parts.pg import psql_as_postgres
from mmhelper.parts.proc import heartbeat


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_schema(spec, version, pg_url, work):
    """Mattermost's own binary of the installed version, started once on the empty PostgreSQL
    database (another port, local mode, plugins, jobs and file writes elsewhere or off) until
    it answers - its schema migrations made the tables - then stopped. The live service and
    its MySQL are not touched."""
    release = os.path.join(spec["releases_dir"], version)
    # The service user's own scratch folder (the work folder stays root's: it holds pgloader's
    # command file with the passwords).
    scratch = tempfile.mkdtemp(prefix="mm-schema-")
    os.makedirs(os.path.join(scratch, "data"))
    shutil.copyfile(spec["config_file"], os.path.join(scratch, "config.json"))
    account = pwd.getpwnam(spec["user"])
    for root, dirs, files in os.walk(scratch):
        for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
            os.chown(name, account.pw_uid, account.pw_gid)
    port = free_port()
    env = dict(os.environ, MM_CONFIG=os.path.join(scratch, "config.json"), MM_SQLSETTINGS_DRIVERNAME="postgres",
               MM_SQLSETTINGS_DATASOURCE=pg_url, MM_SERVICESETTINGS_LISTENADDRESS=f"127.0.0.1:{port}",
               MM_SERVICESETTINGS_ENABLELOCALMODE="false", MM_PLUGINSETTINGS_ENABLE="false",
               MM_FILESETTINGS_DIRECTORY=os.path.join(scratch, "data") + "/", MM_LOGSETTINGS_ENABLEFILE="false",
               MM_JOBSETTINGS_RUNJOBS="false", MM_JOBSETTINGS_RUNSCHEDULER="false", MM_CLUSTERSETTINGS_ENABLE="false",
               MM_LOGSETTINGS_ENABLEDIAGNOSTICS="false", MM_SERVICESETTINGS_ENABLESECURITYFIXALERT="false",
               MM_METRICSSETTINGS_ENABLE="false", MM_EMAILSETTINGS_SENDEMAILNOTIFICATIONS="false")
    print(f"  schema: Mattermost {version}'s own binary makes its tables in PostgreSQL (127.0.0.1:{port})", flush=True)
    started = time.time()
    with open(os.path.join(work, "schema.log"), "w") as log:
        proc = subprocess.Popen(["runuser", "-u", spec["user"], "--", os.path.join(release, "bin", "mattermost")],
                                cwd=release, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = started + spec.get("start_timeout", 3600)
            while not ping(f"http://127.0.0.1:{port}/api/v4/system/ping?get_server_status=true")["ok"]:
                if proc.poll() is not None or time.time() > deadline:
                    raise Failure(f"Mattermost {version} did not make its schema in PostgreSQL (see "
                                  f"{os.path.join(work, 'schema.log')}): {_tail(os.path.join(work, 'schema.log'))}")
                time.sleep(0.5)
        finally:
            if proc.poll() is None:
                subprocess.run(["pkill", "-TERM", "-P", str(proc.pid)])
                proc.terminate()
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    subprocess.run(["pkill", "-KILL", "-P", str(proc.pid)])
                    proc.kill()
                    proc.wait()
    shutil.rmtree(scratch, ignore_errors=True)
    print(f"  schema made in {time.time() - started:.1f} s", flush=True)
    return time.time() - started


def _tail(path, lines=3):
    try:
        with open(path, errors="replace") as f:
            return " | ".join(line.strip()[:300] for line in f.readlines()[-lines:])
    except OSError:
        return ""


def pgloader_command(ds, pg, tables, create):
    """A pgloader command file: MySQL's database into PostgreSQL's public schema. `create`
    False: rows only into the tables Mattermost made (truncated first); True: the named
    other tables (plugins') created as pgloader maps them, with their rows. No password in it:
    both come from the environment (MYSQL_PWD, PGPASSWORD; run_pgloader)."""
    source = mysql.url(ds)
    target = mysql.url({**pg, "socket": None}, scheme="postgresql")
    names = ", ".join("'" + t.replace("'", "''") + "'" for t in tables)
    options = ("create tables, create indexes, reset sequences, include drop" if create else "data only, truncate")
    which = f"{'INCLUDING ONLY' if create else 'EXCLUDING'} TABLE NAMES MATCHING {names}\n" if tables else ""
    return (f"LOAD DATABASE\n  FROM {source}\n  INTO {target}\n"
            f"WITH {options}, workers = 2, concurrency = 1, prefetch rows = 1000\n"
            f"{which}ALTER SCHEMA '{ds['database']}' RENAME TO 'public'\n;\n")


# pgloader exits 0 when the MySQL side fails (connect, login, a misread source: copy-database in
# src/load/migrate-database.lisp logs the error and returns) and when rows are rejected: its own
# log is the verdict. Measured on Debian's 3.6.9 and 3.6.2.
FAILURE_MARKS = (" ERROR ", " FATAL ", "KABOOM!", "ESRAP-PARSE-ERROR", "SQLITE-CONNECTION")


def pgloader_failure(log_text):
    """The first line of pgloader's output that says it failed, or None."""
    for line in log_text.splitlines():
        if any(mark in f" {line} " for mark in FAILURE_MARKS):
            return line.strip()[:400]
    return None


def run_pgloader(command, work, label, passwords):
    """pgloader on a command file in the root-only work folder (removed after), the passwords
    in its environment only (MYSQL_PWD, PGPASSWORD: never on a command line or in a file); a
    line every 15 s while it runs. Any ERROR or FATAL line of its output fails the copy, with
    that line."""
    path = os.path.join(work, f"{label}.load")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(command)
    log = os.path.join(work, f"{label}.log")
    env = dict(os.environ, MYSQL_PWD=passwords["mysql"], PGPASSWORD=passwords["postgresql"])
    started = time.time()
    try:
        with heartbeat(f"pgloader ({label})"), open(log, "w") as out:
            status = subprocess.run(["pgloader", "--no-ssl-cert-verification", path], cwd=work, stdout=out,
                                    stderr=subprocess.STDOUT, env=env).returncode
    finally:
        os.unlink(path)
    with open(log, errors="replace") as f:
        said = pgloader_failure(f.read())
    if status != 0 or said:
        raise Failure(f"pgloader failed ({label}, exit {status}): {said or _tail(log, 4)}; its log: {log}")
    return time.time() - started


def copy_with_pgloader(spec, ds, password, work, extra):
    """Rows of Mattermost's tables into the schema it made (MySQL's tables that PostgreSQL
    has no counterpart for are left out of this pass), then the other tables when the
    settings say copy. Mattermost is stopped: nothing writes to MySQL meanwhile."""
    pg = dict(spec["pg_datasource"])
    db = pg["database"]
    made = set(db_compare.pg_tables(db))
    names = {n.lower(): n for n in mysql.tables(ds)}
    only_mysql = sorted(n for low, n in names.items() if low not in made)
    unknown = sorted(set(only_mysql) - set(extra))
    if unknown:
        raise Failure(f"MySQL has tables Mattermost's schema here lacks and the plan did not list: {', '.join(unknown)}")
    for table in sorted(made - set(names)):  # rows the schema run wrote where MySQL has none
        psql_as_postgres(f'TRUNCATE "{table}";', db)
    print(f"  copying {len(made & set(names))} tables with pgloader (Mattermost is stopped)", flush=True)
    passwords = {"mysql": ds["password"], "postgresql": password}
    seconds = run_pgloader(pgloader_command(ds, pg, only_mysql, create=False), work, "copy", passwords)
    if extra and spec["extra_tables"] == "copy":
        print(f"  copying the other tables as they are: {', '.join(extra)}", flush=True)
        seconds += run_pgloader(pgloader_command(ds, pg, extra, create=True), work, "copy-extra", passwords)
    print(f"  copied in {seconds:.1f} s", flush=True)
    return seconds


def verify(spec, ds, schema, extra):
    """What arrived: every table's rows and digest equal on both sides, the schema still the
    one Mattermost made, the uploads the database names present. A report, or Failure."""
    db = spec["pg_datasource"]["database"]
    tables = [t for t in db_compare.pg_tables(db) if t not in {e.lower() for e in extra} or spec["extra_tables"] == "copy"]
    print(f"  checking {len(tables)} tables: rows and a digest of every row on both sides", flush=True)
    report = db_compare.compare(ds, db, tables)
    problems = db_compare.differences(report)
    if schema and db_compare.schema_fingerprint(db, exclude=extra) != schema:
        problems.append("the schema changed during the copy (columns, indexes or constraints)")
    files = db_compare.missing_files(db, spec["data_dir"])
    if files["uploads"]:
        problems.append(f"{len(files['uploads'])} uploaded files the database names are not in {spec['data_dir']} "
                        f"(e.g. {files['uploads'][0]})")
    if problems:
        raise Failure("the copy does not match MySQL: " + "; ".join(problems[:8]))
    rows = sum(entry["postgresql"][0] for entry in report.values())
    print(f"  every table matches: {len(report)} tables, {rows} rows, digests equal; uploads present"
          + (f" ({len(files['thumbnails'])} thumbnails/previews were already missing)" if files["thumbnails"] else ""),
          flush=True)
    return {"tables": len(report), "rows": rows, "missing_thumbnails": len(files["thumbnails"]),
            "digests": {t: e["postgresql"] for t, e in report.items()}}
