"""The server people actually have: Mattermost 5.39 installed by hand on Debian 12 with
MariaDB years ago, used since (the old command line and the API), and a plugin's table in
its database. Through the project's verbs it becomes Mattermost 11.4 on PostgreSQL:

adopted as it is (MySQL kept, upgrades refused with the way forward) -> `make
db-migrate-plan` (refusals: the plugin's table, a login pgloader cannot speak, a migration
already running) -> `make db-migrate`, killed in the middle of the copy and run again ->
every table's rows and digest equal (checked by the verb, and here independently) ->
`make db-migrate-rollback` (refused while posts written on PostgreSQL would be lost, then
DISCARD=1) -> MySQL serves every post again -> `make db-migrate` again -> `make upgrade`:
5.39 -> 6.3 -> 10.3 -> 11.4 -> the PyPI client reads back everything made at the start, old
passwords log in -> a second `make deploy` changes nothing.

Everything real: Mattermost 5.39/6.3/10.3/11.4 built from their Go modules, Debian's MariaDB
10.11, PostgreSQL 15 and pgloader 3.6.7."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time

import pytest

from tests import testhost
from tests.e2e import oldstory
from tests.e2e.conftest import KEEP, ROOT, deploy, planned_changes, run_env, sh
from tests.e2e.oldstory import OLD, everything_is_there, old_login
from tests.standin.build import ESR_VERSION, OLD_RELEASES, OLDER_ESR

TARGET = "e2e-oldmysql"
PORT = 24451
DB_PASSWORD = "old-mysql-password-4711"  # the hand install's, test only
PLUGIN_TABLE = "focalboard_blocks"  # what the Boards plugin left in MySQL (a plugin's table)
STATE: dict = {}


def mysql(sql: str) -> str:
    """As root on the server (Debian's MariaDB: root logs in through its socket)."""
    return sh(TARGET, f"mysql -N -B -D mattermost -e {shlex.quote(sql)}").strip()


def psql(sql: str) -> str:
    return sh(TARGET, f"runuser -u postgres -- psql -XAt -d mattermost -c {shlex.quote(sql)}").strip()


def verb(*args: str, env: dict | None = None, timeout: int = 1800):
    return deploy(TARGET, *args, env=env, timeout=timeout)


def plan(*data: str) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, "-m", "verbs.job_plan", "db-migrate", *data], cwd=ROOT, env=run_env(TARGET, None),
                          capture_output=True, text=True, timeout=600)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def old_server():
    STATE["made"] = oldstory.start_old_server(TARGET, 22331, PORT, "mysql", DB_PASSWORD)
    mysql(f"CREATE TABLE {PLUGIN_TABLE} (id VARCHAR(36) PRIMARY KEY, title TEXT, fields JSON, update_at BIGINT);"
          f"INSERT INTO {PLUGIN_TABLE} VALUES ('b1', 'Roadmap \U0001F5FA', '{{\"icon\": \"x\"}}', 1600000000000),"
          "('b2', 'Retro', NULL, 1600000000001);")
    yield TARGET
    if not KEEP:
        testhost.stop_server(TARGET)


def test_the_old_command_line_made_it(old_server):
    assert STATE["made"]["listing"].split() == ["board", "(private)", "off-topic", "old-project", "(archived)",
                                                "town-square"]


def test_diff_shows_the_adoption_and_changes_nothing(old_server):
    before = sh(TARGET, "stat -c %Y /opt/mattermost; sha256sum /opt/mattermost/config/config.json; "
                        "systemctl show -p MainPID --value mattermost")
    changes = planned_changes(TARGET)
    assert f"Adopt the hand-installed Mattermost {OLD} in /opt/mattermost" in changes, changes
    assert not any(name.startswith("Upgrade Mattermost") for name in changes), changes
    assert sh(TARGET, "stat -c %Y /opt/mattermost; sha256sum /opt/mattermost/config/config.json; "
                      "systemctl show -p MainPID --value mattermost") == before


def test_adopted_as_it_is_on_mysql(old_server):
    run = verb()
    assert run.ok, run.output[-5000:]
    assert "the database is MySQL/MariaDB" in run.output and "make db-migrate" in run.output
    config = oldstory.config(TARGET)
    assert config["SqlSettings"]["DriverName"] == "mysql"
    assert "@tcp(localhost:3306)/mattermost" in config["SqlSettings"]["DataSource"]
    assert config["FileSettings"]["Directory"] == "/var/lib/mattermost/data/"
    assert sh(TARGET, "readlink /opt/mattermost").strip() == f"/opt/mattermost-releases/{OLD}"
    assert DB_PASSWORD not in run.output
    old_login(PORT, "alice").posts.get_post(STATE["made"]["posts"]["welcome"])
    # the nightly backup of a server still on MySQL dumps MySQL
    backup = verb("verbs/backup.py")
    assert backup.ok, backup.output[-3000:]
    newest = sh(TARGET, "ls -t /var/backups/mattermost | head -1").strip()
    manifest = json.loads(sh(TARGET, f"cat /var/backups/mattermost/{newest}/manifest.json"))
    assert manifest["database"] == "mysql"
    assert manifest["counts"]["posts"] == int(mysql("SELECT COUNT(*) FROM Posts WHERE DeleteAt = 0"))


def test_plan_names_the_plugin_table_and_refuses(old_server):
    code, out = plan()
    assert code == 0, out
    assert "from: MySQL 10.11" in out and "database mattermost, user mmuser (mysql_native_password)" in out
    assert f"Mattermost: {OLD}" in out and "users wait about" in out
    assert f"REFUSED: tables Mattermost did not make (plugins'?): {PLUGIN_TABLE}" in out
    refused = verb("verbs/job.py", "--data", "job=db-migrate")
    assert not refused.ok and PLUGIN_TABLE in refused.output
    assert oldstory.config(TARGET)["SqlSettings"]["DriverName"] == "mysql"
    assert psql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == "0"


def test_plan_refuses_a_login_pgloader_cannot_speak(old_server):
    sh(TARGET, "mysql -e \"INSTALL SONAME 'auth_ed25519'; ALTER USER mmuser@localhost IDENTIFIED VIA ed25519 "
               f"USING PASSWORD('{DB_PASSWORD}')\"")
    try:
        code, out = plan("--data", "db_migrate_extra_tables=copy")
    finally:
        sh(TARGET, f"mysql -e \"ALTER USER mmuser@localhost IDENTIFIED VIA mysql_native_password USING "
                   f"PASSWORD('{DB_PASSWORD}')\"")
    assert "REFUSED: the MySQL user 'mmuser' logs in with ed25519, which pgloader" in out, out


def test_a_second_migration_is_refused_while_one_runs(old_server):
    # another holder of the migration lock (as a running migration holds it: flock)
    sh(TARGET, "mkdir -p /var/lib/mattermost-deploy && (flock /var/lib/mattermost-deploy/db-migrate.lock "
               "sleep 30 >/dev/null 2>&1 &)")
    time.sleep(1)
    refused = verb("verbs/job.py", "--data", "job=db-migrate", "--data", "db_migrate_extra_tables=copy")
    sh(TARGET, "pkill -x sleep; pkill -x flock; true")
    assert not refused.ok and "a migration is running" in refused.output, refused.output[-3000:]
    assert oldstory.config(TARGET)["SqlSettings"]["DriverName"] == "mysql"


def test_migration_killed_in_the_copy_and_run_again(old_server):
    posts_before = oldstory.post_count(TARGET, psql=False)
    # kill the migration (the helper and pgloader) as soon as pgloader runs
    sh(TARGET, "(while ! pgrep -x pgloader >/dev/null; do sleep 0.05; done; "
               "pkill -9 -f '[m]mhelper.py db-migrate'; pkill -9 -x pgloader) >/dev/null 2>&1 &")
    killed = verb("verbs/job.py", "--data", "job=db-migrate", "--data", "db_migrate_extra_tables=copy")
    assert not killed.ok, killed.output[-3000:]
    state = json.loads(sh(TARGET, "cat /var/lib/mattermost-deploy/db-migrate.json"))
    assert state["status"] == "running" and "stop" in state["done"] and "copy" not in state["done"], state
    assert sh(TARGET, "systemctl is-active mattermost || true").strip() != "active"
    code, out = plan("--data", "db_migrate_extra_tables=copy")
    assert "an earlier migration stopped after" in out, out
    again = verb("verbs/job.py", "--data", "job=db-migrate", "--data", "db_migrate_extra_tables=copy")
    assert again.ok, again.output[-5000:]
    assert "continuing the unfinished migration" in again.output
    assert "every table matches" in again.output
    STATE["migration"] = again.output
    # MySQL is as Mattermost left it at the stop (it may have posted since posts_before: 5.39 posts a
    # warn_metric_status at start), and PostgreSQL got all of it (and more once it served)
    state = json.loads(sh(TARGET, "cat /var/lib/mattermost-deploy/db-migrate.json"))
    copied = state["report"]["digests"]["posts"][0]
    assert copied == oldstory.post_count(TARGET, psql=False) >= posts_before
    assert oldstory.post_count(TARGET) >= copied
    assert DB_PASSWORD not in killed.output + again.output


def test_every_table_arrived(old_server):
    """Checked here independently of the verb: every table's rows, and the posts' and users'
    contents side by side."""
    my_tables = {t.lower(): t for t in mysql("SHOW TABLES").split()}
    pg_tables = set(psql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").split())
    assert set(my_tables) == pg_tables, set(my_tables) ^ pg_tables
    # Mattermost has served from PostgreSQL since: compare what existed at the switch
    switched = int(json.loads(sh(TARGET, "cat /var/lib/mattermost-deploy/db-migrate.json"))["switched_at"] * 1000)
    for low, name in my_tables.items():
        if low in ("posts", "sessions", "status", "audits", "systems", "channelmembers", "channels", "jobs",
                   "preferences", "threads", "threadmemberships"):
            continue  # rows Mattermost writes as it runs; their copy is checked by the verb's digests
        assert mysql(f"SELECT COUNT(*) FROM `{name}`") == psql(f"SELECT count(*) FROM {low}"), name
    my_posts = sorted(mysql("SELECT Id, HEX(Message), IsPinned, RootId FROM Posts").splitlines())
    pg_posts = sorted(psql("SELECT id || E'\\t' || upper(encode(convert_to(message, 'UTF8'), 'hex')) || E'\\t' || "
                           f"(CASE WHEN ispinned THEN 1 ELSE 0 END) || E'\\t' || rootid FROM posts WHERE createat < {switched}"
                           ).splitlines())
    assert my_posts == pg_posts
    my_users = sorted(mysql("SELECT Id, Username, Password, DeleteAt FROM Users").splitlines())
    pg_users = sorted(psql("SELECT id || E'\\t' || username || E'\\t' || password || E'\\t' || deleteat "
                           "FROM users").splitlines())
    assert my_users == pg_users
    state = json.loads(sh(TARGET, "cat /var/lib/mattermost-deploy/db-migrate.json"))
    assert state["status"] == "done" and state["report"]["tables"] == len(my_tables)
    assert state["report"]["digests"][PLUGIN_TABLE.lower()][0] == 2
    config = oldstory.config(TARGET)
    assert config["SqlSettings"]["DriverName"] == "postgres"
    # the old password still logs in, and everything is served from PostgreSQL
    everything_is_there(PORT, STATE["made"])


def test_the_deploy_after_the_move_changes_nothing_but_the_unit(old_server):
    # The unit no longer orders Mattermost after MariaDB; everything else (the DataSource the
    # migration wrote) is as the deploy wants it. The upgrade waits for `make upgrade`.
    changes = planned_changes(TARGET, "--data", f"mattermost_version={OLD}")
    assert changes == ["Install the sandboxed mattermost.service unit",
                       f"Run Mattermost {OLD} and wait for a healthy ping"], changes


def test_rollback_refuses_to_lose_new_posts_then_goes_back(old_server):
    alice = old_login(PORT, "alice")
    channel = STATE["made"]["channels"]["town-square"]
    alice.posts.create_post({"channel_id": channel, "message": "written on PostgreSQL"})
    refused = verb("verbs/job.py", "--data", "job=db-migrate", "--data", "job_action=rollback")
    assert not refused.ok and "1 posts were written on PostgreSQL since the switch" in refused.output, \
        refused.output[-2000:]
    assert oldstory.config(TARGET)["SqlSettings"]["DriverName"] == "postgres"
    back = verb("verbs/job.py", "--data", "job=db-migrate", "--data", "job_action=rollback", "--data", "discard=true")
    assert back.ok, back.output[-3000:]
    assert oldstory.config(TARGET)["SqlSettings"]["DriverName"] == "mysql"
    assert json.loads(sh(TARGET, "cat /var/lib/mattermost-deploy/db-migrate.json"))["status"] == "rolled-back"
    everything_is_there(PORT, STATE["made"])  # every post, served from MySQL again


def test_migrate_again_then_upgrade_the_chain_to_11_4(old_server):
    # the operator removed the plugin's leftovers: the usual case, no table but Mattermost's
    mysql(f"DROP TABLE {PLUGIN_TABLE}")
    again = verb("verbs/job.py", "--data", "job=db-migrate")
    assert again.ok and "every table matches" in again.output, again.output[-5000:]
    assert PLUGIN_TABLE not in psql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").split()
    chain = [OLD, *OLD_RELEASES[1:], OLDER_ESR, ESR_VERSION]
    hops = list(zip(chain, chain[1:], strict=False))
    shown = subprocess.run([sys.executable, "-m", "verbs.upgrade_plan"], cwd=ROOT, env=run_env(TARGET, None),
                           capture_output=True, text=True, timeout=600)
    assert shown.returncode == 0, shown.stderr
    for number, (a, b) in enumerate(hops, 1):
        assert f"hop {number}: {a} -> {b}" in shown.stdout, shown.stdout
    assert "6.0 rewrites large tables" in shown.stdout  # the hop over 6.0 names its long migrations
    upgrade = verb("--data", "mattermost_upgrade_required=true", timeout=3600)
    assert upgrade.ok, upgrade.output[-6000:]
    for number, (a, b) in enumerate(hops, 1):
        assert f"Upgrade Mattermost {a} -> {b} (hop {number} of {len(hops)})" in upgrade.output, (a, b)
    assert sh(TARGET, "readlink /opt/mattermost").strip() == f"/opt/mattermost-releases/{ESR_VERSION}"
    STATE["upgrade"] = upgrade.output


def test_everything_made_years_ago_is_there_on_11_4(old_server):
    everything_is_there(PORT, STATE["made"])


def test_a_second_deploy_changes_nothing(old_server):
    assert planned_changes(TARGET) == []
