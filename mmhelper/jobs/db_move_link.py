"""The mechanics of `make move-database` (mmhelper/jobs/db_move.py tells the story): the local
cluster made a publisher for the move and made as it was again, the remote database's
subscription, its catch-up, sequences, and the check of every table on both sides.
"""

import json
import os
import secrets
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

from mmhelper.parts.common import Failure, read_password, run, write_private
from mmhelper.parts.config import build_datasource, get_dotted, parse_datasource, write_keys
from mmhelper.parts.pg import REMOTE_DB_FILE, client_env, ident, literal
from mmhelper.parts.service import start_and_verify, systemctl

NAME = "mattermost_move"  # the publication, subscription, slot and replication role
TLS_DIR = "/etc/postgresql/mattermost-move"
HBA_MARK = "# mattermost-deploy: move-database"
NFT_COMMENT = "mattermost-deploy move-database"
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "")


# ------------------------------------------------------------------ both sides

def local_sql(sql, database="postgres"):
    return run(["runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1",
                "-d", database], input=sql).stdout.strip()


def remote_env(spec):
    password = read_password(spec["remote"]["password_file"])
    if not password:
        raise Failure(f"{spec['remote']['password_file']} is missing: set MATTERMOST_DB_PASSWORD and run make deploy")
    return client_env(spec["remote"], password, app="mattermost-deploy move", database=spec["remote"]["database"])


def remote_sql(spec, sql):
    return run(["psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1"], input=sql, env=remote_env(spec)).stdout.strip()


def tables(sql_runner):
    return sorted(sql_runner("SELECT tablename FROM pg_tables WHERE schemaname = 'public';").split())


def digest_sql(table):
    """Rows and an order-independent digest of the rows' text (the sum of each row's md5,
    first 60 bits): the same on both sides exactly when they hold the same rows."""
    return (f"SELECT count(*) || ' ' || coalesce(sum(('x' || substr(md5(t::text), 1, 15))::bit(60)::bigint), 0) "
            f"FROM public.{ident(table)} t;")


def table_digests(sql_runner, names):
    """Every table's digest in one query (one session per side: a connection per table cost
    seconds of the outage over TLS)."""
    if not names:
        return {}
    query = " UNION ALL ".join(f"SELECT {literal(name)} || '|' || ({digest_sql(name).rstrip(';')})" for name in names)
    rows = dict(line.split("|", 1) for line in sql_runner(query + ";").splitlines() if "|" in line)
    return {name: rows.get(name) for name in names}


def _config(spec):
    with open(spec["config_file"]) as f:
        return json.load(f)


def current_datasource_host(spec):
    parts = parse_datasource(get_dotted(_config(spec), "SqlSettings.DataSource")[0] or "")
    return (parts or {}).get("host")


# ------------------------------------------------------------------ the steps

def _alter_system(settings):
    changed = False
    for key, value in settings.items():
        if local_sql(f"SELECT setting FROM pg_settings WHERE name = {literal(key)};") != value.strip("'"):
            changed = True
        local_sql(f"ALTER SYSTEM SET {key} = {value};")
    return changed


def _hba_file():
    return local_sql("SHOW hba_file;")


def db_server_addresses(spec):
    """The database server's addresses as this server resolves its name: who may connect back."""
    infos = socket.getaddrinfo(spec["remote"]["host"], None, type=socket.SOCK_STREAM)
    return sorted({info[4][0] for info in infos})


def prepare_source(spec, progress):
    """The local cluster ready to publish; returns how long Mattermost was down for it (0 when
    no restart was needed)."""
    db, source = spec["db"]["name"], spec["source_address"]
    # TLS for the link: a key and certificate from the deploy's CA naming this server's address,
    # placed by the verb (root-only upload) and copied where PostgreSQL reads them.
    os.makedirs(TLS_DIR, mode=0o755, exist_ok=True)
    for name in ("server.crt", "server.key"):
        with open(os.path.join(spec["tls_upload_dir"], name)) as f:
            data = f.read()
        write_private(os.path.join(TLS_DIR, name), data, gid=_gid("postgres"), mode=0o640 if name.endswith("key")
                      else 0o644)
    password = read_password(spec["replication_password_file"])
    if not password:
        password = secrets.token_urlsafe(24)
        write_private(spec["replication_password_file"], password + "\n")
    restart = _alter_system({"wal_level": "'logical'", "listen_addresses": f"'localhost,{source}'"})
    _alter_system({"ssl": "'on'", "ssl_cert_file": f"'{TLS_DIR}/server.crt'", "ssl_key_file": f"'{TLS_DIR}/server.key'"})
    exists = local_sql(f"SELECT count(*) FROM pg_roles WHERE rolname = {literal(NAME)};") != "0"
    local_sql(f"{'ALTER' if exists else 'CREATE'} ROLE {ident(NAME)} WITH LOGIN REPLICATION PASSWORD "
              f"{literal(password)};")
    local_sql(f"GRANT USAGE ON SCHEMA public TO {ident(NAME)}; GRANT SELECT ON ALL TABLES IN SCHEMA public TO "
              f"{ident(NAME)};", db)
    # Tables without a primary key cannot publish their updates and deletes - Mattermost's own
    # writes to them would fail while the publication exists - unless they identify rows by all
    # their columns; set for the move (carried to the remote schema) and taken back at cleanup.
    keyless = local_sql("SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE "
                        "n.nspname = 'public' AND c.relkind = 'r' AND c.relreplident = 'd' AND NOT EXISTS (SELECT 1 "
                        "FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary);", db).split()
    for table in keyless:
        local_sql(f"ALTER TABLE public.{ident(table)} REPLICA IDENTITY FULL;", db)
    if keyless:
        progress.save(keyless=sorted(set(progress.state.get("keyless", [])) | set(keyless)))
    if local_sql(f"SELECT count(*) FROM pg_publication WHERE pubname = {literal(NAME)};", db) == "0":
        local_sql(f"CREATE PUBLICATION {ident(NAME)} FOR ALL TABLES;", db)
    hba = _hba_file()
    with open(hba) as f:
        lines = [line for line in f.read().splitlines() if HBA_MARK not in line]
    peers = db_server_addresses(spec)
    for address in peers:
        net = f"{address}/128" if ":" in address else f"{address}/32"
        lines.insert(0, f"hostssl {db} {NAME} {net} scram-sha-256 {HBA_MARK}")
    st = os.stat(hba)
    write_private(hba, "\n".join(lines) + "\n", uid=st.st_uid, gid=st.st_gid, mode=st.st_mode & 0o777)
    _firewall(peers, open_it=True)
    down = 0.0
    if restart:
        print("  restarting the local PostgreSQL to turn on logical replication (Mattermost restarts with it)",
              flush=True)
        started = time.time()
        systemctl("restart", "postgresql")
        start_and_verify(spec, progress.state["version"])
        down = time.time() - started
    else:
        systemctl("reload", "postgresql")
    print(f"  the local database publishes every table to {', '.join(peers)} over TLS", flush=True)
    return down


def _gid(group):
    import grp
    return grp.getgrnam(group).gr_gid


def _firewall(peers, open_it):
    """A runtime rule in the deploy's nftables table (never saved: the next firewall load drops it)."""
    if subprocess.run(["nft", "list", "table", "inet", "mattermost_deploy"], capture_output=True).returncode != 0:
        return
    listing = subprocess.run(["nft", "-a", "list", "chain", "inet", "mattermost_deploy", "input"],
                             capture_output=True, text=True).stdout
    for line in listing.splitlines():
        if NFT_COMMENT in line and "# handle" in line:
            handle = line.rsplit("# handle", 1)[1].strip()
            run(["nft", "delete", "rule", "inet", "mattermost_deploy", "input", "handle", handle])
    if open_it:
        for address in peers:
            family = "ip6" if ":" in address else "ip"
            run(["nft", "add", "rule", "inet", "mattermost_deploy", "input", family, "saddr", address, "tcp", "dport",
                 "5432", "accept", "comment", f'"{NFT_COMMENT}"'])


def empty_remote(spec):
    """The remote database emptied of an earlier attempt's tables (only those this move made)."""
    if tables(lambda sql: remote_sql(spec, sql)):
        owner = spec["remote"]["user"]
        remote_sql(spec, f"DROP SCHEMA public CASCADE; CREATE SCHEMA public AUTHORIZATION {ident(owner)};")


def subscribe(spec, progress):
    if remote_sql(spec, f"SELECT count(*) FROM pg_subscription WHERE subname = {literal(NAME)};") != "0":
        return
    password = read_password(spec["replication_password_file"])
    conninfo = (f"host={spec['source_address']} port=5432 dbname={spec['db']['name']} user={NAME} password={password} "
                f"sslmode={spec['link_sslmode']}" + (f" sslrootcert={spec['link_sslrootcert']}"
                                                    if spec.get("link_sslrootcert") else ""))
    remote_sql(spec, f"CREATE SUBSCRIPTION {ident(NAME)} CONNECTION {literal(conninfo)} PUBLICATION {ident(NAME)};")
    print(f"  the database at {spec['remote']['host']} copies every table while Mattermost serves", flush=True)


def wait_in_sync(spec, timeout=6 * 3600):
    """Every table copied and streaming ('r' in pg_subscription_rel), with progress shown."""
    deadline, last = time.time() + timeout, None
    while time.time() < deadline:
        rows = remote_sql(spec, "SELECT srsubstate, count(*) FROM pg_subscription_rel r JOIN pg_subscription s ON "
                                f"s.oid = r.srsubid WHERE s.subname = {literal(NAME)} GROUP BY 1;")
        states = dict(line.split("|") for line in rows.splitlines() if "|" in line)
        total, ready = sum(int(v) for v in states.values()), int(states.get("r", 0))
        if total and ready == total:
            print(f"  every table copied ({total}) and following the local database", flush=True)
            return
        if (ready, total) != last:
            print(f"  copying: {ready} of {total} tables in sync", flush=True)
            last = (ready, total)
        time.sleep(1)
    raise Failure(f"the copy did not finish within {timeout // 3600} h")


def catch_up(spec, timeout=600):
    """Everything the local server wrote, confirmed by the subscription."""
    target = local_sql("SELECT pg_current_wal_lsn();")
    deadline = time.time() + timeout
    while time.time() < deadline:
        behind = local_sql(f"SELECT pg_wal_lsn_diff({literal(target)}, confirmed_flush_lsn) FROM pg_replication_slots "
                           f"WHERE slot_name = {literal(NAME)};")
        if behind and float(behind) <= 0:
            return
        time.sleep(0.2)
    raise Failure(f"the database at {spec['remote']['host']} did not catch up within {timeout} s")


def copy_sequences(spec):
    rows = local_sql("SELECT schemaname || '.' || sequencename || '|' || last_value FROM pg_sequences WHERE "
                     "last_value IS NOT NULL;", spec["db"]["name"])
    count = 0
    for line in rows.splitlines():
        name, value = line.rsplit("|", 1)
        schema, seq = name.split(".", 1)
        remote_sql(spec, f"SELECT setval({literal(ident(schema) + '.' + ident(seq))}, {int(value)});")
        count += 1
    return count


def verify(spec):
    db = spec["db"]["name"]
    local_tables = tables(lambda sql: local_sql(sql, db))
    remote_tables = tables(lambda sql: remote_sql(spec, sql))
    if local_tables != remote_tables:
        raise Failure(f"the tables differ: only here {sorted(set(local_tables) - set(remote_tables))}, only there "
                      f"{sorted(set(remote_tables) - set(local_tables))}")
    with ThreadPoolExecutor(2) as pool:  # both sides at once: the check is most of the wait
        here_job = pool.submit(table_digests, lambda sql: local_sql(sql, db), local_tables)
        there_job = pool.submit(table_digests, lambda sql: remote_sql(spec, sql), local_tables)
        here, there = here_job.result(), there_job.result()
    differ = [t for t in local_tables if here[t] != there[t]]
    if differ:
        raise Failure("rows differ in " + ", ".join(f"{t} ({here[t].split()[0]} here, {there[t].split()[0]} there)"
                                                     for t in differ[:10]))
    rows = sum(int(v.split()[0]) for v in here.values())
    print(f"  checked: {len(local_tables)} tables, {rows} rows, every table's count and digest equal", flush=True)
    return {"tables": len(local_tables), "rows": rows, "digests": here}


def drop_subscription(spec):
    if remote_sql(spec, f"SELECT count(*) FROM pg_subscription WHERE subname = {literal(NAME)};") != "0":
        remote_sql(spec, f"DROP SUBSCRIPTION {ident(NAME)};")  # also drops its slot on this server




def switch_to_remote(spec):
    config = _config(spec)
    if not os.path.exists(spec["saved_datasource_file"]):
        write_private(spec["saved_datasource_file"], json.dumps(
            {"SqlSettings.DataSource": get_dotted(config, "SqlSettings.DataSource")[0]}) + "\n")
    password = read_password(spec["remote"]["password_file"])
    write_keys(spec["config_file"], {"SqlSettings.DataSource": build_datasource(spec["remote_datasource"], password)})
    write_private(REMOTE_DB_FILE, spec["remote_file_content"], mode=0o644)
    print(f"  config.json now points at {spec['remote']['host']} (the local DataSource is kept, root only, for the "
          "way back)", flush=True)


def restore_source(spec, progress):
    """The local cluster as before the move: no publication, role, pg_hba line or firewall rule;
    its settings back (a restart: Mattermost no longer uses it)."""
    db = spec["db"]["name"]
    for table in progress.state.get("keyless", []):
        local_sql(f"ALTER TABLE public.{ident(table)} REPLICA IDENTITY DEFAULT;", db)
        if current_datasource_host(spec) not in LOCAL_HOSTS or progress.done("schema"):
            try:
                remote_sql(spec, f"ALTER TABLE IF EXISTS public.{ident(table)} REPLICA IDENTITY DEFAULT;")
            except Failure:
                pass  # the remote side is remade by the next attempt anyway
    if local_sql(f"SELECT count(*) FROM pg_replication_slots WHERE slot_name = {literal(NAME)};") != "0":
        local_sql(f"SELECT pg_drop_replication_slot({literal(NAME)});")
    local_sql(f"DROP PUBLICATION IF EXISTS {ident(NAME)};", db)
    if local_sql(f"SELECT count(*) FROM pg_roles WHERE rolname = {literal(NAME)};") != "0":
        local_sql(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {ident(NAME)}; REVOKE USAGE ON SCHEMA public "
                  f"FROM {ident(NAME)};", db)
        local_sql(f"DROP ROLE {ident(NAME)};")
    for key in ("wal_level", "listen_addresses", "ssl", "ssl_cert_file", "ssl_key_file"):
        local_sql(f"ALTER SYSTEM RESET {key};")
    hba = _hba_file()
    with open(hba) as f:
        text = f.read()
    if HBA_MARK in text:
        st = os.stat(hba)
        write_private(hba, "".join(line for line in text.splitlines(True) if HBA_MARK not in line),
                      uid=st.st_uid, gid=st.st_gid, mode=st.st_mode & 0o777)
    _firewall([], open_it=False)
    if current_datasource_host(spec) not in LOCAL_HOSTS:
        systemctl("restart", "postgresql")  # Mattermost uses the remote database: nobody waits for this
    else:
        systemctl("reload", "postgresql")
