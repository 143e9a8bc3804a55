"""`make move-database` as an operator meets it: a single server (Mattermost and PostgreSQL
together) with content, and a database server converged by this deploy; the settings
switched to put the database there (the deploy then changes nothing about the DataSource
and says the move is due); the plan; the move by PostgreSQL's logical replication while
Mattermost serves, killed in the middle and run again; every table's count and digest
compared by the test itself on both sides; everything read back through nginx; the way
back refused while it would lose a post, then taken; the move again; a second deploy
changes nothing. Real Mattermost, real PostgreSQL 17 on two Debian 13 containers."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import pytest

from tests import testhost
from tests.e2e import chat
from tests.e2e.conftest import KEEP, ROOT, deploy, https_get, planned_changes, run_env, sh
from tests.standin import build

SRC, DB = "e2e-mvsrc", "e2e-mvdb"
BOTH = f"{DB},{SRC}"
PORT = 24461
PASSWORD = "move-db-password-for-tests-47"  # the test database's password, test only
CA_DIR = testhost.LOCAL / "db-ca-e2e-move"
VERSION = build.ESR_VERSION
STATE: dict = {}


def env() -> dict:
    return {"MATTERMOST_DB_PASSWORD": PASSWORD}


def run(target: str = BOTH, *args: str, timeout: int = 1800):
    verb = [args[0]] if args and args[0].endswith(".py") else []
    return deploy(target, *verb, "--data", f"mattermost_version={VERSION}", *args[len(verb):], env=env(),
                  timeout=timeout)


def local_psql(sql: str) -> str:
    return sh(SRC, f"runuser -u postgres -- psql -XAt -d mattermost -c \"{sql}\"").strip()


def remote_psql(sql: str) -> str:
    return sh(DB, f"runuser -u postgres -- psql -XAt -d mattermost -c \"{sql}\"").strip()


def digests(psql) -> dict:
    """The test's own check: every table's row count and the md5 of its rows in a fixed order."""
    names = psql("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1").split()
    return {name: psql(f"SELECT count(*) || ' ' || coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') "
                       f"FROM public.\\\"{name}\\\" t") for name in names}


def start(role_data: dict | None = None) -> None:
    testhost.start_server(SRC, ssh_port=22338, https_port=PORT, extra_data={"db_ca_dir": str(CA_DIR),
                                                                            **(role_data or {})})


@pytest.fixture(scope="module")
def servers():
    for name in (DB, SRC):
        testhost.stop_server(name)
    shutil.rmtree(CA_DIR, ignore_errors=True)
    testhost.start_server(DB, ssh_port=22337)
    start()
    db_ip, src_ip = testhost.container_ip(DB), testhost.container_ip(SRC)
    db_name = testhost.container_name(DB)
    testhost.start_server(DB, ssh_port=22337, extra_data={
        "mattermost_role": "database", "db_listen_address": db_ip, "db_server_name": db_name,
        "db_clients": [src_ip], "db_ca_dir": str(CA_DIR)})
    STATE.update(db_ip=db_ip, src_ip=src_ip, db_name=db_name,
                 app={"mattermost_role": "app", "db_host": db_name, "db_move_source_address": src_ip})
    yield
    if not KEEP:
        for name in (DB, SRC):
            testhost.stop_server(name)


def verb(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, "--data", f"mattermost_version={VERSION}", *args], cwd=ROOT,
                          env=run_env(SRC, env()), capture_output=True, text=True, timeout=600)


def test_a_single_server_with_content_and_an_empty_database_server(servers):
    converged = run()
    assert converged.ok, converged.output[-5000:]
    chat.mmctl(SRC, "team create --name acme --display-name Acme")
    chat.create_user(SRC, "olga", team="acme")
    olga = chat.login(PORT, "olga")
    channel = olga.channels.get_channel_by_name_and_team_name("acme", "town-square")
    posts = [olga.posts.create_post({"channel_id": channel["id"], "message": f"before the move #{i} ä"})["id"]
             for i in range(30)]
    reaction = {"user_id": olga.users.get_user("me")["id"], "post_id": posts[0], "emoji_name": "tada"}
    olga.reactions.create_reaction(reaction)
    STATE.update(posts=posts, channel=channel["id"])
    assert remote_psql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == "0"


def test_the_settings_say_app_and_the_deploy_waits_for_the_move(servers):
    start(STATE["app"])
    before = sh(SRC, "cat /var/lib/mattermost/config/config.json")
    pending = run()
    assert pending.ok, pending.output[-4000:]
    assert "the database is still on this server: `make move-database-plan`" in pending.output
    assert sh(SRC, "cat /var/lib/mattermost/config/config.json") == before  # DataSource untouched
    assert sh(SRC, "test -e /etc/mattermost/db-remote.json && echo yes || echo no").strip() == "no"
    assert planned_changes(BOTH, "--data", f"mattermost_version={VERSION}", env=env()) == []
    plan = verb("verbs.job_plan", "move-database", "--json")
    assert plan.returncode == 0, plan.stderr + plan.stdout
    [shown] = json.loads(plan.stdout).values()
    assert shown["refusals"] == [] and shown["local"]["tables"] > 50 and shown["remote"]["tables"] == 0, shown
    text = verb("verbs.job_plan", "move-database").stdout
    assert "ready: `make move-database`" in text and "note: the local PostgreSQL restarts once" in text, text


def test_the_move_killed_while_copying_goes_on_and_every_table_arrives(servers):
    # killed while the subscription copies (the helper and its psql): Mattermost still serves locally
    proc = subprocess.Popen([sys.executable, "-m", "tasks.run", "verbs/job.py", "--data", "job=move-database", "-y", "--data",
                             f"mattermost_version={VERSION}"], cwd=ROOT, env=run_env(SRC, env()),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while time.time() < deadline:
        code, out = testhost.exec_on(SRC, "cat /var/lib/mattermost-deploy/db-move.json 2>/dev/null || true")
        if '"schema"' in out:
            break
        time.sleep(0.2)
    testhost.exec_on(SRC, "pkill -KILL -f 'mmhelper.py db-move' || true")
    proc.wait(timeout=120)
    assert proc.returncode != 0
    assert json.loads(https_get(PORT)[2])["status"] == "OK"  # still serving from the local database
    olga = chat.login(PORT, "olga")
    late = olga.posts.create_post({"channel_id": STATE["channel"], "message": "written while the copy ran"})["id"]
    STATE["posts"].append(late)
    moved = run(SRC, "verbs/job.py", "--data", "job=move-database")
    assert moved.ok, moved.output[-5000:]
    assert "continuing the unfinished move" in moved.output
    assert PASSWORD not in moved.output and "password=" not in moved.output
    assert "every table's count and digest equal" in moved.output and "users waited" in moved.output
    # the test's own comparison: every table on both sides (Mattermost runs on the remote one now,
    # so compare against the local copy left at the stop, for the tables Mattermost does not touch
    # by itself at start)
    here, there = digests(local_psql), digests(remote_psql)
    assert set(here) == set(there)
    for table in ("posts", "users", "channels", "channelmembers", "reactions", "teams", "teammembers",
                  "fileinfo", "preferences", "emoji"):
        assert here[table] == there[table], table
    ds = json.loads(sh(SRC, "cat /var/lib/mattermost/config/config.json"))["SqlSettings"]["DataSource"]
    assert f"@{STATE['db_name']}:5432/mattermost?sslmode=verify-full" in ds
    # the temporary replication pieces are gone on both sides
    assert local_psql("SELECT count(*) FROM pg_publication") == "0"
    assert local_psql("SELECT count(*) FROM pg_replication_slots") == "0"
    assert remote_psql("SELECT count(*) FROM pg_subscription") == "0"
    assert "move-database" not in sh(SRC, "cat $(runuser -u postgres -- psql -XAt -c 'SHOW hba_file')")
    assert "mattermost-deploy move-database" not in sh(SRC, "nft list ruleset")
    olga = chat.login(PORT, "olga")
    for post_id in STATE["posts"]:
        assert olga.posts.get_post(post_id)["id"] == post_id
    assert olga.reactions.get_reactions_of_post(STATE["posts"][0])[0]["emoji_name"] == "tada"
    assert planned_changes(BOTH, "--data", f"mattermost_version={VERSION}", env=env()) == []


def test_the_way_back_and_the_move_again(servers):
    olga = chat.login(PORT, "olga")
    written = olga.posts.create_post({"channel_id": STATE["channel"], "message": "on the database server"})["id"]
    refused = run(SRC, "verbs/job.py", "--data", "job=move-database", "--data", "job_action=rollback")
    assert not refused.ok and "1 posts were written on the database at" in refused.output, refused.output[-3000:]
    back = run(SRC, "verbs/job.py", "--data", "job=move-database", "--data", "job_action=rollback", "--data", "discard=true")
    assert back.ok, back.output[-3000:]
    ds = json.loads(sh(SRC, "cat /var/lib/mattermost/config/config.json"))["SqlSettings"]["DataSource"]
    assert "@localhost:5432/" in ds
    olga = chat.login(PORT, "olga")
    assert olga.posts.get_post(STATE["posts"][-1])["id"] == STATE["posts"][-1]
    assert local_psql(f"SELECT count(*) FROM posts WHERE id = '{written}'") == "0"
    # again, by dump and restore this time (as where the database server cannot subscribe)
    plan = verb("verbs.job_plan", "move-database", "--data", "db_move_method=dump").stdout
    assert "copied with pg_dump | pg_restore while Mattermost is stopped" in plan, plan
    again = run(SRC, "verbs/job.py", "--data", "job=move-database", "--data", "db_move_method=dump")
    assert again.ok, again.output[-5000:]
    assert "dump and restore" in again.output and "every table's count and digest equal" in again.output
    assert json.loads(https_get(PORT)[2])["status"] == "OK"
    assert remote_psql("SELECT count(*) FROM posts WHERE message LIKE 'before the move #%'") == "30"
    assert planned_changes(BOTH, "--data", f"mattermost_version={VERSION}", env=env()) == []
