"""Upgrades with a short outage and an automatic way back.
"""

import os
import time

from mmhelper.backup import BackupWriter, database_size, prune_backups, prune_releases
from mmhelper.common import (
    Failure,
    database_exists,
    dir_size,
    free_bytes,
    ident,
    link_release,
    literal,
    psql_as_postgres,
    put_database_back,
    run_release_binary,
    start_and_verify,
    systemctl,
    write_hold,
)
from mmhelper.offsite import offsite_copy

# A database address nothing answers on: `db migrate --dry-run` then loads and checks the
# config and stops when it tries to connect - the live database is never touched.
PREFLIGHT_DATASOURCE = "postgres://preflight@127.0.0.1:1/preflight?sslmode=disable&connect_timeout=2"


def parse_config_check(output):
    """What `mattermost db migrate --dry-run` said about the config: None when the config
    was accepted (it went on to the database), else the server's reason. In
    server/cmd/mattermost/commands/db.go (migrateCmdF) a config the server rejects fails
    with "failed to load configuration: invalid config: ..." before any database work."""
    marker = "failed to load configuration"
    for line in output.splitlines():
        if marker in line:
            reason = line[line.index(marker) + len(marker):].lstrip(": ")
            return reason.removeprefix("invalid config: ").strip() or line.strip()
    return None


def check_config_with(release_dir, config_file, user):
    """Let the NEW release's own binary load and validate the live config (Mattermost v10/v11
    have no `config validate`; `db migrate` loads the config through the same store the
    server uses, with its IsValid checks). Returns the server's reason or None."""
    result = run_release_binary(release_dir, config_file, user, "db", "migrate", "--dry-run",
                                env={"MM_SQLSETTINGS_DATASOURCE": PREFLIGHT_DATASOURCE}, in_release=True)
    return parse_config_check(result.stdout + "\n" + result.stderr)


def upgrade(spec):
    """Upgrade with a short outage and an automatic way back.

    While the old version serves: preflight (folders, disk), the new binary checks the
    config, the data folder and config.json are snapshotted. Then: stop, copy the
    database inside PostgreSQL (CREATE DATABASE ... TEMPLATE: no dump during the outage),
    switch /opt/mattermost, start, wait for a healthy ping of the new version. On success
    the pre-upgrade database copy is dumped (pg_dump -Fc) into the backup while the new
    version serves. On failure: stop, put the pre-upgrade database back (a rename), switch
    back, start, verify the old version, hold the failed version, exit 1 with a report."""
    old, new = spec["from"], spec["to"]
    db, owner = spec["db"]["name"], spec["db"]["owner"]
    releases, link = spec["releases_dir"], spec["install_dir"]
    old_dir, new_dir = os.path.join(releases, old), os.path.join(releases, new)
    for folder in (old_dir, new_dir):
        if not os.path.isdir(folder):
            raise Failure(f"release folder {folder} is missing: nothing was changed")
    snapshot = f"{db}_before_{new.replace('.', '_')}"[:63]

    # Preflight: Mattermost asks for twice the install size plus the database.
    need = 2 * dir_size(new_dir) + database_size(db)
    os.makedirs(spec["backup"]["backup_dir"], mode=0o700, exist_ok=True)
    for path in (spec["backup"]["backup_dir"], "/var/lib/postgresql"):
        have = free_bytes(path) if os.path.exists(path) else need
        if have < need:
            raise Failure(f"not enough free disk in {path} for the upgrade: need {need >> 20} MB "
                          f"(twice the release plus the database), have {have >> 20} MB; nothing was changed")
    problem = check_config_with(new_dir, spec["config_file"], spec["user"])
    if problem:
        raise Failure(f"Mattermost {new} rejects the current config.json ({problem}); fix the setting "
                      "first - nothing was changed")

    writer = BackupWriter(spec["backup"]["backup_dir"], old, "upgrade")
    writer.config(spec["config_file"])
    writer.data(spec["backup"]["data_dir"])
    print(f"  stopping Mattermost {old}", flush=True)
    t0 = time.time()
    stopped = False
    try:
        systemctl("stop", spec["service"])
        stopped = True
        t_stopped = time.time()
        # One psql session for the whole snapshot: every process start here is outage.
        psql_as_postgres(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = {literal(db)};\n"
            f"DROP DATABASE IF EXISTS {ident(snapshot)};\n"
            f"CREATE DATABASE {ident(snapshot)} WITH TEMPLATE {ident(db)} OWNER {ident(owner)};\n")
        link_release(link, new_dir)
        t_snapshot = time.time()
        print(f"  starting Mattermost {new} (database migrations run now)", flush=True)
        start_and_verify(spec, new)
    except BaseException as e:
        reason = str(e) if isinstance(e, Failure) else f"{type(e).__name__}: {e}"
        print(f"  upgrade to {new} failed: {reason}", flush=True)
        if not stopped:
            writer.discard()
            raise
        _roll_back(spec, old, new, db, snapshot, reason, writer)
        raise Failure(f"upgrade {old} -> {new} failed ({reason}); rolled back: the database was restored "
                      f"to its state before the upgrade, Mattermost {old} runs and is healthy; {new} is held "
                      "until `make unhold`") from None
    now = time.time()
    print(f"  Mattermost {new} is serving: stop {t_stopped - t0:.2f}s, database snapshot {t_snapshot - t_stopped:.2f}s, "
          f"start and health {now - t_snapshot:.2f}s; saving the pre-upgrade backup", flush=True)
    try:
        writer.database(snapshot)
        final = writer.publish(upgraded_to=new)
    except BaseException:
        writer.discard()
        raise
    psql_as_postgres(f"DROP DATABASE {ident(snapshot)};")
    prune_backups(spec["backup"]["backup_dir"], spec["backup"]["keep"])
    prune_releases(releases, spec["keep_releases"], {old, new})
    print(f"upgraded {old} -> {new}; pre-upgrade backup {final}", flush=True)
    if spec["backup"].get("offsite"):
        try:
            offsite_copy(spec["backup"]["offsite"], final, writer.name)
        except Failure as e:  # the upgrade is done; the failed copy shows in make status
            print(f"  warning: {e}", flush=True)


def _roll_back(spec, old, new, db, snapshot, reason, writer):
    print(f"  rolling back to {old}", flush=True)
    try:
        systemctl("stop", spec["service"])
        if database_exists(snapshot):
            put_database_back(snapshot, db)
            print(f"  database {db} restored to its state before the upgrade", flush=True)
        link_release(spec["install_dir"], os.path.join(spec["releases_dir"], old))
        start_and_verify(spec, old)
        writer.database(db)
        writer.publish(upgrade_failed=new, reason=reason)
    except BaseException as e:
        raise Failure(f"upgrade {old} -> {new} failed ({reason}) AND the rollback failed ({e}): the "
                      f"pre-upgrade database is kept as {snapshot} if it was made; config and data are in "
                      f"{writer.partial}; see `journalctl -u {spec['service']}`") from None
    write_hold(spec["hold_file"], new, f"the upgrade from {old} failed: {reason}")
