"""Upgrades the operator can trust, against REAL Mattermost on a real Debian 12 container,
as one story in order: install A (the older real build), a user posts a file with a
custom-emoji reaction through nginx (the PyPI client); a config the new version rejects is
refused before anything changes; a broken release that ran the real migrations is rolled
back with the database as before (by Mattermost's own `db downgrade`, and when that fails
too, from the pre-upgrade dump); the policy upgrade to B runs the real migrations with
the user's data intact; backups that a rewritten live file cannot change; a restore drill;
a manual rollback; and `make status` for each policy and for a rate-limited or unreachable
API. The user checks their post, file and reaction after each step.

The tests of this module run in file order and build on each other."""

import json
import os
import subprocess
import sys
import tarfile

import pytest

from tests import testhost
from tests.e2e import chat
from tests.e2e.conftest import KEEP, ROOT, deploy, https_get, planned_changes, sh
from tests.images import png
from tests.standin import build
from tests.testhost import UPSTREAM_ROOT

TARGET = "e2e-upgrade"
PORT = 24433
GITHUB = UPSTREAM_ROOT / "github-upgrade"  # what the stand-in GitHub API says to this story alone
A, B, BROKEN, FEATURE = build.OLDER_ESR, build.ESR_VERSION, build.BROKEN, build.FEATURE
NO_DOWNGRADE = build.NO_DOWNGRADE
EMOJI = "team-party"
STORY: dict = {}


def psql(sql: str) -> str:
    return sh(TARGET, f"runuser -u postgres -- psql -XAt -d mattermost -c \"{sql}\"").strip()


def migrations() -> str:
    return psql("SELECT string_agg(version::text, ',' ORDER BY version) FROM db_migrations")


def running_version() -> str:
    status, headers, body = https_get(PORT)
    assert status == 200 and json.loads(body)["status"] == "OK"
    return ".".join(headers["X-Version-Id"].split(".")[:3])


def status(*data: str) -> list[dict]:
    args = [x for kv in data for x in ("--data", kv)]
    proc = subprocess.run([sys.executable, "-m", "verbs.status", "--json", *args], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "MMDEPLOY_TARGET": TARGET}, timeout=300)
    return json.loads(proc.stdout)


def emoji_args(tmp_path_factory) -> list[str]:
    folder = tmp_path_factory.getbasetemp() / "upgrade-emoji"
    folder.mkdir(exist_ok=True)
    (folder / f"{EMOJI}.png").write_bytes(png(64, 64))
    return ["--data", f"mattermost_emoji_dir={folder}"]


@pytest.fixture(scope="module", autouse=True)
def server(tmp_path_factory):
    testhost.stop_server(TARGET)
    # Its own name on the stand-in GitHub API: the rate limit it simulates stays its own.
    testhost.start_server(TARGET, ssh_port=22303, https_port=PORT, extra_data={
        "github_api_url": f"http://127.0.0.1:{testhost.UPSTREAM_PORT}/api-{GITHUB.name[len('github-'):]}"})
    STORY["emoji"] = emoji_args(tmp_path_factory)
    GITHUB.mkdir(exist_ok=True)
    yield
    (GITHUB / "ratelimited").unlink(missing_ok=True)
    if not KEEP:
        testhost.stop_server(TARGET)


def user_still_sees_everything():
    chat.still_there(PORT, "alice", STORY["story"])


def test_install_a_and_a_user_posts_with_a_file_and_a_custom_emoji():
    run = deploy(TARGET, "--data", f"mattermost_version={A}", *STORY["emoji"])
    assert run.ok, run.output[-4000:]
    assert f"emoji :{EMOJI}: uploaded" in run.output
    assert running_version() == A
    STORY["migrations_a"] = migrations()
    chat.mmctl(TARGET, "team create --name acme --display-name Acme")
    chat.create_user(TARGET, "alice", team="acme")
    STORY["story"] = chat.leave_a_post_with_file_and_reaction(
        PORT, "alice", "acme", "before the upgrade", b"minutes of the meeting\n", EMOJI)
    user_still_sees_everything()


def test_dry_run_names_the_upgrade_and_changes_nothing():
    # the default policy is "esr": the stand-in lists B as the newest release of the newest ESR line
    diff = deploy(TARGET, "--dry", *STORY["emoji"])
    assert diff.ok, diff.output[-3000:]
    assert f"Upgrade Mattermost {A} -> {B}" in diff.output
    assert sh(TARGET, "ls /opt/mattermost-releases").split() == [A], "a dry run downloaded something"
    assert running_version() == A


def test_a_config_the_new_version_rejects_is_refused_before_any_change():
    # Mattermost 11 refuses TeamSettings.ExperimentalViewArchivedChannels = false (public/model/
    # config.go). An admin may have set it on 10.x in the System Console; B's own binary says no.
    config = "/var/lib/mattermost/config/config.json"
    sh(TARGET, f"cp -p {config} /root/config.good && python3 -c \"import json; p='{config}'; c=json.load(open(p)); "
               "c['TeamSettings']['ExperimentalViewArchivedChannels']=False; json.dump(c, open(p,'w'), indent=4)\"")
    try:
        before = migrations()
        run = deploy(TARGET, *STORY["emoji"])
        failed = [line for line in run.output.splitlines() if line.startswith("FAILED:")]
        assert len(failed) == 1 and f"Mattermost {B} rejects the current config.json" in failed[0], run.output[-3000:]
        assert "nothing was changed" in failed[0] and "archived" in failed[0].lower()
        assert running_version() == A and migrations() == before
        assert sh(TARGET, "readlink /opt/mattermost").strip() == f"/opt/mattermost-releases/{A}"
    finally:
        sh(TARGET, f"cp -p /root/config.good {config}")


def test_broken_release_rolls_back_after_its_migrations_ran():
    before = migrations()
    run = deploy(TARGET, "--data", f"mattermost_version={BROKEN}", *STORY["emoji"])
    assert run.returncode != 0
    failed = [line for line in run.output.splitlines() if line.startswith("FAILED:")]
    assert len(failed) == 1 and f"upgrade {A} -> {BROKEN} failed" in failed[0] and "rolled back" in failed[0]
    # the real 11.x binary ran its migrations against the database before the release failed
    journal = sh(TARGET, "journalctl -u mattermost --no-pager -o cat")
    assert f"stand-in broken release {BROKEN}: failing after the migrations" in journal
    assert "Database successfully migrated" in journal
    # ... and the database is exactly as before the attempt
    assert migrations() == before == STORY["migrations_a"]
    assert running_version() == A
    assert sh(TARGET, "readlink /opt/mattermost").strip() == f"/opt/mattermost-releases/{A}"
    assert json.loads(sh(TARGET, "cat /etc/mattermost/upgrade-hold.json"))["version"] == BROKEN
    user_still_sees_everything()


def test_held_release_is_not_retried():
    run = deploy(TARGET, "--data", f"mattermost_version={BROKEN}", *STORY["emoji"])
    assert run.ok and f"{BROKEN} is held after a rollback" in run.output
    assert running_version() == A
    refused = deploy(TARGET, "--data", f"mattermost_version={BROKEN}", "--data", "mattermost_upgrade_required=true",
                     *STORY["emoji"])
    assert not refused.ok and "upgrade refused" in refused.output


def test_when_the_schema_downgrade_fails_too_the_pre_upgrade_dump_brings_the_database_back():
    run = deploy(TARGET, "--data", f"mattermost_version={NO_DOWNGRADE}", *STORY["emoji"])
    assert run.returncode != 0
    failed = [line for line in run.output.splitlines() if line.startswith("FAILED:")]
    assert len(failed) == 1 and f"upgrade {A} -> {NO_DOWNGRADE} failed" in failed[0] and "rolled back" in failed[0]
    assert "the database was restored from the pre-upgrade dump" in run.output
    journal = sh(TARGET, "journalctl -u mattermost --no-pager -o cat")
    assert f"stand-in broken release {NO_DOWNGRADE}: failing after the migrations" in journal
    # the migrated database is kept aside; the live one is the dump's, with A's schema and every post
    assert psql("SELECT count(*) FROM pg_database WHERE datname = 'mattermost_failed_upgrade'") == "1"
    assert migrations() == STORY["migrations_a"]
    assert running_version() == A
    user_still_sees_everything()


def test_upgrade_by_policy_runs_the_real_migrations_and_keeps_the_data():
    run = deploy(TARGET, *STORY["emoji"])
    assert run.ok, run.output[-4000:]
    assert f"upgraded {A} -> {B}" in run.output
    assert running_version() == B
    assert len(migrations().split(",")) > len(STORY["migrations_a"].split(","))  # B's schema is newer
    user_still_sees_everything()
    name = sh(TARGET, "ls /var/backups/mattermost | grep upgrade").split()[-1]
    manifest = json.loads(sh(TARGET, f"cat /var/backups/mattermost/{name}/manifest.json"))
    assert (manifest["version"], manifest["kind"], manifest["upgraded_to"]) == (A, "upgrade", B)
    # the dump: pg_dump's custom format through gzip --rsyncable, read back by the real pg_restore
    listing = sh(TARGET, f"gzip -dc /var/backups/mattermost/{name}/database.dump.gz | pg_restore -l")
    assert "TABLE DATA public posts" in listing and "TABLE DATA public fileinfo" in listing
    path = psql(f"SELECT path FROM fileinfo WHERE id = '{STORY['story'].file_id}'")
    assert sh(TARGET, f"cat /var/backups/mattermost/{name}/data/{path}").encode() == STORY["story"].file_body
    assert psql("SELECT count(*) FROM pg_database WHERE datname LIKE 'mattermost_before_%'") == "0"


def test_second_run_after_upgrade_changes_nothing():
    assert planned_changes(TARGET, *STORY["emoji"]) == []


def test_a_file_rewritten_in_place_does_not_change_the_backups():
    # Mattermost's local file store rewrites files in place (O_TRUNC): a backup that shared
    # the live file's inode (a hard link) would change with it.
    backup = deploy(TARGET, "verbs/backup.py")
    assert backup.ok, backup.output[-3000:]
    path = psql(f"SELECT path FROM fileinfo WHERE id = '{STORY['story'].file_id}'")
    live = f"/var/lib/mattermost/data/{path}"
    copies = sh(TARGET, f"ls -d /var/backups/mattermost/*/data/{path}").split()
    assert len(copies) >= 2
    live_inode = sh(TARGET, f"stat -c %i {live}").strip()
    assert live_inode not in sh(TARGET, "stat -c %i " + " ".join(copies)).split()
    sh(TARGET, f"runuser -u mattermost -- python3 -c \"open('{live}', 'w').write('rewritten in place')\"")
    try:
        for copy in copies:
            assert sh(TARGET, f"cat {copy}").encode() == STORY["story"].file_body, copy
    finally:
        body = STORY["story"].file_body.decode()
        sh(TARGET, f"runuser -u mattermost -- python3 -c \"open('{live}', 'w').write({body!r})\"")


def test_restore_drill_brings_back_a_deleted_post():
    backup = deploy(TARGET, "verbs/backup.py")
    assert backup.ok, backup.output[-3000:]
    alice = chat.login(PORT, "alice")
    town_square = alice.channels.get_channel_by_name_and_team_name("acme", "town-square")["id"]
    alice.posts.delete_post(STORY["story"].post_id)
    assert STORY["story"].post_id not in alice.posts.get_posts_for_channel(town_square)["posts"]
    restore = deploy(TARGET, "verbs/restore.py", "--data", "restore_backup=latest")
    assert restore.ok, restore.output[-3000:]
    assert running_version() == B
    user_still_sees_everything()


def test_fetch_backup_copies_it_to_the_workstation(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "verbs.fetch_backup", "--data", f"fetched_backups_dir={tmp_path}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "MMDEPLOY_TARGET": TARGET})
    assert proc.returncode == 0, proc.stderr[-2000:]
    copies = list(tmp_path.glob(f"local-{TARGET}/*.tar"))
    assert len(copies) == 1
    with tarfile.open(copies[0]) as tar:
        names = tar.getnames()
    assert any(n.endswith("/database.dump.gz") for n in names) and any(n.endswith("/manifest.json") for n in names)


def test_manual_rollback_returns_to_the_release_before_the_upgrade():
    run = deploy(TARGET, "verbs/rollback.py")
    assert run.ok, run.output[-3000:]
    assert running_version() == A
    assert migrations() == STORY["migrations_a"]
    assert json.loads(sh(TARGET, "cat /etc/mattermost/upgrade-hold.json"))["version"] == B
    user_still_sees_everything()


def test_status_for_each_policy():
    [row] = status()  # esr -> B, which is held after the manual rollback
    assert (row["installed"], row["running"], row["latest"]) == (A, A, FEATURE)
    assert row["action"].startswith(f"blocked: {B} is held after a rollback")
    assert deploy(TARGET, "verbs/unhold.py").ok
    assert status()[0]["action"] == f"upgrade {A} -> {B}"
    assert status(f"mattermost_version={A}")[0]["action"] == "up to date"
    # "latest" is the newer feature release, past the ESR line of B: a chain through B, or one
    # hop with the opt-in
    assert status("mattermost_version=latest")[0]["action"] == f"upgrade {A} -> {B} -> {FEATURE}"
    assert status("mattermost_version=latest", "mattermost_allow_esr_skip=true")[0]["action"] == f"upgrade {A} -> {FEATURE}"
    assert status(f"mattermost_version={B.rsplit('.', 1)[0]}")[0]["target"] == B
    assert status()[0]["last_backup"]


def test_status_when_the_api_is_rate_limited_or_unreachable():
    (GITHUB / "ratelimited").write_text("")
    try:
        [row] = status()
    finally:
        (GITHUB / "ratelimited").unlink()
    assert "rate limit is used up" in row["action"] and "resets in" in row["action"]
    [row] = status("github_api_url=http://127.0.0.1:9/api")
    assert "cannot reach" in row["action"] and "mattermost_version_fallback" in row["action"]
    [row] = status("github_api_url=http://127.0.0.1:9/api", f"mattermost_version_fallback={B}")
    assert row["action"] == f"upgrade {A} -> {B}"
