"""Benchmark: `make move-database` - what users wait - by PostgreSQL's logical replication
against dump and restore, side by side in one run, at several database sizes. REAL
Mattermost 11.4, REAL PostgreSQL 17 on two Debian 13 containers (a single server with the
content, and a database server converged by this deploy), TLS between them.

    make bench-move-db   (or: .venv/bin/python -m bench.move_database [--sizes 0.4,4] [--rounds 3])

Per size: the single server is seeded with posts to the size (pg_database_size), then each
round moves it by replication, takes the way back (make move-database-rollback), moves it by
dump and restore, and takes the way back again; the outage (Mattermost stopped to started
and healthy on the new database) is read from the move's own record and from the clock
here. Medians per method; the ratio replication / dump per size.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys

from bench.common import on, timed
from tests import testhost
from tests.e2e import chat
from tests.standin import build

SRC, DB = "bench-mvsrc", "bench-mvdb"
PORT = 24463
PASSWORD = "bench-move-db-password-61"  # the bench's throwaway database password
CA_DIR = testhost.LOCAL / "db-ca-bench"
VERSION = build.ESR_VERSION


def sh(name: str, command: str) -> str:
    return on(name, command)


def run(target: str, *args: str) -> tuple[float, str]:
    verb = [args[0]] if args and args[0].endswith(".py") else []
    return timed(target, *verb, "--data", f"mattermost_version={VERSION}", *args[len(verb):],
                 env={"MATTERMOST_DB_PASSWORD": PASSWORD}, timeout=6 * 3600)


def db_bytes() -> int:
    return int(sh(SRC, "runuser -u postgres -- psql -XAt -d mattermost -c \"SELECT pg_database_size('mattermost')\""))


def seed_to(gigabytes: float) -> None:
    target, batch, n = int(gigabytes * 1e9), 50_000, 0
    while db_bytes() < target:
        sh(SRC, "runuser -u postgres -- psql -XAtq -d mattermost -c \"INSERT INTO posts SELECT (jsonb_populate_record(p, "
                f"jsonb_build_object('id', substr(md5('bench' || {gigabytes} || '-' || {n} || '-' || g), 1, 26), "
                "'createat', p.createat - g, 'updateat', p.createat - g, 'type', '', 'message', "
                "(SELECT string_agg(md5(random()::text || g || '-' || w), ' ') FROM generate_series(1, 24) w)))).* "
                f"FROM posts p, generate_series(1, {batch}) g WHERE p.id = (SELECT id FROM posts WHERE type = '' "
                "ORDER BY createat LIMIT 1)\"")
        n += 1
    sh(SRC, "runuser -u postgres -- psql -XAtq -d mattermost -c 'VACUUM ANALYZE posts'")


def setup() -> None:
    for name in (DB, SRC):
        testhost.stop_server(name)
    shutil.rmtree(CA_DIR, ignore_errors=True)
    testhost.start_server(DB, ssh_port=22342)
    testhost.start_server(SRC, ssh_port=22341, https_port=PORT, extra_data={"db_ca_dir": str(CA_DIR)})
    db_ip, src_ip, db_name = testhost.container_ip(DB), testhost.container_ip(SRC), testhost.container_name(DB)
    testhost.start_server(DB, ssh_port=22342, extra_data={
        "mattermost_role": "database", "db_listen_address": db_ip, "db_server_name": db_name,
        "db_clients": [src_ip], "db_ca_dir": str(CA_DIR)})
    run(f"{DB},{SRC}")
    chat.mmctl(SRC, "team create --name bench --display-name Bench")
    chat.create_user(SRC, "bencher", team="bench")
    olga = chat.login(PORT, "bencher")
    channel = olga.channels.get_channel_by_name_and_team_name("bench", "town-square")
    olga.posts.create_post({"channel_id": channel["id"], "message": "the first post"})
    testhost.start_server(SRC, ssh_port=22341, https_port=PORT, extra_data={
        "db_ca_dir": str(CA_DIR), "mattermost_role": "app", "db_host": db_name, "db_move_source_address": src_ip})
    run(f"{DB},{SRC}")  # the move is now pending: nothing changes but the settings


def move(method: str) -> dict:
    seconds, output = run(SRC, "verbs/job.py", "--data", "job=move-database", "--data", f"db_move_method={method}")
    record = json.loads(sh(SRC, "cat /var/lib/mattermost-deploy/db-move.json"))
    run(SRC, "verbs/job.py", "--data", "job=move-database", "--data", "job_action=rollback")
    return {"outage_s": record["outage_s"], "verify_s": record.get("verify_s"),
            "prepare_outage_s": record.get("prepare_outage_s"),
            "copy_s": record.get("copy_s"), "catch_up_s": record.get("catch_up_s"), "verb_s": round(seconds, 1)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="0.4,4", help="database sizes in GB")
    parser.add_argument("--rounds", default="3", help="rounds per size (one number, or one per size: 3,1)")
    args = parser.parse_args(argv)
    setup()
    results = []
    sizes = [float(s) for s in args.sizes.split(",")]
    rounds_of = [int(r) for r in args.rounds.split(",")]
    rounds_of += [rounds_of[-1]] * (len(sizes) - len(rounds_of))
    for size, n_rounds in zip(sizes, rounds_of, strict=True):
        seed_to(size)
        gb = db_bytes() / 1e9
        print(f"database of {gb:.2f} GB: {n_rounds} rounds, replication and dump alternating ...", flush=True)
        rounds = {"replication": [], "dump": []}
        for _ in range(n_rounds):
            for method in ("replication", "dump"):
                rounds[method].append(move(method))
                print(f"  {method}: {rounds[method][-1]}", flush=True)
        row = {"db_gb": round(gb, 2), "rounds": n_rounds}
        for method, values in rounds.items():
            for key in ("outage_s", "verify_s", "copy_s", "verb_s", "prepare_outage_s"):
                numbers = [v[key] for v in values if v.get(key) is not None]
                row[f"{method}_{key}"] = round(statistics.median(numbers), 1) if numbers else None
        row["ratio"] = round(row["replication_outage_s"] / row["dump_outage_s"], 2)
        results.append(row)
    print(f"\nreal Mattermost {VERSION}, PostgreSQL 17 to PostgreSQL 17 over TLS (two Debian 13 containers on one "
          "machine); medians\n")
    print("| DB GB | rounds | users wait: replication | of which the check | copy while serving | restart before "
          "| users wait: dump and restore | of which the copy | ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(f"| {r['db_gb']} | {r['rounds']} | {r['replication_outage_s']} s | {r['replication_verify_s']} s | "
              f"{r['replication_copy_s']} s | {r['replication_prepare_outage_s']} s | {r['dump_outage_s']} s | "
              f"{r['dump_copy_s']} s | {r['ratio']} |")
    for name in (DB, SRC):
        testhost.stop_server(name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
