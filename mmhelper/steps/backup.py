"""Backups: database dump, config.json and a data snapshot that never shares a file with the
live folder; published complete or not at all; pruned.
"""

import contextlib
import json
import os
import re
import shutil
import stat
import subprocess
import time

from mmhelper.parts import mysql
from mmhelper.parts.common import Failure, read_json
from mmhelper.parts.pg import literal, pg_command, psql_as_postgres
from mmhelper.parts.proc import pipe
from mmhelper.parts.rclone import rclone, remote
from mmhelper.steps.offsite import offsite_copy

BACKUP_NAME = re.compile(r"^\d{8}-\d{6}-\d+\.\d+\.\d+-[a-z-]+$")


def backup_names(backup_dir):
    """Published backups, oldest first (names start with their UTC time)."""
    try:
        names = os.listdir(backup_dir)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if BACKUP_NAME.match(n)
                  and os.path.exists(os.path.join(backup_dir, n, "manifest.json")))


def prune_backups(backup_dir, keep):
    names = backup_names(backup_dir)
    for name in names[:max(0, len(names) - keep)]:
        shutil.rmtree(os.path.join(backup_dir, name), ignore_errors=True)
        print(f"  removed old backup {name} (keeping {keep})", flush=True)


def prune_releases(releases_dir, keep, in_use):
    versions = sorted((v for v in os.listdir(releases_dir) if re.fullmatch(r"\d+\.\d+\.\d+", v)),
                      key=lambda v: tuple(int(x) for x in v.split(".")))
    for version in versions[:max(0, len(versions) - keep)]:
        if version not in in_use:
            shutil.rmtree(os.path.join(releases_dir, version), ignore_errors=True)
            print(f"  removed old release folder {version} (keeping {keep})", flush=True)


def database_size(name):
    out = psql_as_postgres(f"SELECT pg_database_size({literal(name)});").stdout.strip()
    return int(out or 0)


# What a restore must bring back, counted when the dump is taken (Mattermost's tables).
COUNTED = {"posts": "deleteat = 0", "fileinfo": "deleteat = 0", "users": "true", "teams": "deleteat = 0",
           "channels": "deleteat = 0", "emoji": "deleteat = 0", "reactions": "deleteat = 0"}


def content_counts(database_name, created_until_ms=None):
    """Rows of the tables above that Mattermost shows (not deleted), for restore checks; with
    `created_until_ms`, only rows created by then (a restored server's own new rows - a bot
    Mattermost makes after it starts, its system messages - are not the backup's)."""
    tables = set(psql_as_postgres("SELECT tablename FROM pg_tables WHERE schemaname = 'public';",
                                  database_name).stdout.split())
    until = f" AND createat <= {int(created_until_ms)}" if created_until_ms else ""
    parts = [f"SELECT '{table}', count(*) FROM {table} WHERE {where}{until}" for table, where in COUNTED.items()
             if table in tables]
    if not parts:
        return {}
    out = psql_as_postgres(" UNION ALL ".join(parts) + ";", database_name).stdout
    return {name: int(count) for name, count in (line.split("|") for line in out.splitlines() if "|" in line)}


# The dump: pg_dump's custom format, uncompressed, piped through `gzip --rsyncable`. pg_dump's
# own compression (-Fc -Z6) makes one zlib stream per table, so one row that moves (an edit, a
# row filling space VACUUM freed) changes every compressed byte after it: restic then re-sent
# most of the dump each night (541 MB of a 4 GB database after editing 1,000 posts, bench/scale).
# --rsyncable restarts the compressor at points chosen by the content, so the compressed bytes
# resynchronise a few KB after a change and restic's content-defined chunks dedupe the rest.
# The same deflate level, about the same size on disk. Backups made before keep their database.dump.
DUMP = "database.dump.gz"
DUMP_NAMES = (DUMP, "database.dump")
# A server still on MySQL/MariaDB (an old hand install before `make db-migrate`): mysqldump.
MYSQL_DUMP = "database.mysql.sql.gz"


def mysql_source(config_file):
    """The parsed MySQL DataSource when config.json says the database is MySQL, else None."""
    config = read_json(config_file) or {}
    sql = config.get("SqlSettings") or {}
    return mysql.parse_mysql_datasource(sql.get("DataSource")) if sql.get("DriverName") == "mysql" else None


def mysql_content_counts(ds):
    """COUNTED's rows in MySQL (Mattermost's CamelCase table names there)."""
    names = {n.lower(): n for n in mysql.tables(ds)}
    parts = [f"SELECT '{table}', COUNT(*) FROM `{names[table]}` WHERE {where}" for table, where in COUNTED.items()
             if table in names]
    return {name: int(count) for name, count in mysql.query(ds, " UNION ALL ".join(parts) + ";")} if parts else {}


def dump_in(folder):
    """The database dump of a backup folder (either name), or None."""
    for name in DUMP_NAMES:
        path = os.path.join(folder, name)
        if os.path.exists(path):
            return path
    return None


def files_driver(config_file):
    config = read_json(config_file) if config_file else None
    return ((config or {}).get("FileSettings") or {}).get("DriverName") or "local"


def mirror_bucket(files, mirror):
    """The bucket's objects in a local folder (kept between backups, root only)."""

    os.makedirs(mirror, mode=0o700, exist_ok=True)
    seconds = rclone(files, "sync", remote(files), mirror, "--transfers", "8", label="bucket -> backup mirror")
    print(f"  the bucket {files['bucket']} mirrored for the backup in {seconds:.1f} s", flush=True)
    return mirror


def mysql_dump_in(folder):
    path = os.path.join(folder, MYSQL_DUMP)
    return path if os.path.exists(path) else None


def pg_dump(database_name, dest):
    """pg_dump -Fc -Z0 | gzip --rsyncable, as the postgres user, written by root into a
    root-only file; both ends of the pipe must succeed."""
    dump, env = pg_command("pg_dump", database_name, "-Fc", "-Z0")
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        (dump_status, dump_err), (gzip_status, gzip_err) = pipe(
            dump, ["gzip", "--rsyncable", "-6", "-c"], subprocess.DEVNULL, f, env=env)
    if dump_status != 0:
        if "server version mismatch" in dump_err:  # pg_dump must be of the server's major version or newer
            raise Failure(f"pg_dump of {database_name} failed: {dump_err} - install the client of the database "
                          "server's major version on this server (apt-get install postgresql-client-<major>, "
                          "from PGDG when Debian has none) and run again")
        raise Failure(f"pg_dump of {database_name} failed: {dump_err}")
    if gzip_status != 0:
        raise Failure(f"compressing the dump of {database_name} failed: {gzip_err}")


def pg_restore(dump, database_name, owner):
    """Load a dump (either form) into an empty database, stopping at the first error."""
    restore, env = pg_command("pg_restore", database_name, "--no-owner", f"--role={owner}", "--exit-on-error")
    with open(dump, "rb") as f:
        if not dump.endswith(".gz"):
            result = subprocess.run(restore, stdin=f, capture_output=True, env=env)
            status, error = result.returncode, result.stderr.decode(errors="replace").strip()[-300:]
        else:
            (gunzip_status, gunzip_err), (status, error) = pipe(["gzip", "-dc"], restore, f, subprocess.DEVNULL,
                                                                 env=env)
            if gunzip_status != 0:  # the cause, whatever pg_restore made of the short input
                raise Failure(f"pg_restore failed: the dump {dump} does not decompress: {gunzip_err}")
    if status != 0:
        raise Failure(f"pg_restore failed: {error}")


def snapshot_data(data_dir, dest, previous=None):
    """A copy of the data folder that never shares a file with the live one: Mattermost's
    local file store rewrites files in place (os.O_TRUNC in platform/shared/filestore/
    localstore.go: profile images, plugin bundles), so a hard link into the live folder would
    change the backup with it. A file unchanged since the `previous` backup's copy (same
    size and modification time) is hard-linked to THAT copy instead (rsync --link-dest
    style): backups share files only among themselves, and nothing writes into a backup."""
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    if not os.path.isdir(data_dir):
        os.makedirs(dest)
        return {"copied": 0, "linked": 0}
    counts = {"copied": 0, "linked": 0}
    same_fs = previous and os.path.isdir(previous) and os.stat(previous).st_dev == os.stat(os.path.dirname(dest)).st_dev
    for root, dirs, files in os.walk(data_dir):
        rel = os.path.relpath(root, data_dir)
        target = os.path.normpath(os.path.join(dest, rel))
        os.makedirs(target, exist_ok=True)
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            src, dst = os.path.join(root, name), os.path.join(target, name)
            st = os.lstat(src)
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(src), dst)
                os.lchown(dst, st.st_uid, st.st_gid)
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            old = os.path.join(previous, rel, name) if same_fs else None
            try:
                old_st = os.lstat(old) if old else None
            except FileNotFoundError:
                old_st = None
            if (old_st and stat.S_ISREG(old_st.st_mode) and old_st.st_size == st.st_size
                    and old_st.st_mtime_ns == st.st_mtime_ns):
                os.link(old, dst)
                counts["linked"] += 1
                continue
            try:
                shutil.copy2(src, dst)
            except FileNotFoundError:  # removed while we copied (the server keeps serving)
                continue
            os.chown(dst, st.st_uid, st.st_gid)
            counts["copied"] += 1
    # Folders last: their owners, modes and times as in the source.
    for root, dirs, _ in os.walk(data_dir, topdown=False):
        for path in [root] + [os.path.join(root, d) for d in dirs if not os.path.islink(os.path.join(root, d))]:
            rel = os.path.relpath(path, data_dir)
            target = os.path.normpath(os.path.join(dest, rel))
            with contextlib.suppress(FileNotFoundError):
                st = os.stat(path)
                os.chown(target, st.st_uid, st.st_gid)
                shutil.copystat(path, target)
    return counts


class BackupWriter:
    """A backup folder that appears under its final name only when complete."""

    def __init__(self, backup_dir, version, kind):
        os.makedirs(backup_dir, mode=0o700, exist_ok=True)
        os.chmod(backup_dir, 0o700)
        self.backup_dir = backup_dir
        self.name = f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{version}-{kind}"
        self.partial = os.path.join(backup_dir, f".partial-{self.name}")
        shutil.rmtree(self.partial, ignore_errors=True)
        os.makedirs(self.partial, mode=0o700)
        self.manifest = {"name": self.name, "version": version, "kind": kind,
                         "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    def config(self, config_file):
        shutil.copy2(config_file, os.path.join(self.partial, "config.json"))
        os.chmod(os.path.join(self.partial, "config.json"), 0o600)

    def data(self, data_dir, config_file=None, files=None):
        """The uploaded files: the local data folder, or - when config.json says they are in a
        bucket - the bucket mirrored first into a folder beside the backups (rclone sync with
        the read-only backup key: only what changed since the last backup comes over), then
        snapshotted like a data folder."""
        names = backup_names(self.backup_dir)
        previous = os.path.join(self.backup_dir, names[-1], "data") if names else None
        source = data_dir
        if files_driver(config_file) == "amazons3":
            if not files:
                raise Failure("config.json keeps the files in a bucket that the settings do not name: set "
                              "files_s3_bucket and files_s3_endpoint (and the keys), then `make deploy`")
            source = mirror_bucket(files, os.path.join(self.backup_dir, ".files-mirror"))
            self.manifest["files_from"] = f"bucket {files['bucket']}"
        counts = snapshot_data(source, os.path.join(self.partial, "data"), previous)
        self.manifest["data_files"] = counts

    def database(self, database_name):
        pg_dump(database_name, os.path.join(self.partial, DUMP))
        self.manifest["counts"] = content_counts(database_name)
        self.manifest["counted_at_ms"] = int(time.time() * 1000)

    def mysql_database(self, ds):
        mysql.dump(ds, os.path.join(self.partial, MYSQL_DUMP))
        self.manifest["database"] = "mysql"
        self.manifest["counts"] = mysql_content_counts(ds)

    def publish(self, **extra):
        self.manifest.update(extra)
        dump = dump_in(self.partial) or mysql_dump_in(self.partial)
        self.manifest["database_dump_bytes"] = os.path.getsize(dump) if dump else 0
        with open(os.path.join(self.partial, "manifest.json"), "w") as f:
            json.dump(self.manifest, f, indent=1)
        final = os.path.join(self.backup_dir, self.name)
        os.rename(self.partial, final)
        return final

    def discard(self):
        shutil.rmtree(self.partial, ignore_errors=True)


def backup(spec):
    """A backup while Mattermost keeps serving: pg_dump (a consistent snapshot of the
    database), config.json, then the data folder - taken after the dump, so it holds
    every file the dump refers to. Published complete or not at all; old ones pruned;
    then sent off the server when a repository is configured (a failed copy is reported,
    the local backup stays)."""
    version = spec.get("version") or os.path.basename(os.path.realpath(spec["install_dir"]))
    writer = BackupWriter(spec["backup_dir"], version, spec.get("kind", "manual"))
    try:
        source = mysql_source(spec["config_file"])
        if source:
            print(f"  dumping the MySQL database {source['database']} (the server is not on PostgreSQL yet)", flush=True)
            writer.mysql_database(source)
        else:
            print(f"  dumping database {spec['db']['name']}", flush=True)
            writer.database(spec["db"]["name"])
        writer.config(spec["config_file"])
        writer.data(spec["data_dir"], spec["config_file"], spec.get("files"))
        final = writer.publish()
    except BaseException:
        writer.discard()
        raise
    prune_backups(spec["backup_dir"], spec["keep"])
    print(f"backup {writer.name} written to {final}", flush=True)
    if spec.get("offsite"):
        try:
            offsite_copy(spec["offsite"], final, writer.name)
        except Failure as e:
            if spec.get("offsite_required", True):
                raise
            print(f"  warning: {e}", flush=True)  # recorded: make status and the report show it


def find_backup(backup_dir, wanted):
    names = backup_names(backup_dir)
    if not names:
        raise Failure(f"no backup in {backup_dir}: take one with `make backup`")
    if wanted in (None, "", "latest"):
        return names[-1]
    name = os.path.basename(wanted.rstrip("/"))
    if name not in names:
        raise Failure(f"no backup {name!r} in {backup_dir}; there are: {', '.join(names[-5:])}")
    return name
