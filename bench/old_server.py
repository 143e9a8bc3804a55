"""Benchmark: how long users wait when an old hand install moves - MySQL/MariaDB to
PostgreSQL (`make db-migrate`) and each hop of the upgrade chain 5.39 -> 6.3 -> 10.3 -> 11.4 -
with REAL Mattermost (tests/realmm builds), Debian 12's MariaDB 10.11, PostgreSQL 15 and
pgloader 3.6.7, side by side with the documented manual way, in one run.

    make bench-old       (or: .venv/bin/python -m bench.old_server [--posts 20000,200000] [--rounds 3])

Per size: a fresh Debian 12 test server, Mattermost 5.39 installed by hand on MariaDB as the
old guide did (tests/oldserver.py: content made through the old command line and the API),
then --posts more posts written straight into MySQL (copies of a real post with random text,
as a busy server has them), adopted by `make deploy`. Then, alternating, --rounds times:
  (a) `make db-migrate`: the outage from the stop to the healthy ping, as the helper records
      it (stop, pgloader, the check of every row of every table, switch, start), then
      `make db-migrate-rollback` for the next round;
  (b) the manual way Mattermost documents (its migration-assist tool is not served here; its
      core is pgloader into a schema made by the same version): stop, the same pgloader
      command, DataSource switched, start, healthy ping - no check of what arrived; then put
      back on MySQL.
Then once: `make db-migrate` and `make upgrade` through the chain; each hop's outage as the
helper prints it (stop; start with migrations and health), against the documented tarball
procedure's outage for the same hop, derived: the same start plus what that procedure does
while users wait (pg_dump of the database and `cp -ra` of the install, both timed here on the
same server just before the hop). Medians; ratios in the same run.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time

from bench.common import on, table, timed
from tests import oldserver, testhost
from tests.standin import build

OLD = oldserver_version = build.OLD_RELEASES[0]
NAME = "bench-old"
PASSWORD = "bench-old-mysql-pw"  # the bench server's MySQL password (a throwaway container)

BULK = """INSERT INTO Posts (Id, CreateAt, UpdateAt, EditAt, DeleteAt, IsPinned, UserId, ChannelId, RootId, ParentId,
 OriginalId, Message, Type, Props, Hashtags, Filenames, FileIds, HasReactions, RemoteId)
SELECT LEFT(MD5(CONCAT('bench', {round}, '-', seq)), 26), p.CreateAt - seq, p.CreateAt - seq, 0, 0, 0, p.UserId,
 p.ChannelId, '', '', '', (SELECT GROUP_CONCAT(MD5(CONCAT(RAND(), seq, w.seq)) SEPARATOR ' ') FROM seq_1_to_24 w),
 '', '{{}}', '', '[]', '[]', 0, NULL
FROM seq_1_to_{batch}, (SELECT * FROM Posts WHERE Type = '' ORDER BY CreateAt LIMIT 1) p"""

MANUAL = """set -e
python3 - <<'EOF'
import json, time, subprocess, urllib.request
cfg = "/var/lib/mattermost/config/config.json"
c = json.load(open(cfg))
mysql_sql = dict(c["SqlSettings"])
pw = open("/etc/mattermost/private/db-password").read().strip()
t0 = time.time()
subprocess.run(["systemctl", "stop", "mattermost"], check=True)
t1 = time.time()
env = dict(line.split("=", 1) for line in open("/root/manual.env").read().splitlines())
subprocess.run(["pgloader", "/root/manual.load"], check=True, capture_output=True, env={**__import__("os").environ, **env})
t2 = time.time()
c["SqlSettings"]["DriverName"] = "postgres"
c["SqlSettings"]["DataSource"] = "postgres://mmuser:" + pw + "@localhost:5432/mattermost?sslmode=disable&connect_timeout=10"
json.dump(c, open(cfg, "w"), indent=4)
subprocess.run(["systemctl", "start", "mattermost"], check=True)
while True:
    try:
        if urllib.request.urlopen("http://127.0.0.1:8065/api/v4/system/ping", timeout=1).status == 200:
            break
    except Exception:
        time.sleep(0.2)
outage = time.time() - t0
steps = {"stop_s": round(t1 - t0, 2), "copy_s": round(t2 - t1, 2), "start_s": round(time.time() - t2, 2)}
subprocess.run(["systemctl", "stop", "mattermost"], check=True)
c["SqlSettings"] = mysql_sql
json.dump(c, open(cfg, "w"), indent=4)
subprocess.run(["systemctl", "start", "mattermost"], check=True)
print(json.dumps({"outage_s": round(outage, 2), **steps}))
EOF
"""


def sh(command: str) -> str:
    return on(NAME, command)


def run(*args: str, timeout: int = 7200) -> str:
    return timed(NAME, *args, timeout=timeout)[1]


def mysql_mb() -> float:
    out = sh("mysql -N -B -e \"SELECT SUM(DATA_LENGTH + INDEX_LENGTH) FROM information_schema.TABLES "
             "WHERE TABLE_SCHEMA = 'mattermost'\"")
    return int(out.strip()) / 2**20


def prepare(posts: int) -> dict:
    testhost.stop_server(NAME)
    testhost.start_server(NAME, ssh_port=22341, https_port=24461, distro="bookworm",
                          extra_data={"mattermost_allow_below_7_1": True})
    oldserver.install(NAME, OLD, "mysql", PASSWORD, "https://127.0.0.1:24461")
    oldserver.seed(NAME)
    batch, done = 20_000, 0
    while done < posts:
        n = min(batch, posts - done)
        sh(f"mysql -D mattermost -e \"{BULK.format(round=done, batch=n)}\"")
        done += n
    sh("systemctl restart mattermost && sleep 2")
    run()  # adoption; the upgrade waits for the migration
    return {"posts": int(sh("mysql -N -B -D mattermost -e 'SELECT COUNT(*) FROM Posts'").strip()),
            "mysql_mb": round(mysql_mb(), 1)}


def ours() -> dict:
    run("verbs/job.py", "--data", "job=db-migrate")
    state = json.loads(sh("cat /var/lib/mattermost-deploy/db-migrate.json"))
    run("verbs/job.py", "--data", "job=db-migrate", "--data", "job_action=rollback", "--data", "discard=true")
    return {k: state.get(k) for k in ("outage_s", "copy_s", "verify_s", "schema_s")}


def manual() -> dict:
    """The documented manual move's outage (its schema: the one our migration left, emptied)."""
    command = sh("python3 - <<'EOF'\n"
                 "exec(open('/usr/local/lib/mattermost-deploy/mmhelper.py').read(), {'__name__': 'bundle'})\n"
                 "import json\nfrom mmhelper.parts import mysql\nfrom mmhelper.jobs import db_migrate_copy as db_copy\n"
                 "c = json.load(open('/var/lib/mattermost/config/config.json'))\n"
                 "ds = mysql.parse_mysql_datasource(c['SqlSettings']['DataSource'])\n"
                 "pw = open('/etc/mattermost/private/db-password').read().strip()\n"
                 "pg = {'user': 'mmuser', 'host': 'localhost', 'port': 5432, 'database': 'mattermost'}\n"
                 "print(db_copy.pgloader_command(ds, pg, [], create=False))\n"
                 "open('/root/manual.env', 'w').write(f'MYSQL_PWD={ds[\"password\"]}\\nPGPASSWORD={pw}\\n')\nEOF")
    sh(f"umask 077 && cat > /root/manual.load <<'EOF'\n{command}\nEOF")
    return json.loads(sh(MANUAL).strip().splitlines()[-1])


HOP = re.compile(r"Upgrade Mattermost (\S+) -> (\S+).*?is serving: stop ([\d.]+)s, start with migrations and health "
                 r"([\d.]+)s", re.S)


def chain() -> list[dict]:
    run("verbs/job.py", "--data", "job=db-migrate")
    hops = []
    versions = [OLD, *build.OLD_RELEASES[1:], build.OLDER_ESR, build.ESR_VERSION]
    for old, new in zip(versions, versions[1:], strict=False):
        started = time.monotonic()
        sh("runuser -u postgres -- pg_dump -Fc -d mattermost > /tmp/doc.dump")
        dump_s = time.monotonic() - started
        started = time.monotonic()
        sh(f"cp -ra /opt/mattermost-releases/{old} /tmp/doc-install && rm -rf /tmp/doc-install /tmp/doc.dump")
        copy_s = time.monotonic() - started
        out = run("--data", f"mattermost_version={new}")
        match = HOP.search(out)
        if not match:
            sys.exit(f"no hop timing in the output of {old} -> {new}:\n{out[-2000:]}")
        stop, start = float(match.group(3)), float(match.group(4))
        hops.append({"hop": f"{old} -> {new}", "ours_s": round(stop + start, 2),
                     "documented_s": round(stop + dump_s + copy_s + start, 2),
                     "dump_s": round(dump_s, 2), "copy_s": round(copy_s, 2)})
    return hops


def median(values):
    return round(statistics.median(values), 2)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.old_server")
    parser.add_argument("--posts", default="20000,200000", help="extra posts per size, comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    results = []
    for posts in [int(p) for p in args.posts.split(",")]:
        size = prepare(posts)
        print(f"[bench] {size['posts']} posts, MySQL {size['mysql_mb']} MB", file=sys.stderr, flush=True)
        rounds = {"ours": [], "manual": []}
        for i in range(args.rounds):
            rounds["ours"].append(ours())
            rounds["manual"].append(manual())
            print(f"[bench]   round {i + 1}: ours {rounds['ours'][-1]}, manual {rounds['manual'][-1]}",
                  file=sys.stderr, flush=True)
        hops = chain()
        o = median([r["outage_s"] for r in rounds["ours"]])
        m = median([r["outage_s"] for r in rounds["manual"]])
        results.append({**size, "migration_outage_s": o, "manual_outage_s": m, "ratio": round(o / m, 2),
                        "copy_s": median([r["copy_s"] for r in rounds["ours"]]),
                        "verify_s": median([r["verify_s"] for r in rounds["ours"]]),
                        "schema_s (while serving)": median([r["schema_s"] for r in rounds["ours"]]),
                        "hops": hops})
        print(json.dumps(results[-1], indent=1), flush=True)
    testhost.stop_server(NAME)
    print(table(["posts", "MySQL MB", "db-migrate outage s (copy / verify)", "documented manual s", "ratio"],
                [[r["posts"], r["mysql_mb"], f"{r['migration_outage_s']} ({r['copy_s']} / {r['verify_s']})",
                  r["manual_outage_s"], r["ratio"]] for r in results]))
    print("\n" + table(["posts", "hop", "ours s", "documented s (pg_dump + cp -ra inside)"],
                       [[r["posts"], h["hop"], h["ours_s"], f"{h['documented_s']} ({h['dump_s']} + {h['copy_s']})"]
                        for r in results for h in r["hops"]]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
