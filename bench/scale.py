"""Benchmark: how backups, off-server copies, restores and the upgrade outage grow with the
data - real Mattermost (10.3.0 -> 11.4.0, real migrations) on fresh Debian 13 test servers,
a restic repository on the test SFTP container.

    make bench-scale   (or: .venv/bin/python -m bench.scale [--sizes 0.1,1,4] [--files-gb 2])

For each database size: a fresh server deployed with 10.3.0; a team and a user made by the
server; posts copied in SQL from a real post the server wrote (every column as Mattermost
wrote it, only ids, times and message changed; each message 24 random words of 32 hex
digits, so dumps compress no better than real text) until the database has the size;
uploaded files (1 MB, random) for --files-gb. Then, each timed: the nightly backup (pg_dump, config,
data snapshot) and its first off-server copy; a second backup and its incremental copy;
the upgrade to 11.4.0 with a ping every 50 ms inside the server (the outage), against a
plain restart; the baseline of the dump's form: the dump as pg_dump compresses it itself
(-Fc), sent before and after the edit to the same repository - its size and what its second
copy adds, against ours (-Fc -Z0 through gzip --rsyncable), and the dump's time in both forms
(median of 3 each); what the previous upgrade design would have added to the outage (copying
the database inside PostgreSQL, CREATE DATABASE ... TEMPLATE, both strategies); and the
rebuild of a fresh server from the off-server repository alone (restic fetch, restore, checks).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time

from bench.common import on, timed
from bench.upgrade_downtime import longest_outage, start_poller, stop_poller
from tests import testhost
from tests.standin import build

SERVER, FRESH = "bench-scale", "bench-scale-fresh"
A, B = build.OLDER_ESR, build.ESR_VERSION
PASSWORD = "bench-scale-restic-password"
SEED = ("mmctl() { cd /opt/mattermost && MMCTL_LOCAL_SOCKET_PATH=/run/mattermost/local.socket "
        "runuser -u mattermost -- bin/mmctl --local \"$@\"; }")


def sh(name: str, command: str) -> str:
    return on(name, command)


def deploy(name: str, *args: str) -> tuple[float, str]:
    return timed(name, *args, env={"RESTIC_PASSWORD": PASSWORD})


def start(name: str, sftp: dict, port: int) -> None:
    testhost.stop_server(name)
    testhost.start_server(name, ssh_port=port, https_port=port + 2000, extra_data={
        "backup_offsite_repository": f"sftp:{sftp['user']}@{testhost.SFTP}:{sftp['root']}/{SERVER}",
        "backup_offsite_ssh_key": str(sftp["key"]), "backup_offsite_known_hosts": sftp["known_hosts"],
        "backup_offsite_keep": {"last": 10}, "mattermost_backup_keep": 3})


def db_bytes(name: str) -> int:
    return int(sh(name, "runuser -u postgres -- psql -XAt -d mattermost -c \"SELECT pg_database_size('mattermost')\"")
               .strip())


def seed(name: str, gigabytes: float, files_gb: float) -> None:
    sh(name, f"{SEED}; mmctl team create --name bench --display-name Bench >/dev/null && "
             "mmctl user create --username bencher --email bencher@example.org --password Bench-Password-1 >/dev/null && "
             "mmctl team users add bench bencher >/dev/null")
    target, batch, n = int(gigabytes * 1e9), 100_000, 0
    while db_bytes(name) < target:
        sh(name, "runuser -u postgres -- psql -XAtq -d mattermost -c \"INSERT INTO posts SELECT (jsonb_populate_record(p, "
                 f"jsonb_build_object('id', substr(md5('bench' || {n} || '-' || g), 1, 26), 'createat', p.createat - g, "
                 "'updateat', p.createat - g, 'type', '', 'message', "
                 "(SELECT string_agg(md5(random()::text || g || '-' || w), ' ') FROM generate_series(1, 24) w)))).* "
                 f"FROM posts p, generate_series(1, {batch}) g WHERE p.id = (SELECT id FROM posts ORDER BY createat LIMIT 1)\"")
        n += 1
    sh(name, "runuser -u postgres -- psql -XAtq -d mattermost -c 'VACUUM ANALYZE posts'")
    count = int(files_gb * 1000)
    sh(name, f"install -d -o mattermost -g mattermost /var/lib/mattermost/data/bench && for i in $(seq 1 {count}); "
             "do head -c 1000000 /dev/urandom > /var/lib/mattermost/data/bench/upload-$i.bin; done && "
             "chown -R mattermost:mattermost /var/lib/mattermost/data/bench")


def offsite(name: str) -> dict:
    return json.loads(sh(name, "cat /var/lib/mattermost-deploy/offsite.json"))


# The baseline, in the same run and repository: the dump as it was made before (pg_dump's own
# compression, -Fc), sent to the repository with `restic backup --stdin` through the server's own
# restic settings (the installed helper's restic_command/restic_env and /etc/mattermost/backup.json).
OLD_DUMP = """
import json, subprocess
exec(open("/usr/local/lib/mattermost-deploy/mmhelper.py").read(), {"__name__": "bundle"})
from mmhelper.steps.offsite import restic_command, restic_env
spec = json.load(open("/etc/mattermost/backup.json"))["offsite"]
dump = subprocess.Popen(["runuser", "-u", "postgres", "--", "pg_dump", "-Fc", "-d", "mattermost"], stdout=subprocess.PIPE)
out = subprocess.run(restic_command(spec, "backup", "--json", "--stdin", "--stdin-filename", "old-format.dump",
                     "--tag", "bench-old-format", "--host", "bench-old-format"), stdin=dump.stdout,
                     env=restic_env(spec), capture_output=True, text=True, check=True).stdout
assert dump.wait() == 0
print(json.dumps([json.loads(line) for line in out.splitlines() if '"summary"' in line][-1]))
"""


def old_format_copy(name: str) -> dict:
    return json.loads(sh(name, f"python3 - <<'EOF'\n{OLD_DUMP}\nEOF").strip().splitlines()[-1])


def dump_seconds(name: str, rounds: int = 3) -> dict:
    """The time of the dump alone, both forms, alternated, median of `rounds` each: ours as the
    helper makes it (mmhelper/steps/backup.py pg_dump) and pg_dump's own compression (-Fc, the form
    before)."""
    forms = {"ours": "set -o pipefail; runuser -u postgres -- pg_dump -Fc -Z0 -d mattermost | "
                     "gzip --rsyncable -6 -c > /var/tmp/bench-dump.gz",
             "old": "runuser -u postgres -- pg_dump -Fc -d mattermost > /var/tmp/bench-dump"}
    times: dict = {form: [] for form in forms}
    for _ in range(rounds):
        for form, command in forms.items():
            started = time.monotonic()
            sh(name, f"bash -c {shlex.quote(command)}")
            times[form].append(time.monotonic() - started)
    sh(name, "rm -f /var/tmp/bench-dump.gz /var/tmp/bench-dump")
    return {form: statistics.median(values) for form, values in times.items()}


def template_copy_seconds(name: str) -> dict:
    """What the previous design put into the outage: a copy of the database in PostgreSQL."""
    sh(name, "systemctl stop mattermost")
    out = {}
    try:
        for strategy in ("WAL_LOG", "FILE_COPY"):
            started = time.monotonic()
            sh(name, "runuser -u postgres -- psql -XAtq -c \"CREATE DATABASE bench_copy WITH TEMPLATE mattermost "
                     f"STRATEGY {strategy}\" -c 'DROP DATABASE bench_copy'")
            out[strategy] = time.monotonic() - started
    finally:
        sh(name, "systemctl start mattermost")
    return out


def measure(size: float, files_gb: float, sftp: dict) -> dict:
    testhost.exec_on_container(testhost.SFTP, f"rm -rf {sftp['root']}/{SERVER}")
    start(SERVER, sftp, 22321)
    deploy(SERVER, "--data", f"mattermost_version={A}")
    seed(SERVER, size, files_gb)
    row = {"db_gb": db_bytes(SERVER) / 1e9, "files_gb": files_gb}
    took, _ = deploy(SERVER, "verbs/backup.py")
    first = offsite(SERVER)
    name = first["last_ok_backup"]
    row["backup_s"] = took - first["seconds"]
    row["backup_gb"] = int(sh(SERVER, f"du -sb /var/backups/mattermost/{name} | cut -f1")) / 1e9
    row["offsite_first_s"], row["offsite_first_gb"] = first["seconds"], (first.get("added_bytes") or 0) / 1e9
    row["dump_gb"] = json.loads(sh(SERVER, f"cat /var/backups/mattermost/{name}/manifest.json"))["database_dump_bytes"] / 1e9
    row["old_dump_gb"] = old_format_copy(SERVER)["total_bytes_processed"] / 1e9
    sh(SERVER, "runuser -u postgres -- psql -XAtq -d mattermost -c \"UPDATE posts SET message = message || ' edited' "
               "WHERE id IN (SELECT id FROM posts ORDER BY createat DESC LIMIT 1000)\"")
    deploy(SERVER, "verbs/backup.py")
    second = offsite(SERVER)
    row["offsite_second_s"], row["offsite_second_gb"] = second["seconds"], (second.get("added_bytes") or 0) / 1e9
    row["old_second_gb"] = old_format_copy(SERVER)["data_added"] / 1e9
    dumps = dump_seconds(SERVER)
    row["dump_s"], row["old_dump_s"] = dumps["ours"], dumps["old"]
    copies = template_copy_seconds(SERVER)
    row["template_wal_s"], row["template_file_s"] = copies["WAL_LOG"], copies["FILE_COPY"]
    start_poller(SERVER)
    testhost.exec_on(SERVER, "systemctl restart mattermost")
    time.sleep(3)
    row["restart_s"] = longest_outage(stop_poller(SERVER))
    start_poller(SERVER)
    deploy(SERVER, "--data", f"mattermost_version={B}")
    time.sleep(3)
    row["upgrade_outage_s"] = longest_outage(stop_poller(SERVER))
    deploy(SERVER, "verbs/backup.py", "--data", f"mattermost_version={B}")
    start(FRESH, sftp, 22323)
    deploy(FRESH, "--data", f"mattermost_version={B}")
    took, _ = deploy(FRESH, "verbs/rebuild.py", "--data", f"mattermost_version={B}")
    row["rebuild_s"] = took
    if os.environ.get("MMDEPLOY_KEEP_TEST_SERVERS") != "1":
        for name in (SERVER, FRESH):
            testhost.stop_server(name)
    return row


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale")
    parser.add_argument("--sizes", default="0.1,1,4", help="database sizes in GB")
    parser.add_argument("--files-gb", type=float, default=2.0, help="uploaded files in GB")
    args = parser.parse_args(argv)
    testhost.ensure_upstream(testhost.client())
    sftp = testhost.ensure_sftp(testhost.client())
    rows = []
    for size in (float(x) for x in args.sizes.split(",")):
        print(f"database of {size} GB and {args.files_gb} GB of files ...", flush=True)
        rows.append(measure(size, args.files_gb, sftp))
        print(json.dumps(rows[-1]), flush=True)
    columns = [("db_gb", "DB GB"), ("backup_s", "backup s"), ("backup_gb", "backup GB"),
               ("offsite_first_s", "1st copy s"), ("offsite_second_s", "2nd copy s"), ("offsite_second_gb", "2nd new GB"),
               ("dump_gb", "dump GB"), ("old_dump_gb", "-Fc dump GB"), ("old_second_gb", "-Fc 2nd new GB"),
               ("dump_s", "dump s"), ("old_dump_s", "-Fc dump s"),
               ("rebuild_s", "rebuild s"), ("restart_s", "restart s"), ("upgrade_outage_s", "upgrade outage s"),
               ("template_wal_s", "DB copy WAL_LOG s"), ("template_file_s", "DB copy FILE_COPY s")]
    print(f"\nreal Mattermost {A} -> {B}, {args.files_gb} GB of uploaded files, restic over SFTP; one round per size")
    print("  ".join(f"{label:>12}" for _, label in columns))
    for row in rows:
        print("  ".join(f"{row[key]:12.2f}" for key, _ in columns))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
