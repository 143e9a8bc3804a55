"""Channels, users, emoji and the GDPR as code, on a real Debian 12 container, as one
story in order. The stand-in Mattermost keeps teams, channels, users, posts, files and
emoji in the real PostgreSQL database; the deploy reads and changes them over mmctl --local
(and the REST API with the deploy's bot token, for emoji)."""

import json
import os
import subprocess
import sys
import time
import zipfile

import pytest

from tests import testhost
from tests.e2e.conftest import KEEP, ROOT, deploy, planned_changes, sh

TARGET = "e2e-hk"
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
OLD = int((time.time() - 400 * 86400) * 1000)  # 400 days ago
RECENT = int((time.time() - 3 * 86400) * 1000)

DECLARED = [
    "--data", 'mattermost_channels_archive=["acme:old-project"]',
    "--data", 'mattermost_channels_delete=["acme:tmp-channel"]',
    "--data", 'mattermost_users_create=[{"username": "carol", "email": "carol@example.org"}]',
    "--data", 'mattermost_users_deactivate=["alice"]',
    "--data", 'mattermost_users_erase=["mallory"]',
]
CONFIRMED = [*DECLARED, "--data", "mattermost_confirm_permanent_deletion=true"]


def mmctl(args: str) -> str:
    return sh(TARGET, f"cd /opt/mattermost && MMCTL_LOCAL_SOCKET_PATH=/run/mattermost/local.socket "
                      f"runuser -u mattermost -- bin/mmctl --local {args}")


def db(sql: str) -> str:
    return sh(TARGET, f"runuser -u postgres -- psql -XAt -d mattermost -c \"{sql}\"").strip()


def verb(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "MMDEPLOY_TARGET": TARGET})


@pytest.fixture(scope="module", autouse=True)
def server():
    testhost.stop_server(TARGET)
    testhost.start_server(TARGET, ssh_port=22306, https_port=24436)
    assert deploy(TARGET).ok
    mmctl("team create --name acme --display-name Acme")
    for name in ("town-square", "old-project", "tmp-channel", "dormant", "recent"):
        mmctl(f"channel create --team acme --name {name} --display-name {name}")
    for user in ("alice", "mallory", "bob"):
        mmctl(f"user create --username {user} --email {user}@example.org --password x")
        mmctl(f"channel users add acme:recent {user}")
    mmctl("user login alice")
    mmctl(f"post create acme:old-project --user bob --message 'old plans' --create-at {OLD}")
    mmctl(f"post create acme:dormant --user bob --message 'nobody came back' --create-at {OLD} --attach notes.txt")
    mmctl(f"post create acme:tmp-channel --user bob --message 'temporary' --create-at {RECENT}")
    mmctl(f"post create acme:recent --user mallory --message 'mallory wrote this' --create-at {RECENT}")
    mmctl(f"post create acme:recent --user bob --message 'still here' --create-at {RECENT} --attach minutes.txt")
    yield
    if not KEEP:
        testhost.stop_server(TARGET)


def test_channels_report_flags_the_stale_channel():
    proc = verb("verbs.report", "channels", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = {r["channel"]: r for r in json.loads(proc.stdout)[f"local-{TARGET}"]}
    assert rows["dormant"]["stale"] and rows["old-project"]["stale"]
    assert not rows["recent"]["stale"] and rows["recent"]["members"] == 3 and rows["recent"]["messages"] == 2
    text = verb("verbs.report", "channels").stdout
    assert "dormant" in text and "stale" in text


def test_nothing_permanent_without_the_confirmation_setting():
    run = deploy(TARGET, *DECLARED)
    assert not run.ok
    failed = [line for line in run.output.splitlines() if line.startswith("FAILED:")]
    assert len(failed) == 1 and "not confirmed: set mattermost_confirm_permanent_deletion" in failed[0]
    assert "tmp-channel" in mmctl("channel list acme") and "mallory" in mmctl("user list --all")
    assert "Starting operation" not in run.output


def test_dry_run_names_each_channel_and_user():
    planned = planned_changes(TARGET, *CONFIRMED)
    for name in ("Archive channel acme:old-project", "Delete channel acme:tmp-channel permanently (with its posts)",
                 "Create user carol (carol@example.org; password set by the user via e-mail)",
                 "Deactivate user alice (offboarding: sessions revoked)",
                 "Erase user mallory permanently (with all their posts)", "Back up before permanent deletion"):
        assert name in planned
    assert "tmp-channel" in mmctl("channel list acme")  # the dry run changed nothing


def test_declared_state_applied_then_nothing_changes():
    run = deploy(TARGET, *CONFIRMED)
    assert run.ok, run.output[-4000:]
    channels = mmctl("channel list acme")
    assert "old-project (archived)" in channels and "tmp-channel" not in channels
    assert db("SELECT count(*) FROM posts WHERE message = 'temporary'") == "0"
    users = json.loads(mmctl("user list --all --json"))
    by_name = {u["username"]: u for u in users}
    assert by_name["alice"]["delete_at"] > 0 and "mallory" not in by_name and "carol" in by_name
    assert db("SELECT count(*) FROM sessions s JOIN users u ON u.id = s.userid WHERE u.username = 'alice'") == "0"
    # erasure: mallory's posts are gone, a backup was taken before
    assert db("SELECT count(*) FROM posts WHERE message = 'mallory wrote this'") == "0"
    assert "pre-deletion" in sh(TARGET, "ls /var/backups/mattermost")
    # carol sets her own password through the reset e-mail
    assert db("SELECT email FROM standin_sent_emails WHERE kind = 'password_reset'") == "carol@example.org"
    assert planned_changes(TARGET, *CONFIRMED) == []


def test_offboarding_deactivates_and_a_second_run_changes_nothing():
    run = deploy(TARGET, "verbs/offboard.py", "--data", "offboard_user=bob")
    assert run.ok and "Deactivate user bob (offboarding: sessions revoked)" in run.output
    assert [u["delete_at"] > 0 for u in json.loads(mmctl("user list --all --json")) if u["username"] == "bob"] == [True]
    again = deploy(TARGET, "verbs/offboard.py", "--data", "offboard_user=bob")
    assert again.ok and "bob is already deactivated: nothing to do" in again.output


def test_erase_verb_needs_the_typed_confirmation():
    refused = deploy(TARGET, "verbs/erase.py", "--data", "erase_user=carol")
    assert not refused.ok and "confirm by typing the username (CONFIRM=carol)" in refused.output
    assert "carol" in mmctl("user list --all")
    run = deploy(TARGET, "verbs/erase.py", "--data", "erase_user=carol", "--data", "erase_confirmed=carol")
    assert run.ok, run.output[-3000:]
    assert "carol" not in mmctl("user list --all")


def test_emoji_uploaded_once_and_a_bad_image_refused(tmp_path):
    folder = tmp_path / "emoji"
    folder.mkdir()
    (folder / "party.png").write_bytes(PNG)
    (folder / "wave.gif").write_bytes(b"GIF89a" + b"\0" * 16)
    emoji = ["--data", f"mattermost_emoji_dir={folder}"]
    run = deploy(TARGET, *CONFIRMED, *emoji)
    assert run.ok, run.output[-4000:]
    assert "emoji :party: uploaded" in run.output and "emoji :wave: uploaded" in run.output
    assert db("SELECT string_agg(name, ',' ORDER BY name) FROM emoji") == "party,wave"
    assert sh(TARGET, "stat -c '%U %a' /etc/mattermost/private/bot-token").strip() == "root 600"
    assert planned_changes(TARGET, *CONFIRMED, *emoji) == []
    (folder / "broken.png").write_bytes(b"BM" + b"\0" * 40)
    bad = deploy(TARGET, *CONFIRMED, *emoji)
    failed = [line for line in bad.output.splitlines() if line.startswith("FAILED:")]
    assert len(failed) == 1 and "broken.png: not a PNG, JPEG or GIF image" in failed[0]
    assert db("SELECT count(*) FROM emoji") == "2"


def test_export_delivers_an_archive_to_the_workstation(tmp_path):
    proc = verb("verbs.export", "--data", f"exports_dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    [archive] = list(tmp_path.glob(f"local-{TARGET}/*_export.zip"))
    with zipfile.ZipFile(archive) as z:
        lines = [json.loads(line) for line in z.read("import.jsonl").decode().splitlines()]
    assert lines[0]["type"] == "version"
    assert any(line["type"] == "post" and line["post"]["message"] == "still here" for line in lines)


def test_retention_counts_first_then_removes_exactly_the_old_rows():
    old_ids = set(db(f"SELECT string_agg(id, ' ') FROM posts WHERE createat < {RECENT - 86400000}").split())
    kept_ids = set(db(f"SELECT string_agg(id, ' ') FROM posts WHERE createat >= {RECENT - 86400000}").split())
    assert old_ids and kept_ids
    old_file = db(f"SELECT path FROM fileinfo WHERE createat = {OLD}")
    kept_file = db(f"SELECT path FROM fileinfo WHERE createat = {RECENT}")
    days = ["--data", "mattermost_retention_days=30"]
    counted = deploy(TARGET, "verbs/retention.py", *days)
    assert counted.ok and f'"posts": {len(old_ids)}, "files": 1, "applied": false' in counted.output
    assert set(db("SELECT string_agg(id, ' ') FROM posts").split()) == old_ids | kept_ids
    applied = deploy(TARGET, "verbs/retention.py", *days, "--data", "retention_apply=true")
    assert applied.ok, applied.output[-3000:]
    assert set(db("SELECT string_agg(id, ' ') FROM posts").split()) == kept_ids
    assert db(f"SELECT count(*) FROM fileinfo WHERE createat = {OLD}") == "0"
    sh(TARGET, f"test ! -e /var/lib/mattermost/data/{old_file} && test -e /var/lib/mattermost/data/{kept_file}")
    assert "pre-retention" in sh(TARGET, "ls /var/backups/mattermost")
