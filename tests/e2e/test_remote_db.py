"""When one server is not enough, the database part: two Debian 13 containers, one the
database server (mattermost_role "database": Debian's PostgreSQL, TLS from the deploy's own
CA, scram-sha-256, pg_hba and nftables open to the Mattermost server alone), one the
Mattermost server (mattermost_role "app": real Mattermost connecting with sslmode=verify-full,
no PostgreSQL server of its own), converged in one run; what the network lets through and
what TLS refuses; people post; a backup dumped over TLS from the remote database and a
restore into it; an upgrade to a broken release rolled back, then the upgrade; a second run
changes nothing on either server; `make status` and the reports across both, and the database
stopped: what the Mattermost server's checks say, and Mattermost reconnecting by itself;
patch night across both, the database server rebooted in the middle; the database server
lost and rebuilt from the off-server copy; erasure and retention in the remote database."""

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
from tests.standin import apt_repo, build
from tests.testhost import UPSTREAM_ROOT

DB, APP = "e2e-dbsrv", "e2e-dbapp"
APT = "apt-remote"  # this story's own stand-in apt repository
BOTH = f"{DB},{APP}"
PORT = 24460
PASSWORD = "remote-db-password-for-tests-31"  # the test database's password, test only
CA_DIR = testhost.LOCAL / "db-ca-e2e"
A, B, BROKEN = build.OLDER_ESR, build.ESR_VERSION, build.BROKEN
STATE: dict = {"pin": A}


RESTIC = "restic-remote-db-test-password-19"  # the test repository's password, test only


def env() -> dict:
    return {"MATTERMOST_DB_PASSWORD": PASSWORD, "RESTIC_PASSWORD": RESTIC}


def data(*extra: str) -> list[str]:
    return ["--data", f"mattermost_version={STATE['pin']}", *extra]


def run(target: str = BOTH, *args: str, timeout: int = 1800):
    verb = [args[0]] if args and args[0].endswith(".py") else []
    return deploy(target, *verb, *data(), *args[len(verb):], env=env(), timeout=timeout)


def psql_on_db(sql: str) -> str:
    return sh(DB, f"runuser -u postgres -- psql -XAt -d mattermost -c \"{sql}\"").strip()


@pytest.fixture(scope="module")
def servers():
    for name in (DB, APP):
        testhost.stop_server(name)
    shutil.rmtree(CA_DIR, ignore_errors=True)
    sftp = testhost.ensure_sftp(testhost.client())
    testhost.exec_on_container(testhost.SFTP, f"rm -rf {sftp['root']}/{APP}")
    offsite = {"backup_offsite_repository": f"sftp:{sftp['user']}@{testhost.SFTP}:{sftp['root']}/{APP}",
               "backup_offsite_ssh_key": str(sftp["key"]), "backup_offsite_known_hosts": sftp["known_hosts"],
               "backup_offsite_keep": {"last": 5}}
    testhost.start_server(DB, ssh_port=22335)
    testhost.start_server(APP, ssh_port=22336, https_port=PORT)
    db_ip, app_ip = testhost.container_ip(DB), testhost.container_ip(APP)
    db_name = testhost.container_name(DB)  # the name the app server resolves on the test network
    testhost.start_server(DB, ssh_port=22335, extra_data={
        "mattermost_role": "database", "db_listen_address": db_ip, "db_server_name": db_name,
        "db_clients": [app_ip], "db_ca_dir": str(CA_DIR)})
    testhost.start_server(APP, ssh_port=22336, https_port=PORT, extra_data={
        "mattermost_role": "app", "db_host": db_name, "db_ca_dir": str(CA_DIR), **offsite})
    STATE.update(db_ip=db_ip, app_ip=app_ip, db_name=db_name)
    yield
    if not KEEP:
        for name in (DB, APP):
            testhost.stop_server(name)


def test_both_roles_converge_in_one_run(servers):
    converged = run()
    assert converged.ok, converged.output[-5000:]
    assert PASSWORD not in converged.output
    status, _, body = https_get(PORT)
    assert status == 200 and json.loads(body)["status"] == "OK"
    ds = json.loads(sh(APP, "cat /var/lib/mattermost/config/config.json"))["SqlSettings"]["DataSource"]
    assert f"@{STATE['db_name']}:5432/mattermost?sslmode=verify-full&sslrootcert=/etc/mattermost/db-ca.crt" in ds
    # the Mattermost server runs no PostgreSQL of its own, only the client
    assert "ii" not in sh(APP, "dpkg -l postgresql 2>/dev/null | tail -1 || true")
    assert sh(APP, "pg_dump --version").startswith("pg_dump (PostgreSQL)")
    # Mattermost's connections arrive from the app server, over TLS
    rows = psql_on_db("SELECT DISTINCT a.client_addr, s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s "
                      "USING (pid) WHERE a.usename = 'mmuser' AND a.datname = 'mattermost'")
    assert f"{STATE['app_ip']}|t" in rows.splitlines(), rows
    assert psql_on_db("SELECT rolcreatedb FROM pg_roles WHERE rolname = 'mmuser'") == "t"
    assert sh(DB, "stat -c '%U:%G %a' /etc/postgresql/mattermost-tls/server.key").strip() == "root:postgres 640"
    # the CA's key never left the workstation
    assert "PRIVATE KEY" not in sh(APP, "cat /etc/mattermost/db-ca.crt")
    assert planned_changes(BOTH, *data(), env=env()) == []


def test_only_the_mattermost_server_gets_in_and_only_over_verified_tls(servers):
    db_ip = STATE["db_ip"]
    # another machine on the same network: the firewall drops it
    code, out = testhost.exec_on_container(
        testhost.UPSTREAM, f"python3 -c \"import socket; socket.create_connection(('{db_ip}', 5432), 3)\"")
    assert code != 0 and "timed out" in out, out
    base = (f"PGPASSWORD={PASSWORD} PGCONNECT_TIMEOUT=5 psql -XAt -c 'SELECT 1' "
            f"-d 'dbname=mattermost user=mmuser sslrootcert=/etc/mattermost/db-ca.crt")
    # from the app server: without TLS pg_hba refuses; by address instead of the certificate's name,
    # verify-full refuses; by name with the CA, it logs in
    code, out = testhost.exec_on(APP, f"{base} sslmode=disable host={db_ip}'")
    assert code != 0 and "no encryption" in out, out
    code, out = testhost.exec_on(APP, f"{base} sslmode=verify-full host={db_ip}'")
    assert code != 0 and "does not match host name" in out, out
    code, out = testhost.exec_on(APP, f"{base} sslmode=verify-full host={STATE['db_name']}'")
    assert code == 0 and out.strip() == "1", out
    # PostgreSQL listens on loopback and the private address only
    listening = sh(DB, "ss -Hltn 'sport = :5432'")
    assert f"{db_ip}:5432" in listening and "0.0.0.0:5432" not in listening and "*:5432" not in listening


def test_backup_dumps_the_remote_database_and_restore_puts_it_back(servers):
    chat.mmctl(APP, "team create --name acme --display-name Acme")
    chat.create_user(APP, "olga", team="acme")
    olga = chat.login(PORT, "olga")
    channel = olga.channels.get_channel_by_name_and_team_name("acme", "town-square")
    kept = olga.posts.create_post({"channel_id": channel["id"], "message": "in the backup"})
    backup = run(APP, "verbs/backup.py")
    assert backup.ok, backup.output[-3000:]
    name = sh(APP, "ls -t /var/backups/mattermost | grep -v '^\\.' | head -1").strip()
    manifest = json.loads(sh(APP, f"cat /var/backups/mattermost/{name}/manifest.json"))
    posts = int(psql_on_db("SELECT count(*) FROM posts"))
    assert manifest["counts"]["posts"] == posts, manifest
    after = olga.posts.create_post({"channel_id": channel["id"], "message": "after the backup"})
    restored = run(APP, "verbs/restore.py", "--data", "restore_backup=latest")
    assert restored.ok, restored.output[-3000:]
    assert int(psql_on_db("SELECT count(*) FROM posts")) == posts
    assert psql_on_db(f"SELECT count(*) FROM posts WHERE id = '{kept['id']}'") == "1"
    assert psql_on_db(f"SELECT count(*) FROM posts WHERE id = '{after['id']}'") == "0"
    # the database as it was before the restore is kept on the database server, renamed
    kept_dbs = sh(DB, "runuser -u postgres -- psql -XAt -c \"SELECT datname FROM pg_database\"").split()
    assert any(d.startswith("mattermost_") for d in kept_dbs), kept_dbs
    assert chat.login(PORT, "olga").posts.get_post(kept["id"])["message"] == "in the backup"


def test_an_upgrade_rolled_back_then_done_against_the_remote_database(servers):
    STATE["pin"] = BROKEN
    broken = run(APP)
    assert not broken.ok and "rolled back" in broken.output, broken.output[-3000:]
    assert "Mattermost reversed its migrations (db downgrade)" in broken.output
    status, _, _ = https_get(PORT)
    assert status == 200
    assert run(APP, "verbs/unhold.py").ok
    STATE["pin"] = B
    upgraded = run()
    assert upgraded.ok, upgraded.output[-4000:]
    assert json.loads(https_get(PORT)[2])["status"] == "OK"
    assert chat.login(PORT, "olga").users.get_user("me")["username"] == "olga"
    assert planned_changes(BOTH, *data(), env=env()) == []


def verb_output(module: str, *args: str):
    return subprocess.run([sys.executable, "-m", module, *data(), *args], cwd=ROOT, env=run_env(BOTH, env()),
                          capture_output=True, text=True, timeout=600)


def test_status_and_reports_across_both_and_the_database_down(servers):
    status = verb_output("verbs.status", "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    rows = {row["host"]: row for row in json.loads(status.stdout)}
    assert rows[f"local-{DB}"]["action"] == "database server" and rows[f"local-{DB}"]["healthy"] is True
    assert rows[f"local-{APP}"]["database"] == f"{STATE['db_name']}:5432 (TLS verified)"
    assert rows[f"local-{APP}"]["healthy"] is True
    users = verb_output("verbs.report", "users", "--json")
    assert users.returncode == 0, users.stderr
    assert list(json.loads(users.stdout)) == [f"local-{APP}"]  # the database server has no people to report
    # PostgreSQL stopped on the database server: the Mattermost server's checks say so
    sh(DB, "systemctl stop postgresql")
    try:
        down = verb_output("verbs.status", "--json")
        app = {row["host"]: row for row in json.loads(down.stdout)}[f"local-{APP}"]
        assert down.returncode == 1
        assert any(p.startswith(f"the database at {STATE['db_name']}:5432 does not let Mattermost in")
                   for p in app["problems"]), app
    finally:
        sh(DB, "systemctl start postgresql")
    # Mattermost reconnects by itself once PostgreSQL is back
    deadline = time.time() + 60
    while time.time() < deadline:
        status, _, body = https_get(PORT)
        if status == 200 and json.loads(body).get("status") == "OK":
            break
        time.sleep(2)
    olga = chat.login(PORT, "olga")
    channel = olga.channels.get_channel_by_name_and_team_name("acme", "town-square")
    assert olga.posts.create_post({"channel_id": channel["id"], "message": "after PostgreSQL came back"})["id"]


def started_at(name: str) -> str:
    return testhost.client().containers.get(testhost.container_name(name)).attrs["State"]["StartedAt"]


def test_patch_night_across_both_with_a_reboot_of_the_database_server(servers):
    """The database server goes first (its package upgraded, the server rebooted, PostgreSQL
    waited for), then the Mattermost server checks it has its database back, then its own part."""
    apt_repo.publish(UPSTREAM_ROOT, {"1.0": None}, APT)
    sh(DB, f"echo '{apt_repo.source_line(APT)}' > /etc/apt/sources.list.d/standin.list && apt-get update -q >/dev/null "
           f"&& DEBIAN_FRONTEND=noninteractive apt-get install -y -q {apt_repo.PACKAGE}=1.0 >/dev/null")
    apt_repo.publish(UPSTREAM_ROOT, {"1.0": None, "1.1": "reboot"}, APT)
    reboot = ["--data", 'patch_reboot_packages=["linux-image-*", "mmdeploy-testpkg"]']
    plan = verb_output("verbs.patch_plan", *reboot)
    assert plan.returncode == 0, plan.stderr[-2000:]
    db_part = plan.stdout.split(f"Patch night plan for local-{APP}")[0]
    assert f"Patch night plan for local-{DB}" in db_part and f"{apt_repo.PACKAGE} 1.0 -> 1.1" in db_part
    assert "reboot: yes" in db_part and "a database server" in db_part
    before = started_at(DB)
    reports = set((ROOT / "reports").glob("patch-night-local-e2e-db*.txt"))
    night = run(BOTH, "verbs/patch_night.py", "--fail-percent", "0", *reboot)
    assert night.ok, night.output[-6000:]
    assert started_at(DB) != before, "the database server did not reboot"
    assert sh(DB, f"dpkg-query -W -f '${{Version}}' {apt_repo.PACKAGE}").strip() == "1.1"
    out = night.output
    assert out.index("Database server: reboot if required, then wait for SSH and PostgreSQL") < \
        out.index("Mattermost has its database back after the database server's part")
    assert "Mattermost answers with its database" in out or "Mattermost restarted and healthy" in out
    assert json.loads(https_get(PORT)[2])["status"] == "OK"
    new = set((ROOT / "reports").glob("patch-night-local-e2e-db*.txt")) - reports
    texts = {path.name: path.read_text() for path in new}
    [db_report] = [t for name, t in texts.items() if DB in name]
    assert "PostgreSQL: running (the database server)" in db_report and "rebooted: yes" in db_report
    assert "all good: yes" in db_report
    for path in new:
        path.unlink()
        path.with_suffix(".json").unlink()
    chat.login(PORT, "olga").users.get_user("me")


def test_the_database_server_lost_and_rebuilt_from_the_off_server_copy(servers):
    """The database server destroyed; a new one converged by `make deploy` (the same CA on
    this workstation names it again); the Mattermost server's local backups gone too;
    `make rebuild` on it brings the content back from the off-server repository alone."""
    olga = chat.login(PORT, "olga")
    channel = olga.channels.get_channel_by_name_and_team_name("acme", "town-square")
    kept = olga.posts.create_post({"channel_id": channel["id"], "message": "in the last backup"})["id"]
    backup = run(APP, "verbs/backup.py")
    assert backup.ok, backup.output[-3000:]
    posts = psql_on_db("SELECT count(*) FROM posts")
    testhost.stop_server(DB)  # the database server is gone, its disk with it
    testhost.start_server(DB, ssh_port=22335)
    db_ip = testhost.container_ip(DB)
    testhost.start_server(DB, ssh_port=22335, extra_data={
        "mattermost_role": "database", "db_listen_address": db_ip, "db_server_name": STATE["db_name"],
        "db_clients": [STATE["app_ip"]], "db_ca_dir": str(CA_DIR)})
    STATE["db_ip"] = db_ip
    rebuilt = run()
    assert rebuilt.ok, rebuilt.output[-5000:]
    sh(APP, "rm -rf /var/backups/mattermost/*")  # only the off-server copy is left
    restored = run(APP, "verbs/rebuild.py")
    assert restored.ok, restored.output[-3000:]
    assert "restore check: everything the backup holds is back" in restored.output
    assert RESTIC not in restored.output and PASSWORD not in restored.output
    assert psql_on_db("SELECT count(*) FROM posts") == posts
    olga = chat.login(PORT, "olga")
    assert olga.posts.get_post(kept)["message"] == "in the last backup"
    assert planned_changes(BOTH, *data(), env=env()) == []


def test_erasure_and_retention_against_the_remote_database(servers):
    chat.create_user(APP, "carol", team="acme")
    carol = chat.login(PORT, "carol")
    channel = carol.channels.get_channel_by_name_and_team_name("acme", "town-square")
    carol.posts.create_post({"channel_id": channel["id"], "message": "carol was here"})
    erased = run(APP, "verbs/erase.py", "--data", "erase_user=carol", "--data", "erase_confirmed=carol")
    assert erased.ok, erased.output[-3000:]
    assert psql_on_db("SELECT count(*) FROM users WHERE username = 'carol'") == "0"
    assert psql_on_db("SELECT count(*) FROM posts WHERE message = 'carol was here'") == "0"
    # a post from long ago (a copy of a real one, 400 days older), then retention at 30 days
    old = int((time.time() - 400 * 86400) * 1000)
    psql_on_db("INSERT INTO posts SELECT (jsonb_populate_record(p, jsonb_build_object('id', "
               f"'oldpostfromlongago00000000', 'createat', {old}, 'updateat', {old}))).* FROM posts p "
               "WHERE p.message = 'in the last backup'")
    kept = int(psql_on_db(f"SELECT count(*) FROM posts WHERE createat >= {old + 1}"))
    days = ["--data", "mattermost_retention_days=30"]
    counted = run(APP, "verbs/retention.py", *days)
    assert counted.ok and '"posts": 1, ' in counted.output and '"applied": false' in counted.output, \
        counted.output[-2000:]
    applied = run(APP, "verbs/retention.py", *days, "--data", "retention_apply=true")
    assert applied.ok, applied.output[-3000:]
    assert psql_on_db("SELECT count(*) FROM posts WHERE id = 'oldpostfromlongago00000000'") == "0"
    assert int(psql_on_db("SELECT count(*) FROM posts")) == kept
    assert "pre-retention" in sh(APP, "ls /var/backups/mattermost")
