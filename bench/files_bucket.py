"""Benchmark: files in a bucket against files on the local disk, side by side in one run, with
REAL Mattermost 11.4 behind nginx and a REAL SeaweedFS cluster (tests/seaweedfs.py: a
master, two volume servers with every object on both, the S3 gateway over TLS).

    make bench-files     (or: .venv/bin/python -m bench.files_bucket [--rounds 3] [--files 1000,10000])

1. Upload and download of a 1 MB and a 40 MB file by the PyPI client through nginx, the files
   local, then in the bucket (--rounds each, alternating sizes, medians).
2. `make move-files`: users' wait (stop, final pass, switch, start) with --files small files
   (10 KB, random) in the data folder, moved into the bucket; the move back between sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

from bench.common import on, table, timed
from tests import seaweedfs, testhost
from tests.e2e import chat

NAME, PORT = "bench-files", 24462


def sh(command: str) -> str:
    return on(NAME, command)


def keys() -> dict:
    return {"MATTERMOST_S3_ACCESS_KEY_ID": seaweedfs.KEYS["mattermost"][0],
            "MATTERMOST_S3_SECRET_ACCESS_KEY": seaweedfs.KEYS["mattermost"][1],
            "MATTERMOST_S3_BACKUP_ACCESS_KEY_ID": seaweedfs.KEYS["backup"][0],
            "MATTERMOST_S3_BACKUP_SECRET_ACCESS_KEY": seaweedfs.KEYS["backup"][1]}


def run(*args: str) -> str:
    return timed(NAME, *args, env=keys())[1]


def transfer(client, channel: str, size: int) -> tuple[float, float]:
    """(upload s, download s) of one file of `size` random bytes through nginx."""
    body = os.urandom(size)
    started = time.monotonic()
    info = client.files.upload_file(channel, files={"files": (f"bench-{size}.bin", body)})["file_infos"][0]
    up = time.monotonic() - started
    started = time.monotonic()
    got = client.files.get_file(info["id"]).content
    down = time.monotonic() - started
    assert got == body
    return up, down


def transfers(client, channel: str, rounds: int) -> dict:
    out = {}
    for size in (1 << 20, 40 << 20):
        ups, downs = [], []
        for _ in range(rounds):
            up, down = transfer(client, channel, size)
            ups.append(up)
            downs.append(down)
        out[f"{size >> 20} MB"] = {"upload_s": round(statistics.median(ups), 2),
                                   "download_s": round(statistics.median(downs), 2)}
    return out


def seed_files(count: int) -> None:
    have = int(sh("ls /var/lib/mattermost/data/bench 2>/dev/null | wc -l").strip() or 0)
    sh(f"install -d -o mattermost -g mattermost /var/lib/mattermost/data/bench && cd /var/lib/mattermost/data/bench "
       f"&& for i in $(seq {have + 1} {count}); do head -c 10240 /dev/urandom > f-$i.bin; done && "
       "chown -R mattermost:mattermost /var/lib/mattermost/data/bench")


def move(back: bool = False) -> dict:
    run("verbs/job.py", "--data", "job=move-files", *(["--data", "move_back=true"] if back else []))
    state = json.loads(sh("cat /var/lib/mattermost-deploy/files-move.json"))
    return {k: state.get(k) for k in ("outage_s", "copy_s", "final_s")}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.files_bucket")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--files", default="1000,10000")
    args = parser.parse_args(argv)
    store = seaweedfs.ensure_cluster()
    testhost.stop_server(NAME)
    testhost.start_server(NAME, ssh_port=22342, https_port=PORT, extra_data={
        "files_s3_bucket": store["bucket"], "files_s3_endpoint": store["endpoint"], "files_s3_ca_file": store["ca_file"]})
    run()
    chat.mmctl(NAME, "team create --name bench --display-name Bench")
    chat.create_user(NAME, "bencher", team="bench")
    client = chat.login(PORT, "bencher")
    channel = client.channels.get_channel_by_name_and_team_name("bench", "town-square")["id"]
    local = transfers(client, channel, args.rounds)
    print(f"[bench] local: {local}", file=sys.stderr, flush=True)
    moves = []
    for count in [int(n) for n in args.files.split(",")]:
        seed_files(count)
        moves.append({"files": count, **move()})
        print(f"[bench] move of {count} files: {moves[-1]}", file=sys.stderr, flush=True)
        if count != int(args.files.split(",")[-1]):
            move(back=True)
    bucket = transfers(chat.login(PORT, "bencher"), channel, args.rounds)
    print(f"[bench] bucket: {bucket}", file=sys.stderr, flush=True)
    testhost.stop_server(NAME)
    print(table(["file", "upload local", "upload bucket", "download local", "download bucket"],
                [[size, f"{local[size]['upload_s']} s", f"{bucket[size]['upload_s']} s", f"{local[size]['download_s']} s",
                  f"{bucket[size]['download_s']} s"] for size in local]))
    print("\n" + table(["files in data/", "users wait (s)", "final pass (s)", "copy while serving (s)"],
                       [[m["files"], m["outage_s"], m["final_s"], m["copy_s"]] for m in moves]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
