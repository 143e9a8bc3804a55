"""MySQL/MariaDB -> PostgreSQL, as one story with a plan and a way back.

plan (nothing changed) -> lock -> backup of the MySQL database (while serving) -> PostgreSQL
role and database -> the schema made by Mattermost's own binary of the SAME version (started
once on PostgreSQL, on another port, then stopped) -> stop -> copy with pgloader (Debian's)
-> verify what arrived (every table's rows and digest, the schema as Mattermost made it, the
uploads present) -> DataSource switched -> start and check health. The MySQL database is
never written: the way back is the saved DataSource (`rollback`). Each step is recorded in a
state file; a killed run continues where it stopped, a failed one puts Mattermost back on
MySQL.

Why migrate at the installed version: both sides then have the same schema version, made by
the same program (the "schema version mismatch" that breaks hand migrations cannot happen),
and every upgrade after it runs on PostgreSQL with the deploy's backups and rollbacks.
"""

import json
import os
import shutil
import time

from mmhelper.jobs.db_migrate_copy import copy_with_pgloader, make_schema, verify
from mmhelper.jobs.engine import Job, Progress, Step, lock_holder, run, take_lock, utc_now
from mmhelper.parts import db_compare, mysql
from mmhelper.parts.common import Failure, free_bytes, read_json, read_password, write_private
from mmhelper.parts.config import build_datasource, get_dotted, write_keys
from mmhelper.parts.pg import create_database, database_exists, ident, posts_since, psql_as_postgres, terminate_connections
from mmhelper.parts.service import start_and_verify, systemctl
from mmhelper.steps.backup import BackupWriter, prune_backups
from mmhelper.steps.database import database as role_and_database

# Authentication plugins Debian's pgloader (3.6, its MySQL client qmynd) can log in with.
PGLOADER_PLUGINS = ("mysql_native_password",)
# Rates measured by bench/old_server.py on this project's 2-core test machine (MB of MySQL
# data+index per second: 370 MB copied by pgloader in 52 s, checked in 15 s; 2026-11-30),
# used for the plan's estimate only.
COPY_MB_PER_S = 7.0
VERIFY_MB_PER_S = 25.0
START_S = 6.0
STEPS = ("backup", "postgresql", "schema", "stop", "copy", "verify", "switch", "start")
SAVED_KEYS = ("SqlSettings.DriverName", "SqlSettings.DataSource", "SqlSettings.DataSourceReplicas",
              "SqlSettings.DataSourceSearchReplicas")


def _config(spec):
    with open(spec["config_file"]) as f:
        return json.load(f)


def source_of(config):
    """(driver, parsed MySQL DataSource or None)."""
    driver = get_dotted(config, "SqlSettings.DriverName")[0]
    return driver, mysql.parse_mysql_datasource(get_dotted(config, "SqlSettings.DataSource")[0]) \
        if driver == "mysql" else None


def installed(spec):
    target = os.path.realpath(spec["install_dir"])
    if os.path.islink(spec["install_dir"]) and os.path.dirname(target) == os.path.realpath(spec["releases_dir"]):
        return os.path.basename(target)
    return None


def plan(spec):
    """What a migration would do and whether it can, changing nothing: JSON on stdout."""
    print(json.dumps(make_plan(spec), sort_keys=True))


def make_plan(spec, locked=False):
    out = {"refusals": [], "warnings": []}
    refuse = out["refusals"].append
    state = read_json(spec["state_file"]) or {}
    out["state"] = {k: state.get(k) for k in ("status", "done", "version", "outage_s", "failed")}
    config = _config(spec)
    driver, ds = source_of(config)
    out["driver"] = driver
    if driver != "mysql":
        out["nothing_to_do"] = f"the database is already {driver or 'PostgreSQL'}"
        return out
    if ds is None:
        refuse("SqlSettings.DataSource is not a MySQL DataSource this deploy can read (user:pw@tcp(host:port)/db?...)")
        return out
    out["source"] = mysql.public_parts(ds)
    version = installed(spec)
    out["version"] = version
    if not version:
        refuse(f"{spec['install_dir']} is not a release folder of the deploy: run `make deploy` first (it adopts "
               "the hand install and keeps MySQL)")
    if any(get_dotted(config, k)[0] for k in SAVED_KEYS[2:]):
        refuse("MySQL read replicas are configured (SqlSettings.DataSourceReplicas): remove them before migrating")
    try:
        out["server"] = mysql.server_version(ds)
        tables = mysql.tables(ds)
    except Failure as e:
        refuse(f"MySQL does not answer with the DataSource's login: {e}")
        return out
    plugin = mysql.auth_plugin(ds)
    out["auth_plugin"] = plugin
    if plugin and plugin not in PGLOADER_PLUGINS:
        refuse(f"the MySQL user {ds['user']!r} logs in with {plugin}, which pgloader (Debian's 3.6) cannot speak: give "
               f"it a native password (MariaDB: ALTER USER '{ds['user']}'@'...' IDENTIFIED VIA mysql_native_password "
               f"USING PASSWORD('...'); MySQL: ALTER USER ... IDENTIFIED WITH mysql_native_password BY '...') - "
               "Mattermost's own driver speaks that too")
    known = set(spec["known_tables"])
    core = {n: t for n, t in tables.items() if n.lower() in known}
    extra = {n: t for n, t in tables.items() if n.lower() not in known}
    out["tables"] = {"count": len(tables), "rows": sum(t["rows"] for t in tables.values()),
                     "bytes": sum(t["bytes"] for t in tables.values()),
                     "largest": sorted(([n, t["rows"], t["bytes"]] for n, t in tables.items()),
                                       key=lambda r: -r[2])[:5],
                     "unknown": sorted(extra)}
    if extra and spec["extra_tables"] == "refuse":
        refuse(f"tables Mattermost did not make (plugins'?): {', '.join(sorted(extra))}: set db_migrate_extra_tables "
               "to \"copy\" (pgloader creates and fills them in PostgreSQL) or \"leave\" (they stay in MySQL only)")
    elif extra:
        out["warnings"].append(f"{'copied as they are' if spec['extra_tables'] == 'copy' else 'left in MySQL'}: "
                               f"{', '.join(sorted(extra))}")
    size = out["tables"]["bytes"]
    copied = size if spec["extra_tables"] == "copy" else sum(t["bytes"] for t in core.values())
    need_pg, need_dump = 2 * copied + (64 << 20), size + (16 << 20)
    for path, need, what in (("/var/lib/postgresql", need_pg, "the PostgreSQL copy (twice the MySQL data)"),
                             (spec["backup_dir"], need_dump, "the MySQL dump")):
        probe = path if os.path.exists(path) else os.path.dirname(path)
        have = free_bytes(probe)
        out.setdefault("disk", {})[path] = {"need": need, "free": have}
        if have < need:
            refuse(f"not enough free disk in {path} for {what}: need {need >> 20} MB, have {have >> 20} MB")
    pg = pg_target(spec)
    out["postgresql"] = pg
    if pg.get("foreign_tables") and state.get("made_database") != spec["db"]["name"]:
        refuse(f"the PostgreSQL database {spec['db']['name']} already holds {pg['foreign_tables']} tables the "
               "deploy did not make: move it away (ALTER DATABASE ... RENAME) first")
    if not shutil.which("pgloader"):
        refuse("pgloader is not installed: run `make deploy` first (it installs Debian's pgloader on a MySQL server)")
    if not spec.get("datasource_password_ok", True):
        refuse("no PostgreSQL password on the server: run `make deploy` first")
    holder = None if locked else lock_holder(spec["lock_file"])  # (the migration itself holds it)
    if holder:
        refuse(f"a migration is running: {holder}")
    mb = copied / (1 << 20)
    out["estimate"] = {"outage_s": round(2 + mb / COPY_MB_PER_S + size / (1 << 20) / VERIFY_MB_PER_S + START_S, 1),
                       "basis": f"{COPY_MB_PER_S} MB/s copy, {VERIFY_MB_PER_S} MB/s verify, {START_S} s start "
                                "(bench/old_server.py on 2 cores)"}
    return out


def pg_target(spec):
    """Is the target database there, and does it hold tables (someone else's)?"""
    name = spec["db"]["name"]
    if systemctl("is-active", "postgresql").stdout.strip() != "active":
        return {"running": False}
    out = {"running": True, "exists": database_exists(name)}
    if out["exists"]:
        out["foreign_tables"] = len(db_compare.pg_tables(name))
    return out


# ------------------------------------------------------------------ the migration

class Migration(Job):
    """The whole move (see the module's text) on the engine. Its choices: a failure before the
    switch leaves Mattermost on MySQL and starts it again, after the switch it switches back
    (`_back_to_mysql`); the failed run's steps stay recorded (the plan shows how far it got;
    the next run starts afresh from the untouched MySQL database)."""

    what, noun = "a migration", "migration"

    def steps(self):
        os.makedirs(self.spec["work_dir"], mode=0o700, exist_ok=True)  # the schema's and pgloader's scratch folder
        return [Step("backup", Migration.backup), Step("postgresql", Migration.postgresql),
                Step("schema", Migration.schema), Step("stop", Migration.stop_mattermost),
                Step("copy", Migration.copy), Step("verify", Migration.verify), Step("switch", Migration.switch),
                Step("start", Migration.start)]

    def finished_before(self):
        driver, _ = source_of(_config(self.spec))
        if self.state.get("status") == "done" and driver == "postgres":
            return f"already migrated to PostgreSQL on {self.state.get('finished')}; nothing to do"
        return None

    def begin(self):
        config = _config(self.spec)
        driver, ds = source_of(config)
        if driver != "mysql":
            raise Failure(f"the database is {driver}, not MySQL: nothing to migrate")
        checked = make_plan(self.spec, locked=True)
        if checked["refusals"]:
            raise Failure("; ".join(checked["refusals"]) + " (nothing was changed)")
        write_private(self.spec["mysql_datasource_file"], json.dumps(
            {k: get_dotted(config, k)[0] for k in SAVED_KEYS}, indent=1) + "\n")
        made = self.state.get("made_database")  # an earlier attempt's database is ours to remake
        return {"version": installed(self.spec), "mysql": mysql.public_parts(ds),
                "extra": checked["tables"]["unknown"], "made_database": made}

    @property
    def source(self):
        """The MySQL DataSource of this migration, as saved when it began."""
        saved = read_json(self.spec["mysql_datasource_file"]) or {}
        ds = mysql.parse_mysql_datasource(saved.get("SqlSettings.DataSource"))
        if ds is None:
            raise Failure(f"{self.spec['mysql_datasource_file']} is missing: the MySQL DataSource of the unfinished "
                          "migration is lost; put SqlSettings back by hand")
        return ds

    @property
    def pg_url(self):
        return build_datasource(self.spec["pg_datasource"], read_password(self.spec["password_file"]))

    def backup(self):
        ds = self.source
        writer = BackupWriter(self.spec["backup_dir"], self.state["version"], "pre-migration")
        try:
            print(f"  backup of the MySQL database {ds['database']} (mysqldump, one consistent snapshot, while "
                  "Mattermost serves)", flush=True)
            writer.mysql_database(ds)
            writer.config(self.spec["config_file"])
            final = writer.publish(note="the MySQL database and config.json before the move to PostgreSQL; "
                                        "the files are not touched by it")
        except BaseException:
            writer.discard()
            raise
        prune_backups(self.spec["backup_dir"], self.spec["backup_keep"])
        return {"backup": os.path.basename(final)}

    def postgresql(self):
        self.source  # noqa: B018 - the saved DataSource must be there before anything is made
        role_and_database({"user": self.spec["db"]["owner"], "name": self.spec["db"]["name"],
                           "password_file": self.spec["password_file"]})

    def schema(self):
        db, owner = self.spec["db"]["name"], self.spec["db"]["owner"]
        self.progress.save(made_database=db)  # from here on, the database is the migration's own
        _fresh_database(db, owner)
        seconds = make_schema(self.spec, self.state["version"], self.pg_url, self.spec["work_dir"])
        return {"schema_s": round(seconds, 1), "schema": db_compare.schema_fingerprint(db)}

    def stop_mattermost(self):
        return self.stop(self.state["version"])

    def copy(self):
        seconds = copy_with_pgloader(self.spec, self.source, read_password(self.spec["password_file"]),
                                     self.spec["work_dir"], self.state.get("extra", []))
        return {"copy_s": round(seconds, 1)}

    def verify(self):
        started = time.time()
        report = verify(self.spec, self.source, self.state.get("schema"), self.state.get("extra", []))
        return {"verify_s": round(time.time() - started, 1), "report": report}

    def switch(self):
        switch_to_postgresql(self.spec, self.pg_url)
        return {"switched_at": time.time()}

    def start(self):
        print(f"  starting Mattermost {self.state['version']} on PostgreSQL", flush=True)
        start_and_verify(self.spec, self.state["version"])
        self.state["outage_s"] = self.outage()

    def finish(self):
        outage = self.state["outage_s"]
        self.progress.save(status="done", finished=utc_now(), outage_s=outage)
        print(f"migrated to PostgreSQL: Mattermost {self.state['version']} is healthy; users waited {outage:.1f} s "
              f"(copy {self.state.get('copy_s')} s, verify {self.state.get('verify_s')} s). The MySQL database "
              f"{self.source['database']} is untouched: `make db-migrate-rollback` goes back to it; drop it once you "
              "are satisfied.", flush=True)

    def failed(self, error, reason):
        return self.gave_up(reason, _back_to_mysql(self.spec, self.progress), forget_steps=False)


def migrate(spec):
    """The whole move (see the module's text); resumable; a failure before the switch leaves
    Mattermost on MySQL, a failure after it switches back."""
    run(Migration(spec))


def _fresh_database(db, owner):
    """An empty database for the schema (a killed earlier attempt's half-made one goes)."""
    if db_compare.pg_tables(db):
        terminate_connections(db)
        psql_as_postgres(f"DROP DATABASE {ident(db)};")
        create_database(db, owner)
        psql_as_postgres(f"GRANT ALL ON SCHEMA public TO {ident(owner)};", database=db)



# ------------------------------------------------------------------ the switch, and back

def switch_to_postgresql(spec, pg_url):
    """The DataSource the deploy builds (the same string: the next deploy changes nothing)."""
    write_keys(spec["config_file"], {"SqlSettings.DriverName": "postgres", "SqlSettings.DataSource": pg_url,
                         "SqlSettings.DataSourceReplicas": [], "SqlSettings.DataSourceSearchReplicas": []})
    print("  config.json now points at PostgreSQL (the MySQL DataSource is kept, root only, for the way back)",
          flush=True)


def _back_to_mysql(spec, progress):
    """After a failure: config.json as before (if it was switched), Mattermost started on
    MySQL and checked. Returns what was done, for the operator."""
    try:
        saved = read_json(spec["mysql_datasource_file"])
        if progress.done("switch") and saved:
            write_keys(spec["config_file"], saved)
        if progress.done("stop"):
            start_and_verify(spec, progress.state["version"])
            return (f"Mattermost {progress.state['version']} runs on MySQL again, as before the migration (nothing "
                    "in MySQL was changed); the PostgreSQL database is kept for inspection")
        return "Mattermost was not stopped and still runs on MySQL; nothing in MySQL was changed"
    except Failure as e:
        return (f"AND putting Mattermost back on MySQL failed ({e}): set SqlSettings in {spec['config_file']} from "
                f"{spec['mysql_datasource_file']} and start it")


def rollback(spec):
    """The way back: config.json points at the MySQL database again (untouched since the
    move), Mattermost started and checked. Refused when the server was upgraded since (MySQL
    holds the old schema) or when posts were written on PostgreSQL since the switch, unless
    `discard` says to lose them."""
    lock = take_lock(spec["lock_file"])
    try:
        progress = Progress(spec["state_file"], STEPS)
        state = progress.state
        if state.get("status") not in ("done", "running", "failed") or not progress.done("backup"):
            raise Failure("no migration to roll back (make db-migrate-plan shows the state)")
        saved = read_json(spec["mysql_datasource_file"])
        if not saved:
            raise Failure(f"{spec['mysql_datasource_file']} is missing: the MySQL DataSource is not known")
        version = installed(spec)
        if version != state.get("version"):
            raise Failure(f"Mattermost was upgraded to {version} on PostgreSQL since the migration; the MySQL database "
                          f"holds the schema of {state.get('version')}: roll back the upgrades first (`make rollback`), "
                          "nothing was changed")
        driver = get_dotted(_config(spec), "SqlSettings.DriverName")[0]
        if driver == "postgres" and state.get("switched_at"):
            db = spec["db"]["name"]
            since = int(state["switched_at"] * 1000)
            newer = posts_since(lambda sql: psql_as_postgres(sql, db).stdout, since)
            if newer and not spec.get("discard"):
                raise Failure(f"{newer} posts were written on PostgreSQL since the switch; going back to MySQL loses "
                              "them: `make db-migrate-rollback DISCARD=1` to go back anyway; nothing was changed")
        print(f"  stopping Mattermost {version}", flush=True)
        systemctl("stop", spec["service"])
        write_keys(spec["config_file"], saved)
        print("  config.json points at the MySQL database again", flush=True)
        start_and_verify(spec, version)
        progress.save(status="rolled-back", done=[], rolled_back=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))
        print(f"rolled back: Mattermost {version} runs on MySQL again; the PostgreSQL database {spec['db']['name']} is "
              "kept (the next `make db-migrate` makes it anew)", flush=True)
    finally:
        lock.close()
