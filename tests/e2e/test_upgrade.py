"""Upgrades the operator can trust, on a real Debian 12 container, as one story in order:
install A, upgrade to B by the version policy with users' data intact, a broken release
rolled back automatically with the database as before, a restore drill, a manual
rollback, and `make status` for each policy and for a rate-limited or unreachable API.

The tests of this module run in file order and build on each other."""

import json
import os
import subprocess
import sys
import tarfile

import pytest

from tests import testhost
from tests.e2e.conftest import KEEP, ROOT, deploy, https_get, planned_changes, sh
from tests.standin import build
from tests.testhost import UPSTREAM_ROOT

TARGET = "e2e-upgrade"
PORT = 24433
A, B, BROKEN, FEATURE = build.OLDER_ESR, build.ESR_VERSION, build.BROKEN, build.FEATURE
UPLOAD = "/var/lib/mattermost/data/20261122/teams/t1/channels/c1/users/u1/minutes.txt"


def psql(sql: str) -> str:
    return sh(TARGET, f"runuser -u postgres -- psql -XAt -d mattermost -c \"{sql}\"").strip()


def running_version() -> str:
    status, headers, body = https_get(PORT)
    assert status == 200 and json.loads(body)["status"] == "OK"
    return ".".join(headers["X-Version-Id"].split(".")[:3])


def status(*data: str) -> list[dict]:
    args = [x for kv in data for x in ("--data", kv)]
    proc = subprocess.run([sys.executable, "-m", "verbs.status", "--json", *args], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "MMDEPLOY_TARGET": TARGET}, timeout=300)
    return json.loads(proc.stdout)


@pytest.fixture(scope="module", autouse=True)
def server():
    testhost.stop_server(TARGET)
    testhost.start_server(TARGET, ssh_port=22303, https_port=PORT)
    yield
    (UPSTREAM_ROOT / "github" / "ratelimited").unlink(missing_ok=True)
    if not KEEP:
        testhost.stop_server(TARGET)


def test_install_a_and_write_user_data():
    run = deploy(TARGET, "--data", f"mattermost_version={A}")
    assert run.ok, run.output[-4000:]
    assert running_version() == A
    psql("INSERT INTO posts (id, createat, userid, channelid, message) VALUES ('p1', 1, 'u1', 'c1', 'before the upgrade')")
    sh(TARGET, f"install -d -o mattermost -g mattermost $(dirname {UPLOAD}) && echo 'minutes' > {UPLOAD}")


def test_dry_run_names_the_upgrade_and_changes_nothing():
    # the default policy is "esr": the stand-in lists 11.7.6 as the newest ESR patch
    diff = deploy(TARGET, "--dry")
    assert diff.ok, diff.output[-3000:]
    assert f"Upgrade Mattermost {A} -> {B}" in diff.output
    assert sh(TARGET, "ls /opt/mattermost-releases").split() == [A], "a dry run downloaded something"
    assert running_version() == A


def test_upgrade_by_policy_keeps_data_and_takes_a_backup():
    run = deploy(TARGET)
    assert run.ok, run.output[-4000:]
    assert f"upgraded {A} -> {B}" in run.output
    assert running_version() == B
    assert psql("SELECT message FROM posts WHERE id='p1'") == "before the upgrade"
    assert psql("SELECT value FROM systems WHERE name='Version'") == B
    assert sh(TARGET, f"cat {UPLOAD}").strip() == "minutes"
    name = sh(TARGET, "ls /var/backups/mattermost | grep upgrade").split()[-1]
    manifest = json.loads(sh(TARGET, f"cat /var/backups/mattermost/{name}/manifest.json"))
    assert (manifest["version"], manifest["kind"], manifest["upgraded_to"]) == (A, "upgrade", B)
    assert int(sh(TARGET, f"stat -c %s /var/backups/mattermost/{name}/database.dump")) > 0
    assert "minutes" in sh(TARGET, f"cat /var/backups/mattermost/{name}/data/{UPLOAD.split('/data/', 1)[1]}")
    assert psql("SELECT count(*) FROM pg_database WHERE datname LIKE 'mattermost_before_%'") == "0"


def test_second_run_after_upgrade_changes_nothing():
    assert planned_changes(TARGET) == []


def test_broken_release_rolls_back_with_the_database_as_before():
    before = psql("SELECT version FROM db_migrations ORDER BY version")
    run = deploy(TARGET, "--data", f"mattermost_version={BROKEN}")
    assert run.returncode != 0
    failed = [line for line in run.output.splitlines() if line.startswith("FAILED:")]
    assert len(failed) == 1 and f"upgrade {B} -> {BROKEN} failed" in failed[0] and "rolled back" in failed[0]
    assert running_version() == B
    # the broken release's migration is gone: the database is as before the attempt
    assert psql("SELECT version FROM db_migrations ORDER BY version") == before
    assert psql("SELECT value FROM systems WHERE name='Version'") == B
    assert psql("SELECT message FROM posts WHERE id='p1'") == "before the upgrade"
    assert sh(TARGET, "readlink /opt/mattermost").strip() == f"/opt/mattermost-releases/{B}"
    hold = json.loads(sh(TARGET, "cat /etc/mattermost/upgrade-hold.json"))
    assert hold["version"] == BROKEN


def test_held_release_is_not_retried():
    run = deploy(TARGET, "--data", f"mattermost_version={BROKEN}")
    assert run.ok and f"{BROKEN} is held after a rollback" in run.output
    assert running_version() == B
    refused = deploy(TARGET, "--data", f"mattermost_version={BROKEN}", "--data", "mattermost_upgrade_required=true")
    assert not refused.ok and "upgrade refused" in refused.output


def test_restore_drill_brings_back_a_deleted_post():
    backup = _verb("verbs/backup.py")
    assert backup.ok, backup.output[-3000:]
    psql("DELETE FROM posts WHERE id='p1'")
    assert psql("SELECT count(*) FROM posts WHERE id='p1'") == "0"
    restore = _verb("verbs/restore.py", "--data", "restore_backup=latest")
    assert restore.ok, restore.output[-3000:]
    assert psql("SELECT message FROM posts WHERE id='p1'") == "before the upgrade"
    assert sh(TARGET, f"cat {UPLOAD}").strip() == "minutes"
    assert running_version() == B


def test_fetch_backup_copies_it_to_the_workstation(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "verbs.fetch_backup", "--data", f"fetched_backups_dir={tmp_path}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "MMDEPLOY_TARGET": TARGET})
    assert proc.returncode == 0, proc.stderr[-2000:]
    copies = list(tmp_path.glob(f"local-{TARGET}/*.tar"))
    assert len(copies) == 1
    with tarfile.open(copies[0]) as tar:
        names = tar.getnames()
    assert any(n.endswith("/database.dump") for n in names) and any(n.endswith("/manifest.json") for n in names)


def test_manual_rollback_returns_to_the_release_before_the_upgrade():
    run = _verb("verbs/rollback.py")
    assert run.ok, run.output[-3000:]
    assert running_version() == A
    assert psql("SELECT value FROM systems WHERE name='Version'") == A
    assert json.loads(sh(TARGET, "cat /etc/mattermost/upgrade-hold.json"))["version"] == B


def test_status_for_each_policy():
    [row] = status()  # esr -> B, which is held after the manual rollback
    assert (row["installed"], row["running"], row["latest"]) == (A, A, FEATURE)
    assert row["action"].startswith(f"blocked: {B} is held after a rollback")
    assert _verb("verbs/unhold.py").ok
    assert status()[0]["action"] == f"upgrade {A} -> {B}"
    assert status(f"mattermost_version={A}")[0]["action"] == "up to date"
    assert status("mattermost_version=latest")[0]["action"] == f"upgrade {A} -> {FEATURE}"
    assert status("mattermost_version=11.7")[0]["target"] == B
    assert status()[0]["last_backup"]


def test_status_when_the_api_is_rate_limited_or_unreachable():
    (UPSTREAM_ROOT / "github" / "ratelimited").write_text("")
    try:
        [row] = status()
    finally:
        (UPSTREAM_ROOT / "github" / "ratelimited").unlink()
    assert "rate limit is used up" in row["action"] and "resets in" in row["action"]
    [row] = status("github_api_url=http://127.0.0.1:9/api")
    assert "cannot reach" in row["action"] and "mattermost_version_fallback" in row["action"]
    [row] = status("github_api_url=http://127.0.0.1:9/api", f"mattermost_version_fallback={B}")
    assert row["action"] == f"upgrade {A} -> {B}"


def _verb(path: str, *args: str):
    return deploy(TARGET, path, *args)
