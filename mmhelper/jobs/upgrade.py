"""Upgrades with a short outage and an automatic way back.
"""

import os
import re
import shutil
import time

from mmhelper.jobs.upgrade_check import after_start, before_stop
from mmhelper.parts.common import Failure, dir_size, free_bytes, link_release, run_release_binary, write_hold
from mmhelper.parts.pg import create_database, ident, psql_as_postgres, terminate_connections
from mmhelper.parts.service import start_and_verify, systemctl
from mmhelper.steps.backup import (
    BackupWriter,
    database_size,
    dump_in,
    mysql_source,
    pg_restore,
    prune_backups,
    prune_releases,
)
from mmhelper.steps.notices import event
from mmhelper.steps.offsite import offsite_copy

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


# Mattermost's own way to reverse its schema migrations (server/cmd/mattermost/commands/db.go):
# `db migrate --save-plan --dry-run` writes the plan into the file store without migrating,
# `db downgrade <plan>` run by the NEWER binary reverses it. Local mode is switched off for
# these runs: its socket folder exists only while the service runs, and the config check
# refuses a socket path whose folder is missing.
OFFLINE_ENV = {"MM_SERVICESETTINGS_ENABLELOCALMODE": "false"}


def parse_plan_file(output):
    match = re.search(r'The migration plan has been saved\. File: "([^"]+)"', output)
    return match.group(1) if match else None


def save_migration_plan(release_dir, spec):
    """The migrations the new release will run, saved as a plan (None: none to run)."""
    result = run_release_binary(release_dir, spec["config_file"], spec["user"], "db", "migrate", "--save-plan",
                                "--dry-run", env=OFFLINE_ENV, in_release=True)
    text = result.stdout + result.stderr
    if "No migrations to apply" in text:
        return None
    plan = parse_plan_file(text)
    if result.returncode != 0 or not plan:
        raise Failure(f"Mattermost's migration plan could not be saved ({text.strip()[-300:]}); nothing was changed")
    return plan


# Roll back an upgrade by restoring the pre-upgrade dump instead of reversing a plan.
DUMP_ROLLBACK = "dump"


def migration_tools(release_dir, spec):
    """What the new release's `db migrate` offers ({"dry_run", "save_plan"}), from its own
    help text: Mattermost 6.x's has neither flag (cmd/mattermost/commands/db.go of
    mattermost-server v6), 10.x and 11.x have both."""
    result = run_release_binary(release_dir, spec["config_file"], spec["user"], "db", "migrate", "--help",
                                env=OFFLINE_ENV, in_release=True)
    text = result.stdout + result.stderr
    return {"dry_run": "--dry-run" in text, "save_plan": "--save-plan" in text}


def has_migration_table(db):
    """Mattermost's migration table (morph, from 6.4) exists. A plan saved over an older schema
    lists every migration from the first, and reversing it would drop tables that existed
    before the upgrade: there only the pre-upgrade dump is a way back."""
    return bool(psql_as_postgres("SELECT to_regclass('public.db_migrations') IS NOT NULL;", db).stdout.strip() == "t")


def plan_or_dump(new_dir, spec, db, new):
    """The way back from this upgrade: Mattermost's saved migration plan (None: nothing to
    migrate), or DUMP_ROLLBACK when the new release cannot save one or the schema predates it."""
    tools = migration_tools(new_dir, spec)
    if not tools["save_plan"]:
        print(f"  way back: Mattermost {new} cannot save a migration plan - a failure restores the pre-upgrade dump",
              flush=True)
        return DUMP_ROLLBACK
    if not has_migration_table(db):
        print("  way back: the database predates Mattermost's migration table (6.4) - a failure restores the "
              "pre-upgrade dump", flush=True)
        return DUMP_ROLLBACK
    plan = save_migration_plan(new_dir, spec)
    print(f"  migration plan: {plan or 'no migrations to run'}", flush=True)
    return plan


def downgrade_schema(release_dir, spec, plan):
    """Reverse the plan's migrations with the new release's binary. Returns an error or None."""
    result = run_release_binary(release_dir, spec["config_file"], spec["user"], "db", "downgrade", plan,
                                env=OFFLINE_ENV, in_release=True, timeout=spec.get("start_timeout", 3600))
    text = result.stdout + result.stderr
    if result.returncode == 0 and "successfully downgraded" in text:
        return None
    return text.strip()[-300:] or f"exit status {result.returncode}"


def restore_dump(dump, db, owner):
    """The last resort: the database as the pre-upgrade dump has it (the failed one kept)."""
    fresh, failed = f"{db}_restoring"[:63], f"{db}_failed_upgrade"[:63]
    psql_as_postgres(f"DROP DATABASE IF EXISTS {ident(fresh)};")
    create_database(fresh, owner)
    pg_restore(dump, fresh, owner)
    terminate_connections(db)
    psql_as_postgres(f"DROP DATABASE IF EXISTS {ident(failed)};")
    psql_as_postgres(f"ALTER DATABASE {ident(db)} RENAME TO {ident(failed)};")
    psql_as_postgres(f"ALTER DATABASE {ident(fresh)} RENAME TO {ident(db)};")
    return failed


def upgrade(spec):
    """Upgrade with an outage of about a restart, whatever the database's size, and an
    automatic way back.

    While the old version serves: preflight (folders, disk), the new binary checks the
    config and saves Mattermost's migration plan, and the pre-upgrade backup is taken
    (pg_dump - a consistent snapshot - config.json, data). Then the outage: stop, switch
    /opt/mattermost, start (the migrations run), wait for a healthy ping of the new
    version. On failure: stop, reverse the migrations with Mattermost's own `db downgrade`
    of the saved plan (the data stays as it was, writes included), switch back, start,
    verify the old version, hold the failed version, exit 1 with a report. Only when the
    downgrade itself fails is the pre-upgrade dump restored (writes made after it are then
    lost, and said so); the failed database is kept."""
    old, new = spec["from"], spec["to"]
    db = spec["db"]["name"]
    if mysql_source(spec["config_file"]):
        raise Failure("the database is MySQL/MariaDB: upgrades run on PostgreSQL only (Mattermost 11 no longer supports "
                      "MySQL) - `make db-migrate-plan`, then `make db-migrate`; nothing was changed")
    releases, link = spec["releases_dir"], spec["install_dir"]
    old_dir, new_dir = os.path.join(releases, old), os.path.join(releases, new)
    for folder in (old_dir, new_dir):
        if not os.path.isdir(folder):
            raise Failure(f"release folder {folder} is missing: nothing was changed")

    # Preflight: Mattermost asks for twice the install size plus the database.
    need = 2 * dir_size(new_dir) + database_size(db)
    os.makedirs(spec["backup"]["backup_dir"], mode=0o700, exist_ok=True)
    for path in (spec["backup"]["backup_dir"], "/var/lib/postgresql"):
        have = free_bytes(path) if os.path.exists(path) else need
        if have < need:
            raise Failure(f"not enough free disk in {path} for the upgrade: need {need >> 20} MB "
                          f"(twice the release plus the database), have {have >> 20} MB; nothing was changed")
    if migration_tools(new_dir, spec)["dry_run"]:
        problem = check_config_with(new_dir, spec["config_file"], spec["user"])
        if problem:
            raise Failure(f"Mattermost {new} rejects the current config.json ({problem}); fix the setting "
                          "first - nothing was changed")
    else:
        print(f"  Mattermost {new} has no offline config check (its `db migrate` has no --dry-run): its start is the "
              "check", flush=True)
    plan = plan_or_dump(new_dir, spec, db, new)

    writer = BackupWriter(spec["backup"]["backup_dir"], old, "upgrade")
    try:
        print(f"  pre-upgrade backup while {old} serves (database dump, config.json, data)", flush=True)
        writer.database(db)
        writer.config(spec["config_file"])
        writer.data(spec["backup"]["data_dir"], spec["config_file"], spec["backup"].get("files"))
    except BaseException:
        writer.discard()
        raise
    before = before_stop(spec["check"]) if spec.get("check") else None
    print(f"  stopping Mattermost {old}", flush=True)
    t0 = time.time()
    stopped = False
    try:
        systemctl("stop", spec["service"])
        stopped = True
        t_stopped = time.time()
        link_release(link, new_dir)
        print(f"  starting Mattermost {new} (database migrations run now)", flush=True)
        start_and_verify(spec, new)
        t_healthy = time.time()
        if before is not None:
            print(f"  Mattermost {new} answers; checking what people use (plugins, sign-in, a probe through nginx, "
                  "the job server)", flush=True)
            problems = after_start(spec["check"], before)
            if problems:
                raise Failure("the check after the start found: " + "; ".join(problems))
    except BaseException as e:
        reason = str(e) if isinstance(e, Failure) else f"{type(e).__name__}: {e}"
        print(f"  upgrade to {new} failed: {reason}", flush=True)
        if not stopped:
            writer.discard()
            raise
        how = _roll_back(spec, old, new, plan, reason, writer)
        event(f"rolled-back-{new}", f"upgrade to {new} ROLLED BACK",
              f"The upgrade {old} -> {new} failed ({reason}).\nRolled back: {how}. Mattermost {old} runs; {new} is "
              "held until `make unhold`.")
        raise Failure(f"upgrade {old} -> {new} failed ({reason}); rolled back: {how}, Mattermost {old} runs and is "
                      f"healthy; {new} is held until `make unhold`") from None
    now = time.time()
    print(f"  Mattermost {new} is serving: stop {t_stopped - t0:.2f}s, start with migrations and health "
          f"{t_healthy - t_stopped:.2f}s" + (f", the check after the start {now - t_healthy:.2f}s" if before else ""),
          flush=True)
    final = writer.publish(upgraded_to=new, migration_plan=None if plan == DUMP_ROLLBACK else plan)
    _keep_plan(spec, plan, final)
    prune_backups(spec["backup"]["backup_dir"], spec["backup"]["keep"])
    prune_releases(releases, spec["keep_releases"], {old, new})
    print(f"upgraded {old} -> {new}; pre-upgrade backup {final}", flush=True)
    event(f"upgraded-{new}", f"Mattermost upgraded to {new}",
          f"{old} -> {new}; users waited {t_healthy - t0:.1f} s; pre-upgrade backup {final}")
    if spec["backup"].get("offsite"):
        try:
            offsite_copy(spec["backup"]["offsite"], final, writer.name)
        except Failure as e:  # the upgrade is done; the failed copy shows in make status
            print(f"  warning: {e}", flush=True)


def _keep_plan(spec, plan, folder):
    """The plan goes into the backup (the way back from this upgrade), out of the file store."""
    if not plan or plan == DUMP_ROLLBACK:
        return
    source = os.path.join(spec["backup"]["data_dir"], plan)
    if os.path.exists(source):
        shutil.copy2(source, os.path.join(folder, "migration-plan.json"))
        os.unlink(source)


def _roll_back(spec, old, new, plan, reason, writer):
    """Back to the old release with the database as before; returns what was done."""
    print(f"  rolling back to {old}", flush=True)
    db, owner = spec["db"]["name"], spec["db"]["owner"]
    new_dir = os.path.join(spec["releases_dir"], new)
    try:
        systemctl("stop", spec["service"])
        how = "no migrations had to be reversed"
        if plan == DUMP_ROLLBACK:
            failed = restore_dump(dump_in(writer.partial), db, owner)
            how = (f"the database was restored from the pre-upgrade dump (writes made after it are lost; the upgraded "
                   f"database is kept as {failed})")
            print(f"  {how}", flush=True)
        elif plan:
            error = downgrade_schema(new_dir, spec, plan)
            if error is None:
                how = "Mattermost reversed its migrations (db downgrade), the data is as it was"
                print(f"  {how}", flush=True)
            else:
                print(f"  the schema downgrade failed ({error}); restoring the pre-upgrade dump", flush=True)
                failed = restore_dump(dump_in(writer.partial), db, owner)
                how = (f"the schema downgrade failed, so the database was restored from the pre-upgrade dump (writes "
                       f"made after it are lost; the failed database is kept as {failed})")
        link_release(spec["install_dir"], os.path.join(spec["releases_dir"], old))
        start_and_verify(spec, old)
        writer.publish(upgrade_failed=new, reason=reason)
    except BaseException as e:
        raise Failure(f"upgrade {old} -> {new} failed ({reason}) AND the rollback failed ({e}): the pre-upgrade "
                      f"dump, config and data are in {writer.partial}; see `journalctl -u {spec['service']}`") from None
    write_hold(spec["hold_file"], new, f"the upgrade from {old} failed: {reason}")
    _keep_plan(spec, plan, os.path.join(spec["backup"]["backup_dir"], writer.name))
    return how
