"""Backups that survive losing the server, against real Mattermost on real Debian
containers, as one story in order: the deploy places restic's credentials root-only; each
backup goes to a restic repository on a second container reached over SFTP (as a storage
box is); an unreachable repository is one clear line and the local backup stays; the
second copy is incremental; then the server is DESTROYED, a fresh one is deployed and
`make rebuild` brings posts, files, users, emoji and settings back from the repository
alone; a restore drill refuses a server where people chat.

The tests of this module run in file order and build on each other."""

import json
import os
import subprocess
import sys

import pytest

from tests import testhost
from tests.e2e import chat
from tests.e2e.conftest import KEEP, ROOT, deploy, planned_changes, sh
from tests.images import png

SFTP = f"{testhost.PREFIX}-sftp-offsite"  # its own: this story stops it on purpose
TARGET = "e2e-offsite"
PORT = 24439
SECRET = "restic-test-password-4f9c1e"  # a test repository's password, only in this test's environment
ENV = {"RESTIC_PASSWORD": SECRET}
EMOJI = "offsite-party"
STORY: dict = {}


def psql(sql: str) -> str:
    return sh(TARGET, f"runuser -u postgres -- psql -XAt -d mattermost -c \"{sql}\"").strip()


def status() -> dict:
    proc = subprocess.run([sys.executable, "-m", "verbs.status", "--json"], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **ENV, "MMDEPLOY_TARGET": TARGET}, timeout=300)
    [row] = json.loads(proc.stdout)
    return row


def start_server(sftp: dict, emoji_dir) -> None:
    testhost.start_server(TARGET, ssh_port=22309, https_port=PORT, extra_data={
        "backup_offsite_repository": f"sftp:{sftp['user']}@{SFTP}:{sftp['root']}/{TARGET}",
        "backup_offsite_ssh_key": str(sftp["key"]),
        "backup_offsite_known_hosts": sftp["known_hosts"],
        "backup_offsite_keep": {"last": 5},
        "mattermost_emoji_dir": str(emoji_dir),
    })


@pytest.fixture(scope="module", autouse=True)
def servers(tmp_path_factory):
    sftp = testhost.ensure_sftp(testhost.client(), SFTP)
    testhost.exec_on_container(SFTP, f"rm -rf {sftp['root']}/{TARGET}")  # a fresh repository
    emoji_dir = tmp_path_factory.getbasetemp() / "offsite-emoji"
    emoji_dir.mkdir(exist_ok=True)
    (emoji_dir / f"{EMOJI}.png").write_bytes(png(48, 48))
    STORY.update(sftp=sftp, emoji_dir=emoji_dir)
    testhost.stop_server(TARGET)
    start_server(sftp, emoji_dir)
    yield
    testhost.client().containers.get(SFTP).start()
    if not KEEP:
        testhost.stop_server(TARGET)


def test_the_deploy_places_restics_credentials_root_only():
    run = deploy(TARGET, env=ENV)
    assert run.ok, run.output[-4000:]
    assert sh(TARGET, "stat -c '%U %a %n' /etc/mattermost/private/restic-password /etc/mattermost/private/restic-ssh-key"
              ).split("\n")[:2] == ["root 600 /etc/mattermost/private/restic-password",
                                     "root 600 /etc/mattermost/private/restic-ssh-key"]
    assert SFTP in sh(TARGET, "cat /etc/mattermost/restic-known-hosts")
    assert SECRET not in run.output
    assert planned_changes(TARGET, env=ENV) == []
    refused = deploy(TARGET)  # without the password on the workstation: refused before anything
    failed = [line for line in refused.output.splitlines() if line.startswith("FAILED:")]
    assert len(failed) == 1 and "RESTIC_PASSWORD is empty on this workstation" in failed[0]


def test_a_backup_goes_off_the_server():
    chat.mmctl(TARGET, "team create --name acme --display-name Acme")
    chat.create_user(TARGET, "alice", team="acme")
    STORY["story"] = chat.leave_a_post_with_file_and_reaction(
        PORT, "alice", "acme", "kept off the server", b"offsite minutes\n", EMOJI)
    config = "/var/lib/mattermost/config/config.json"
    sh(TARGET, f"python3 -c \"import json; p='{config}'; c=json.load(open(p)); c['TeamSettings']['SiteName']='Offsite Chat';"
               " json.dump(c, open(p, 'w'), indent=4)\"")
    run = deploy(TARGET, "verbs/backup.py", env=ENV)
    assert run.ok, run.output[-4000:]
    assert "off-server copy of" in run.output and SECRET not in run.output
    row = status()
    assert row["offsite_state"] == "ok" and row["offsite"].startswith("ok ")
    STORY["first_added"] = json.loads(sh(TARGET, "cat /var/lib/mattermost-deploy/offsite.json"))["added_bytes"]


def test_an_unreachable_repository_is_one_clear_line_and_the_local_backup_stays():
    before = set(sh(TARGET, "ls /var/backups/mattermost").split())
    testhost.client().containers.get(SFTP).stop()
    try:
        run = deploy(TARGET, "verbs/backup.py", env=ENV)
    finally:
        testhost.client().containers.get(SFTP).start()
    failed = [line for line in run.output.splitlines() if line.startswith("FAILED:")]
    assert not run.ok and len(failed) == 1, run.output[-3000:]
    assert "is complete, but its off-server copy failed" in failed[0]
    new = set(sh(TARGET, "ls /var/backups/mattermost").split()) - before
    assert len(new) == 1 and "manifest.json" in sh(TARGET, f"ls /var/backups/mattermost/{new.pop()}")
    row = status()
    assert row["offsite_state"] == "failed" and row["offsite"].startswith("FAILED: ")


def test_the_next_copy_is_incremental_and_clears_the_failure():
    testhost.ensure_sftp(testhost.client(), SFTP)  # back up after its restart
    run = deploy(TARGET, "verbs/backup.py", env=ENV)
    assert run.ok, run.output[-3000:]
    record = json.loads(sh(TARGET, "cat /var/lib/mattermost-deploy/offsite.json"))
    assert record["last_error"] is None and record["added_bytes"] < STORY["first_added"]
    assert status()["offsite_state"] == "ok"
    STORY["counts"] = {t: psql(f"SELECT count(*) FROM {t} WHERE deleteat = 0") for t in ("posts", "fileinfo", "emoji")}


def test_a_destroyed_server_is_rebuilt_from_the_repository_alone():
    testhost.stop_server(TARGET)  # the VPS is gone: its disk, its backups, its secrets
    start_server(STORY["sftp"], STORY["emoji_dir"])
    assert "mattermost" not in sh(TARGET, "ls /opt")
    fresh = deploy(TARGET, env=ENV)
    assert fresh.ok, fresh.output[-4000:]
    run = deploy(TARGET, "verbs/rebuild.py", env=ENV)
    assert run.ok, run.output[-5000:]
    assert "restore check: everything the backup holds is back" in run.output
    assert {t: psql(f"SELECT count(*) FROM {t} WHERE deleteat = 0") for t in ("posts", "fileinfo", "emoji")} == \
        STORY["counts"]
    chat.still_there(PORT, "alice", STORY["story"])  # post, file, reaction and custom emoji
    config = json.loads(sh(TARGET, "cat /var/lib/mattermost/config/config.json"))
    assert config["TeamSettings"]["SiteName"] == "Offsite Chat"
    again = deploy(TARGET, env=ENV)
    assert again.ok, again.output[-3000:]


def test_a_restore_drill_refuses_a_server_where_people_chat():
    refused = deploy(TARGET, "verbs/rebuild.py", "--data", "restore_drill=true", env=ENV)
    failed = [line for line in refused.output.splitlines() if line.startswith("FAILED:")]
    assert len(failed) == 1 and "people have accounts here" in failed[0] and "nothing was changed" in failed[0]
    drill = deploy(TARGET, "verbs/rebuild.py", "--data", "restore_drill=true", "--data", "drill_replace=true", env=ENV)
    assert drill.ok and "restore check: everything the backup holds is back" in drill.output, drill.output[-3000:]
