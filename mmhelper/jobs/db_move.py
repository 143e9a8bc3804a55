"""`make move-database`: Mattermost's PostgreSQL database from this server to a database
server (mattermost_role "database", or a managed PostgreSQL), with PostgreSQL's own logical
replication while Mattermost serves, so users wait only for the catch-up, the check and a
restart:

  prepare   the local cluster publishes: wal_level=logical (a restart of PostgreSQL, and
            with it Mattermost, only if it was not on), listening on this server's private
            address with TLS from the deploy's CA, a replication role with a generated
            password, pg_hba and the firewall open to the database server for the move
  schema    pg_dump --schema-only of the local database, loaded into the empty remote one
            as Mattermost's role
  subscribe the remote database subscribes (CREATE SUBSCRIPTION as Mattermost's role:
            PostgreSQL 16+'s pg_create_subscription) and copies every table while
            Mattermost serves; waits until every table is in sync
  stop      Mattermost stops (users wait from here)
  catch-up  the subscription confirms everything the local server wrote
  sequences set to the local values
  verify    every table's row count and an order-independent digest of its rows, both sides
  switch    config.json's DataSource points at the remote database (the local one saved,
            root only, for the way back); the helper's own database work follows it
  start     Mattermost starts on the remote database, checked healthy
  cleanup   subscription, publication, replication role, pg_hba line, firewall rule and
            the local settings taken back; the local database stays as it was at the stop

Each step is recorded: a killed move goes on from the last finished step. A failure before
the switch leaves (or puts) Mattermost back on the local database; after it, switches back.
`make move-database-rollback` is the way back: the local database is untouched.
"""

import json
import os
import subprocess
import time

from mmhelper.jobs import engine
from mmhelper.jobs.db_move_link import (
    LOCAL_HOSTS,
    catch_up,
    copy_sequences,
    current_datasource_host,
    drop_subscription,
    empty_remote,
    local_sql,
    prepare_source,
    remote_env,
    remote_sql,
    restore_source,
    subscribe,
    switch_to_remote,
    tables,
    verify,
    wait_in_sync,
)
from mmhelper.jobs.engine import Job, Progress, Step, lock_holder, take_lock, utc_now
from mmhelper.parts.common import Failure, installed_version, read_json, run
from mmhelper.parts.config import write_keys
from mmhelper.parts.pg import REMOTE_DB_FILE, literal, pg_command, posts_since
from mmhelper.parts.proc import pipe
from mmhelper.parts.service import start_and_verify, systemctl

STEPS = ["prepare", "schema", "subscribe", "stop", "catch-up", "sequences", "verify", "switch", "start", "cleanup"]
# Where the database server cannot subscribe (a managed service without pg_create_subscription,
# PostgreSQL before 16) or db_move_method says so: a dump and restore while Mattermost is stopped.
DUMP_STEPS = ["stop", "copy", "verify", "switch", "start"]


def installed(spec):

    return installed_version(spec["install_dir"], spec["user"])


# ------------------------------------------------------------------ the plan

def plan(spec):
    print(json.dumps(make_plan(spec)))


def make_plan(spec, locked=False):
    """What the move would do and why it would be refused; changes nothing."""
    out = {"refusals": [], "notes": [], "state": (read_json(spec["state_file"]) or {}).get("status")}
    holder = None if locked else lock_holder(spec["lock_file"])
    if holder:
        out["refusals"].append(f"a move of the database is running ({holder})")
    host = current_datasource_host(spec)
    out["current"] = "local" if host in LOCAL_HOSTS else host
    if host not in LOCAL_HOSTS:
        out["refusals"].append(f"Mattermost's database is already at {host}: nothing to move")
        return out
    db = spec["db"]["name"]
    try:
        out["local"] = {"version": local_sql("SHOW server_version;"),
                        "bytes": int(local_sql(f"SELECT pg_database_size({literal(db)});")),
                        "tables": len(tables(lambda sql: local_sql(sql, db))),
                        "wal_level": local_sql("SHOW wal_level;")}
    except Failure as e:
        out["refusals"].append(f"the local database cannot be read: {e}")
        return out
    try:
        remote_tables = tables(lambda sql: remote_sql(spec, sql))
        out["remote"] = {"version": remote_sql(spec, "SHOW server_version;"),
                         "version_num": int(remote_sql(spec, "SHOW server_version_num;")),
                         "tables": len(remote_tables),
                         "can_subscribe": remote_sql(spec, "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON "
                                                          "r.oid = m.roleid WHERE r.rolname = 'pg_create_subscription' "
                                                          "AND m.member = (SELECT oid FROM pg_roles WHERE rolname = "
                                                          "current_user);") != "0"
                         or remote_sql(spec, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user;") == "t"}
    except Failure as e:
        out["refusals"].append(f"the database at {spec['remote']['host']} does not let Mattermost's role in: {e} - "
                               "run `make deploy` (the database server first)")
        return out
    state = read_json(spec["state_file"]) or {}
    if remote_tables and not state.get("made_remote"):
        out["refusals"].append(f"the database {db} at {spec['remote']['host']} already has {len(remote_tables)} "
                               "tables this move did not make: it must be empty (nothing was changed)")
    wanted = spec.get("method") or "auto"
    why_not = None
    if not out["remote"]["can_subscribe"]:
        why_not = (f"{spec['remote']['user']} may not create subscriptions at {spec['remote']['host']} (PostgreSQL 16+ "
                   "with pg_create_subscription granted; the deploy grants it on a database server it runs)")
    elif not spec.get("source_address"):
        why_not = ("db_move_source_address is not set (this server's private address, which the database server "
                   "copies from)")
    out["method"] = "dump" if wanted == "dump" or (wanted == "auto" and why_not) else "replication"
    if out["method"] == "replication" and why_not:
        out["refusals"].append(f"replication is not possible: {why_not}")
    elif out["method"] == "dump" and why_not:
        out["notes"].append(f"no replication ({why_not}): the database is copied with pg_dump | pg_restore while "
                            "Mattermost is stopped")
    client = subprocess.run(["pg_dump", "--version"], capture_output=True, text=True).stdout.split()
    client_major = int(client[-1].split(".")[0]) if client else 0
    if client_major < out["remote"]["version_num"] // 10000:
        out["refusals"].append(f"this server's pg_dump {client_major} cannot back up PostgreSQL "
                               f"{out['remote']['version']}: install postgresql-client-{out['remote']['version_num'] // 10000}")
    if out["method"] == "replication" and out["local"]["wal_level"] != "logical":
        out["notes"].append("the local PostgreSQL restarts once to turn on logical replication (wal_level), and "
                            "Mattermost with it: a few seconds, before the copy")
    # a rough outage: the catch-up is what was written during the stop (little), the check reads
    # every row on both sides at once, plus a stop and a start; a dump and restore adds the
    # whole copy (README "When one server is not enough" has the measured numbers)
    size = out["local"]["bytes"]
    out["estimated_outage_s"] = round(3 + size / 60e6 + (size / 15e6 if out["method"] == "dump" else 0), 0)
    return out


# ------------------------------------------------------------------ the move

class DatabaseMove(Job):
    """The move of the database to the database server (see the module's text) on the engine,
    by replication or by dump and restore (the method chosen when it begins). Its choices: any
    failure puts Mattermost back on the local database and takes the replication down
    (`_back_to_local`); the failed run's steps are forgotten (nothing of it is kept to continue:
    the next run begins afresh and empties the remote side it made)."""

    what, noun = "a move of the database", "move"

    def steps(self):
        if self.state.get("method") == "dump":
            return [Step("stop", DatabaseMove.stop_mattermost), Step("copy", DatabaseMove.dump_and_restore),
                    Step("verify", DatabaseMove.verify), Step("switch", DatabaseMove.switch_by_dump),
                    Step("start", DatabaseMove.start)]
        return [Step("prepare", DatabaseMove.prepare), Step("schema", DatabaseMove.schema),
                Step("subscribe", DatabaseMove.subscribe), Step("stop", DatabaseMove.stop_mattermost),
                Step("catch-up", DatabaseMove.catch_up), Step("sequences", DatabaseMove.sequences),
                Step("verify", DatabaseMove.verify), Step("switch", DatabaseMove.switch),
                Step("start", DatabaseMove.start), Step("cleanup", DatabaseMove.cleanup)]

    def finished_before(self):
        if self.state.get("status") == "done" and current_datasource_host(self.spec) not in LOCAL_HOSTS:
            return f"already moved to {self.spec['remote']['host']} on {self.state.get('finished')}; nothing to do"
        return None

    def begin(self):
        checked = make_plan(self.spec, locked=True)
        if checked["refusals"]:
            raise Failure("; ".join(checked["refusals"]) + " (nothing was changed)")
        return {"version": installed(self.spec), "made_remote": self.state.get("made_remote"),
                "bytes": checked["local"]["bytes"], "method": checked["method"]}

    def prepare(self):
        return {"prepare_outage_s": round(prepare_source(self.spec, self.progress), 1)}

    def schema(self):
        self.progress.save(made_remote=True)  # from here, the remote tables are this move's to remake
        empty_remote(self.spec)
        dump, _ = pg_command("pg_dump", self.spec["db"]["name"], "--schema-only", "--no-owner", "--no-privileges",
                             "--no-publications", "--no-subscriptions")
        schema = run(dump).stdout
        run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1"], input=schema, env=remote_env(self.spec))
        return {"tables": len(tables(lambda sql: remote_sql(self.spec, sql)))}

    def subscribe(self):
        started = time.time()
        subscribe(self.spec, self.progress)
        wait_in_sync(self.spec)
        return {"copy_s": round(time.time() - started, 1)}

    def stop_mattermost(self):
        return self.stop(self.state["version"])

    def catch_up(self):
        started = time.time()
        catch_up(self.spec)
        return {"catch_up_s": round(time.time() - started, 1)}

    def sequences(self):
        return {"sequences": copy_sequences(self.spec)}

    def dump_and_restore(self):
        """Without replication: pg_dump | pg_restore into the remote database as Mattermost's role."""
        self.progress.save(made_remote=True)
        empty_remote(self.spec)
        started = time.time()
        dump, _ = pg_command("pg_dump", self.spec["db"]["name"], "-Fc", "-Z0", "--no-publications",
                             "--no-subscriptions")
        r = self.spec["remote"]
        # the remote side named in full on pg_restore's own line (no password there: it is in the
        # environment, which the local pg_dump - peer login over the socket - does not use)
        target = (f"host={r['host']} port={r['port']} user={r['user']} dbname={r['database']} sslmode=verify-full "
                  f"sslrootcert={r['sslrootcert']} connect_timeout=10")
        restore = ["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error", "-d", target]
        env = dict(os.environ, PGPASSWORD=remote_env(self.spec)["PGPASSWORD"])
        (dump_status, dump_err), (restore_status, restore_err) = pipe(dump, restore, subprocess.DEVNULL,
                                                                      subprocess.DEVNULL, env=env)
        if dump_status or restore_status:
            raise Failure(f"the copy failed: {dump_err or restore_err}")
        return {"copy_s": round(time.time() - started, 1)}

    def verify(self):
        started = time.time()
        report = verify(self.spec)
        return {"verify_s": round(time.time() - started, 1), "report": report}

    def switch(self):
        drop_subscription(self.spec)
        switch_to_remote(self.spec)
        return {"switched_at": time.time()}

    def switch_by_dump(self):
        switch_to_remote(self.spec)
        return {"switched_at": time.time()}

    def start(self):
        print(f"  starting Mattermost {self.state['version']} on the database at {self.spec['remote']['host']}",
              flush=True)
        start_and_verify(self.spec, self.state["version"])
        return {"outage_s": self.outage()}

    def cleanup(self):
        restore_source(self.spec, self.progress)

    def finish(self):
        self.progress.save(status="done", finished=utc_now())
        s, db, version = self.state, self.spec["db"]["name"], self.state["version"]
        if s.get("method") == "dump":
            print(f"moved: Mattermost {version} runs on {db} at {self.spec['remote']['host']}; users waited "
                  f"{s.get('outage_s')} s (dump and restore {s.get('copy_s')} s, check {s.get('verify_s')} s). The "
                  "local database is untouched since the stop: `make move-database-rollback` goes back to it.",
                  flush=True)
            return
        restart = f", and the restart to turn on replication {s['prepare_outage_s']} s" if s.get("prepare_outage_s") else ""
        print(f"moved: Mattermost {version} runs on {db} at {self.spec['remote']['host']}; users waited "
              f"{s.get('outage_s')} s (catch-up {s.get('catch_up_s')} s, check {s.get('verify_s')} s; the copy took "
              f"{s.get('copy_s')} s while serving{restart}). The local database is untouched since the stop: "
              "`make move-database-rollback` goes back to it.", flush=True)

    def failed(self, error, reason):
        return self.gave_up(reason, _back_to_local(self.spec, self.progress), forget_steps=True)


def move(spec):
    engine.run(DatabaseMove(spec))


def _back_to_local(spec, progress):
    """After a failure: Mattermost on the local database again, the replication taken down."""
    notes = []
    try:
        saved = read_json(spec["saved_datasource_file"])
        if progress.done("switch") and saved:
            systemctl("stop", spec["service"])
            write_keys(spec["config_file"], saved)
            if os.path.exists(REMOTE_DB_FILE):
                os.unlink(REMOTE_DB_FILE)
        try:
            drop_subscription(spec)
        except Failure as e:
            notes.append(f"the subscription at {spec['remote']['host']} could not be dropped ({e})")
        restore_source(spec, progress)
        if progress.done("stop") or progress.done("switch"):
            start_and_verify(spec, progress.state["version"])
            return ("Mattermost runs on the local database again, as before the move" +
                    (f"; {'; '.join(notes)}" if notes else ""))
        return "Mattermost was not stopped and still runs on the local database" + \
            (f"; {'; '.join(notes)}" if notes else "")
    except Failure as e:
        return f"AND putting Mattermost back on the local database failed ({e}): see {spec['saved_datasource_file']}"


def rollback(spec):
    """The way back: config.json points at the local database again (untouched since the
    stop), Mattermost started and checked. Refused when it was upgraded since, or when people
    posted on the remote database since the switch, unless `discard` says to lose that."""
    lock = take_lock(spec["lock_file"], "a move of the database")
    try:
        progress = Progress(spec["state_file"], STEPS)
        state = progress.state
        saved = read_json(spec["saved_datasource_file"])
        if state.get("status") != "done" or not saved:
            raise Failure("no finished move of the database to roll back (make move-database-plan shows the state)")
        version = installed(spec)
        if version != state.get("version"):
            raise Failure(f"Mattermost was upgraded to {version} since the move; the local database holds the schema "
                          f"of {state.get('version')}: roll back the upgrade first (`make rollback`); nothing was "
                          "changed")
        if current_datasource_host(spec) not in LOCAL_HOSTS and state.get("switched_at"):
            since = int(state["switched_at"] * 1000)
            newer = posts_since(lambda sql: remote_sql(spec, sql), since)
            if newer and not spec.get("discard"):
                raise Failure(f"{newer} posts were written on the database at {spec['remote']['host']} since the move; "
                              "going back loses them: `make move-database-rollback DISCARD=1` to go back anyway; "
                              "nothing was changed")
        print(f"  stopping Mattermost {version}", flush=True)
        systemctl("stop", spec["service"])
        write_keys(spec["config_file"], saved)
        if os.path.exists(REMOTE_DB_FILE):
            os.unlink(REMOTE_DB_FILE)
        print("  config.json points at the local database again", flush=True)
        start_and_verify(spec, version)
        progress.save(status="rolled-back", done=[], rolled_back=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))
        os.unlink(spec["saved_datasource_file"])
        print(f"rolled back: Mattermost {version} runs on the local database again; the database at "
              f"{spec['remote']['host']} is kept (a new `make move-database` empties and fills it anew). Set "
              "mattermost_role back to \"all\" in the inventory, or the next deploy says the move is pending.",
              flush=True)
    finally:
        lock.close()
