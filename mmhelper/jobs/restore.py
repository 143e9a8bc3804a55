"""Restore a backup, roll back to the release before the last upgrade, lift a hold.
"""

import json
import os
import pwd
import shutil
import time

from mmhelper.jobs.upgrade import check_config_with
from mmhelper.parts.common import Failure, link_release, ping, read_json, run, write_hold, write_private
from mmhelper.parts.config import set_dotted
from mmhelper.parts.pg import create_database, database_exists, ident, psql_as_postgres, put_database_back, terminate_connections
from mmhelper.parts.rclone import listing as rclone_listing
from mmhelper.parts.rclone import rclone, remote
from mmhelper.parts.service import start_and_verify, systemctl
from mmhelper.steps.backup import (
    backup_names,
    content_counts,
    dump_in,
    files_driver,
    find_backup,
    mysql_dump_in,
    pg_restore,
    snapshot_data,
)


def restore(spec):
    """Bring back a backup: database (pg_restore into a new database; the current one is
    kept renamed), config.json (keeping today's DataSource), the data folder (the current
    one kept renamed) unless restore_data is false, and the backup's release. Verified by
    a healthy ping; undone when any step fails."""
    name = find_backup(spec["backup_dir"], spec.get("backup"))
    folder = os.path.join(spec["backup_dir"], name)
    manifest = read_json(os.path.join(folder, "manifest.json")) or {}
    version = manifest.get("version")
    db, owner = spec["db"]["name"], spec["db"]["owner"]
    release = os.path.join(spec["releases_dir"], version or "?")
    if not os.path.isdir(release):
        raise Failure(f"backup {name} is of Mattermost {version}, whose release folder is gone: run the deploy "
                      f"with mattermost_version = \"{version}\" first; nothing was changed")
    dump = dump_in(folder)
    if dump is None and mysql_dump_in(folder):
        raise Failure(f"backup {name} holds a MySQL dump (taken before the move to PostgreSQL): this deploy restores "
                      f"PostgreSQL dumps only - go back with `make db-migrate-rollback`, or load it by hand into "
                      f"MySQL (gunzip -c {mysql_dump_in(folder)} | mysql DATABASE); nothing was changed")
    if dump is None:
        raise Failure(f"backup {name} has no database dump: not restorable")
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
    kept_db = f"{db}_before_restore"[:63]
    data_dir = spec["data_dir"].rstrip("/")
    kept_data = f"{data_dir}.before-restore-{stamp}"
    previous_link = os.path.realpath(spec["install_dir"])
    with open(spec["config_file"]) as f:
        live_config = json.load(f)
    print(f"  restoring backup {name} (Mattermost {version}, {manifest.get('kind')}, {manifest.get('created')})",
          flush=True)
    systemctl("stop", spec["service"])
    steps = []
    try:
        terminate_connections(db)
        if database_exists(kept_db):
            psql_as_postgres(f"DROP DATABASE {ident(kept_db)};")
        psql_as_postgres(f"ALTER DATABASE {ident(db)} RENAME TO {ident(kept_db)};")
        steps.append("db")
        create_database(db, owner)
        pg_restore(dump, db, owner)
        restored = read_json(os.path.join(folder, "config.json"))
        if restored:
            restored.setdefault("SqlSettings", {})["DataSource"] = live_config["SqlSettings"]["DataSource"]
            for key, value in (spec.get("config_overrides") or {}).items():  # a rehearsal's copy: harmless
                set_dotted(restored, key, value)
            account = pwd.getpwnam(spec["user"])
            write_private(spec["config_file"], json.dumps(restored, indent=4) + "\n", account.pw_uid, account.pw_gid)
            steps.append("config")
        to_bucket = (restored or live_config).get("FileSettings", {}).get("DriverName") == "amazons3"
        if spec.get("restore_data", True) and to_bucket:
            # files in a bucket: the backup's copy goes back into it (objects added since stay)
            if not spec.get("files"):
                raise Failure("the backup's files belong in a bucket the settings do not name: set files_s3_*")

            seconds = rclone(spec["files"], "copy", os.path.join(folder, "data"), remote(spec["files"]),
                             "--transfers", "8", label="backup -> bucket")
            print(f"  the backup's files copied back into the bucket {spec['files']['bucket']} in {seconds:.1f} s",
                  flush=True)
        elif spec.get("restore_data", True) and os.path.isdir(os.path.join(folder, "data")):
            os.rename(data_dir, kept_data)
            steps.append("data")
            snapshot_data(os.path.join(folder, "data"), data_dir)
            account = pwd.getpwnam(spec["user"])
            run(["chown", "-R", f"{account.pw_uid}:{account.pw_gid}", data_dir])
        link_release(spec["install_dir"], release)
        start_and_verify(spec, version)
    except BaseException as e:
        print(f"  restore failed ({e}); putting everything back", flush=True)
        systemctl("stop", spec["service"])
        if "data" in steps:
            shutil.rmtree(data_dir, ignore_errors=True)
            os.rename(kept_data, data_dir)
        if "config" in steps:
            account = pwd.getpwnam(spec["user"])
            write_private(spec["config_file"], json.dumps(live_config, indent=4) + "\n", account.pw_uid, account.pw_gid)
        if "db" in steps:
            put_database_back(kept_db, db)
        link_release(spec["install_dir"], previous_link)
        systemctl("start", spec["service"])
        raise
    if spec.get("hold"):
        write_hold(spec["hold_file"], spec["hold"], "rolled back by the operator (make rollback)")
    kept = f"database {kept_db}" + (f" and {kept_data}" if "data" in steps else "")
    print(f"restored backup {name}: Mattermost {version} is healthy; the state before the restore is kept as "
          f"{kept} - remove it once you are satisfied")


def rollback(spec):
    """Return to the release before the last upgrade, with that upgrade's backup
    (database and config; files uploaded since stay). Holds the version left."""
    current = os.path.basename(os.path.realpath(spec["install_dir"]))
    candidates = [n for n in backup_names(spec["backup_dir"])
                  if (read_json(os.path.join(spec["backup_dir"], n, "manifest.json")) or {}).get("upgraded_to") == current]
    if not candidates:
        raise Failure(f"no upgrade backup leads to the running {current}: nothing to roll back to "
                      "(use `make restore BACKUP=...` for a chosen backup)")
    restore({**spec, "backup": candidates[-1], "restore_data": False, "hold": current})


def unhold(spec):
    path = spec["hold_file"]
    hold = read_json(path)
    if not hold:
        print("no upgrade is held")
        return
    os.unlink(path)
    print(f"the hold on {hold.get('version')} is lifted: the next deploy may upgrade to it again")


def restore_check(spec):
    """After a restore: the database holds what was counted when the backup was taken, the
    data folder every file of the backup, the release's own binary accepts the config, and
    Mattermost is healthy. One line per check; a mismatch fails."""
    name = find_backup(spec["backup_dir"], spec.get("backup"))
    folder = os.path.join(spec["backup_dir"], name)
    manifest = read_json(os.path.join(folder, "manifest.json")) or {}
    problems, rows = [], []
    # Rows created after the backup was counted cannot be the backup's: the restored server's
    # own (found by CI: Mattermost made a user right after the restore started it).
    live = content_counts(spec["db"]["name"], manifest.get("counted_at_ms"))
    for table, expected in sorted((manifest.get("counts") or {}).items()):
        rows.append(f"  {table:10} backup {expected:8}  restored {live.get(table, 0):8}")
        if live.get(table) != expected:
            problems.append(f"{table}: {live.get(table)} restored, {expected} in the backup")
    backup_files = sum(len(files) for _, _, files in os.walk(os.path.join(folder, "data")))
    if files_driver(spec["config_file"]) == "amazons3" and spec.get("files"):

        live_files = len(rclone_listing(spec["files"]))  # the files are in the bucket
    else:
        live_files = sum(len(files) for _, _, files in os.walk(spec["data_dir"]))
    rows.append(f"  {'files':10} backup {backup_files:8}  restored {live_files:8}")
    if live_files < backup_files:
        problems.append(f"data: {live_files} files restored, {backup_files} in the backup")
    release = os.path.realpath(spec["install_dir"])
    problem = check_config_with(release, spec["config_file"], spec["user"])
    rows.append(f"  config     {'accepted by ' + os.path.basename(release) if not problem else 'REJECTED: ' + problem}")
    if problem:
        problems.append(f"config.json: {problem}")
    health = ping(spec["ping_url"])
    rows.append(f"  health     {'OK, ' + str(health['version']) if health['ok'] else health['error']}")
    if not health["ok"]:
        problems.append(f"Mattermost is not healthy: {health['error']}")
    print(f"restore check of {name} (taken {manifest.get('created')}):\n" + "\n".join(rows), flush=True)
    if problems:
        raise Failure("the restored server differs from the backup: " + "; ".join(problems))
    print("restore check: everything the backup holds is back")
