"""Channels, users, emoji and the GDPR as code, against REAL Mattermost on a real Debian 12
container, as one story in order. Users post through nginx with the PyPI client; the
deploy reads and changes the server over the local socket (mmctl --local and the local
API) and uploads emoji with its bot; new users get their password e-mail from a real SMTP
server on the test network."""

import json
import os
import re
import subprocess
import sys
import time
import zipfile

import pytest

from mmhelper.parts.config import get_dotted
from tasks import privacy
from tests import testhost
from tests.e2e import chat
from tests.e2e.conftest import KEEP, ROOT, deploy, planned_changes, sh
from tests.images import GIF_1X1, png

TARGET = "e2e-hk"
PORT = 24436
OLD = int((time.time() - 400 * 86400) * 1000)  # 400 days ago
# The test relay as a provider's: port 587, STARTTLS (its certificate self-signed), a login
# whose password comes from the environment (MATTERMOST_SMTP_PASSWORD, set by the fixture).
SMTP = ["--data", f"smtp_server={testhost.SMTP}", "--data", "smtp_port=587", "--data", "smtp_security=STARTTLS",
        "--data", f"smtp_user={testhost.SMTP_AUTH_USER}", "--data", "smtp_skip_certificate_check=true",
        "--data", "smtp_sender=chat@example.org"]
CONFIG = "/var/lib/mattermost/config/config.json"
DECLARED = [
    *SMTP,
    "--data", 'mattermost_channels_archive=["acme:old-project"]',
    "--data", 'mattermost_channels_delete=["acme:tmp-channel"]',
    "--data", 'mattermost_users_create=[{"username": "carol", "email": "carol@example.org"}]',
    "--data", 'mattermost_users_deactivate=["alice"]',
    "--data", 'mattermost_users_erase=["mallory"]',
]
CONFIRMED = [*DECLARED, "--data", "mattermost_confirm_permanent_deletion=true"]
IDS: dict = {}


def db(sql: str) -> str:
    return sh(TARGET, f"runuser -u postgres -- psql -XAt -d mattermost -c \"{sql}\"").strip()


def verb(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "MMDEPLOY_TARGET": TARGET})


def post(client, channel: str, message: str, create_at: int | None = None, file: tuple | None = None) -> str:
    channel_id = client.channels.get_channel_by_name_and_team_name("acme", channel)["id"]
    body = {"channel_id": channel_id, "message": message}
    if create_at:
        body["create_at"] = create_at  # a system admin may set it (api4/post.go createPost)
    if file:
        body["file_ids"] = [client.files.upload_file(channel_id, files={"files": file})["file_infos"][0]["id"]]
    return client.posts.create_post(body)["id"]


@pytest.fixture(scope="module", autouse=True)
def server():
    testhost.ensure_smtp(testhost.client())
    testhost.clear_mail("carol@example.org")
    os.environ["MATTERMOST_SMTP_PASSWORD"] = testhost.SMTP_AUTH_PASSWORD
    testhost.stop_server(TARGET)
    testhost.start_server(TARGET, ssh_port=22306, https_port=PORT)
    run = deploy(TARGET)  # no e-mail yet: see test_creating_users_without_email_is_refused_with_the_reason
    assert run.ok, run.output[-4000:]
    chat.mmctl(TARGET, "team create --name acme --display-name Acme")
    for name in ("old-project", "tmp-channel", "dormant", "recent", "joins-only"):
        chat.mmctl(TARGET, f"channel create --team acme --name {name} --display-name {name}")
    # made long ago, never written in since: only the join messages of people added today
    db(f"UPDATE channels SET createat = {OLD} WHERE name = 'joins-only'")
    chat.create_user(TARGET, "boss", team="acme", admin=True)
    for user in ("alice", "mallory", "bob"):
        chat.create_user(TARGET, user, team="acme")
        chat.mmctl(TARGET, f"channel users add acme:recent {user}")
        chat.mmctl(TARGET, f"channel users add acme:joins-only {user}")
    boss = chat.login(PORT, "boss")
    IDS["old"] = [post(boss, "old-project", "old plans", OLD),
                  post(boss, "dormant", "nobody came back", OLD, ("notes.txt", b"old notes\n"))]
    post(boss, "tmp-channel", "temporary")
    chat.login(PORT, "alice")  # alice has a session that offboarding must end
    post(chat.login(PORT, "mallory"), "recent", "mallory wrote this")
    post(chat.login(PORT, "bob"), "recent", "still here", file=("minutes.txt", b"minutes\n"))
    yield
    os.environ.pop("MATTERMOST_SMTP_PASSWORD", None)
    if not KEEP:
        testhost.stop_server(TARGET)


def test_channels_report_flags_the_stale_channel():
    # Real Mattermost's local socket has no channel stats route: the member counts come from
    # the database (a 404 on the old path made the report fail).
    proc = verb("verbs.report", "channels", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = {r["channel"]: r for r in json.loads(proc.stdout)[f"local-{TARGET}"]}
    assert rows["dormant"]["stale"] and rows["old-project"]["stale"]
    assert not rows["recent"]["stale"] and rows["recent"]["members"] == 3
    assert rows["recent"]["messages"] >= 2  # the two posts (and Mattermost's own join messages)
    text = verb("verbs.report", "channels").stdout
    assert "dormant" in text and "stale" in text


def test_a_channel_with_only_join_messages_is_stale():
    # Mattermost's own LastPostAt moved with the join messages; people never wrote there
    assert int(db("SELECT count(*) FROM posts p JOIN channels c ON c.id = p.channelid WHERE c.name = 'joins-only' "
                  "AND p.type = 'system_join_channel'")) >= 3
    proc = verb("verbs.report", "channels", "--json")
    rows = {r["channel"]: r for r in json.loads(proc.stdout)[f"local-{TARGET}"]}
    assert rows["joins-only"]["stale"] and rows["joins-only"]["last_post"] == "never", rows["joins-only"]
    assert not rows["recent"]["stale"]


def test_users_report_shows_when_each_user_was_last_active():
    # bob logged in and posted through nginx (the fixture): the server's own record of it
    proc = verb("verbs.report", "users", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = {r["username"]: r for r in json.loads(proc.stdout)[f"local-{TARGET}"]}
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert rows["bob"]["last_activity"] == today and abs(rows["bob"]["last_activity_at"] / 1000 - time.time()) < 3600
    assert rows["carol"]["last_activity"] == "never" if "carol" in rows else True
    text = verb("verbs.report", "users").stdout
    bob_line = next(line for line in text.splitlines() if line.startswith("bob "))
    assert bob_line.split()[-1] == today


def test_creating_users_without_email_is_refused_with_the_reason():
    # A new user's password comes by e-mail; without SMTP it could never arrive (the real
    # `mmctl user reset-password` takes an e-mail address and needs SMTP).
    run = deploy(TARGET, "--data", 'mattermost_users_create=[{"username": "dave", "email": "dave@example.org"}]')
    failed = [line for line in run.output.splitlines() if line.startswith("FAILED:")]
    assert len(failed) == 1 and "creating dave needs e-mail" in failed[0] and "nothing was changed" in failed[0]
    assert "dave" not in chat.mmctl(TARGET, "user list --all")


def test_a_relay_that_does_not_answer_is_refused_before_any_change():
    before = sh(TARGET, f"sha256sum {CONFIG}")
    wrong = [*SMTP, "--data", "smtp_port=2525"]
    for run in (deploy(TARGET, *wrong, "--dry"), deploy(TARGET, *wrong)):
        failed = [line for line in run.output.splitlines() if line.startswith("FAILED:")]
        assert len(failed) == 1, run.output[-3000:]
        assert f"cannot use the SMTP relay: {testhost.SMTP}:2525" in failed[0] and "nothing was changed" in failed[0]
    assert sh(TARGET, f"sha256sum {CONFIG}") == before
    # (Mattermost saves an empty SMTPServer as "localhost": model/config.go SetDefaults.)
    assert '"SMTPServer": "localhost"' in sh(TARGET, f"grep SMTPServer {CONFIG}")


def test_a_refused_login_leaves_config_json_unchanged_and_no_password_is_shown():
    before = sh(TARGET, f"sha256sum {CONFIG}")
    run = deploy(TARGET, *SMTP, env={"MATTERMOST_SMTP_PASSWORD": "wrong-relay-password"})
    failed = [line for line in run.output.splitlines() if line.startswith("FAILED:")]
    assert len(failed) == 1 and "refused the login of 'mailer'" in run.output, run.output[-3000:]
    assert "config.json was not changed" in run.output
    assert sh(TARGET, f"sha256sum {CONFIG}") == before
    assert "wrong-relay-password" not in run.output
    assert sh(TARGET, "stat -c '%U %a' /etc/mattermost/private/smtp-password").strip() == "root 600"


def test_nothing_permanent_without_the_confirmation_setting():
    run = deploy(TARGET, *DECLARED)
    assert not run.ok
    failed = [line for line in run.output.splitlines() if line.startswith("FAILED:")]
    assert len(failed) == 1 and "not confirmed: set mattermost_confirm_permanent_deletion" in failed[0]
    assert "tmp-channel" in chat.mmctl(TARGET, "channel list acme") and "mallory" in chat.mmctl(TARGET, "user list --all")
    assert "Starting operation" not in run.output


def test_dry_run_names_each_channel_and_user():
    planned = planned_changes(TARGET, *CONFIRMED)
    for name in ("Archive channel acme:old-project", "Delete channel acme:tmp-channel permanently (with its posts)",
                 "Create user carol (carol@example.org; password set by the user via e-mail)",
                 "Deactivate user alice (offboarding: sessions revoked)",
                 "Erase user mallory permanently (with all their posts)", "Back up before permanent deletion"):
        assert name in planned
    assert "tmp-channel" in chat.mmctl(TARGET, "channel list acme")  # the dry run changed nothing


def test_declared_state_applied_then_nothing_changes():
    run = deploy(TARGET, *CONFIRMED)
    assert run.ok, run.output[-4000:]
    channels = chat.mmctl(TARGET, "channel list acme")
    assert "old-project (archived)" in channels and "tmp-channel" not in channels
    assert db("SELECT count(*) FROM posts WHERE message = 'temporary'") == "0"
    users = chat.mmctl_json(TARGET, "user list --all")
    by_name = {u["username"]: u for u in users}
    assert by_name["alice"]["delete_at"] > 0 and "mallory" not in by_name and "carol" in by_name
    assert db("SELECT count(*) FROM sessions s JOIN users u ON u.id = s.userid WHERE u.username = 'alice'") == "0"
    # erasure works on the real server with API deletion left off; mallory's posts are gone
    config = json.loads(sh(TARGET, "cat /var/lib/mattermost/config/config.json"))
    assert config["ServiceSettings"]["EnableAPIUserDeletion"] is False
    # The relay's password reached config.json on the server only (Mattermost needs it there).
    email = config["EmailSettings"]
    assert (email["ConnectionSecurity"], email["EnableSMTPAuth"], email["SMTPPort"]) == ("STARTTLS", True, "587")
    assert email["SMTPPassword"] == testhost.SMTP_AUTH_PASSWORD and testhost.SMTP_AUTH_PASSWORD not in run.output
    assert db("SELECT count(*) FROM posts WHERE message = 'mallory wrote this'") == "0"
    assert "pre-deletion" in sh(TARGET, "ls /var/backups/mattermost")
    assert planned_changes(TARGET, *CONFIRMED) == []


def test_a_new_user_sets_a_password_through_the_email_and_logs_in():
    bodies = [m.get_body(preferencelist=("html", "plain")).get_content() for m in testhost.received_mail("carol@example.org")]
    [token] = [m.group(1) for b in bodies if (m := re.search(r"reset_password_complete\?token=([A-Za-z0-9]+)", b))]
    anonymous = chat.Driver({"url": "127.0.0.1", "port": PORT, "scheme": "https", "verify": False})
    anonymous.users.reset_password({"token": token, "new_password": "Carols-Own-Password-1"})
    me = chat.login(PORT, "carol", "Carols-Own-Password-1").users.get_user("me")
    assert me["username"] == "carol"


def test_offboarding_deactivates_and_a_second_run_changes_nothing():
    run = deploy(TARGET, "verbs/offboard.py", "--data", "offboard_user=bob")
    assert run.ok and "Deactivate user bob (offboarding: sessions revoked)" in run.output
    bob = [u for u in chat.mmctl_json(TARGET, "user list --all") if u["username"] == "bob"]
    assert [u["delete_at"] > 0 for u in bob] == [True]
    again = deploy(TARGET, "verbs/offboard.py", "--data", "offboard_user=bob")
    assert again.ok and "bob is already deactivated: nothing to do" in again.output


def test_erase_verb_needs_the_typed_confirmation():
    refused = deploy(TARGET, "verbs/erase.py", "--data", "erase_user=carol")
    assert not refused.ok and "confirm by typing the username (CONFIRM=carol)" in refused.output
    assert "carol" in chat.mmctl(TARGET, "user list --all")
    run = deploy(TARGET, "verbs/erase.py", "--data", "erase_user=carol", "--data", "erase_confirmed=carol")
    assert run.ok, run.output[-3000:]
    assert "carol" not in chat.mmctl(TARGET, "user list --all")


def test_emoji_uploaded_once_by_the_deploys_bot_and_bad_images_refused(tmp_path):
    # mmctl cannot create a bot in local mode: the deploy's bot is made over the local API.
    folder = tmp_path / "emoji"
    folder.mkdir()
    (folder / "shipit.png").write_bytes(png(300, 200))  # larger than 128: the server scales it
    (folder / "team-wave.gif").write_bytes(GIF_1X1)
    emoji = ["--data", f"mattermost_emoji_dir={folder}"]
    run = deploy(TARGET, *CONFIRMED, *emoji)
    assert run.ok, run.output[-4000:]
    assert "emoji :shipit: uploaded" in run.output and "emoji :team-wave: uploaded" in run.output
    assert db("SELECT string_agg(name, ',' ORDER BY name) FROM emoji WHERE deleteat = 0") == "shipit,team-wave"
    assert db("SELECT u.username || ' ' || (b.userid IS NOT NULL) FROM emoji e JOIN users u ON u.id = e.creatorid "
              "LEFT JOIN bots b ON b.userid = u.id LIMIT 1") == "mattermost-deploy true"
    assert sh(TARGET, "stat -c '%U %a' /etc/mattermost/private/bot-token").strip() == "root 600"
    config = json.loads(sh(TARGET, "cat /var/lib/mattermost/config/config.json"))["ServiceSettings"]
    assert config["EnableCustomEmoji"] is True and config["EnableBotAccountCreation"] is False
    # a user sees them and their images
    boss = chat.login(PORT, "boss")
    assert boss.emoji.get_custom_emoji_image(boss.emoji.get_custom_emoji_by_name("shipit")["id"]).ok
    assert planned_changes(TARGET, *CONFIRMED, *emoji) == []
    for name, data, message in [("broken.png", b"BM" + b"\0" * 40, "broken.png: not a PNG, JPEG or GIF image"),
                                ("smile.png", png(8, 8), "smile.png: :smile: is a system emoji of Mattermost"),
                                ("poster.png", png(1100, 10), "poster.png: 1100x10 pixels")]:
        (folder / name).write_bytes(data)
        bad = deploy(TARGET, *CONFIRMED, *emoji)
        failed = [line for line in bad.output.splitlines() if line.startswith("FAILED:")]
        assert len(failed) == 1 and message in failed[0], bad.output[-2000:]
        (folder / name).unlink()
    assert db("SELECT count(*) FROM emoji") == "2"


def test_export_waits_for_the_job_and_delivers_a_complete_archive(tmp_path):
    proc = verb("verbs.export", "--data", f"exports_dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    [archive] = list(tmp_path.glob(f"local-{TARGET}/*_export.zip"))
    job_id = archive.name.removesuffix("_export.zip")
    assert chat.mmctl_json(TARGET, f"export job show {job_id}")[0]["status"] == "success"
    with zipfile.ZipFile(archive) as z:
        assert z.testzip() is None
        jsonl = next(n for n in z.namelist() if n.endswith(".jsonl"))
        lines = [json.loads(line) for line in z.read(jsonl).decode().splitlines()]
    assert lines[0]["type"] == "version"
    assert any(line["type"] == "post" and line["post"]["message"] == "still here" for line in lines)


def test_retention_counts_first_then_removes_exactly_the_old_rows():
    cutoff = int((time.time() - 30 * 86400) * 1000)
    old_ids = set(db(f"SELECT string_agg(id, ' ') FROM posts WHERE createat < {cutoff}").split())
    kept_ids = set(db(f"SELECT string_agg(id, ' ') FROM posts WHERE createat >= {cutoff}").split())
    assert old_ids == set(IDS["old"]) and kept_ids
    old_file = db(f"SELECT path FROM fileinfo WHERE postid = '{IDS['old'][1]}'")
    kept_file = db("SELECT path FROM fileinfo WHERE postid IN (SELECT id FROM posts WHERE message = 'still here')")
    assert old_file and kept_file
    days = ["--data", "mattermost_retention_days=30"]
    counted = deploy(TARGET, "verbs/retention.py", *days)
    assert counted.ok and f'"posts": {len(old_ids)}, "files": 1, "applied": false' in counted.output, counted.output[-2000:]
    assert set(db("SELECT string_agg(id, ' ') FROM posts").split()) == old_ids | kept_ids
    applied = deploy(TARGET, "verbs/retention.py", *days, "--data", "retention_apply=true")
    assert applied.ok, applied.output[-3000:]
    assert set(db("SELECT string_agg(id, ' ') FROM posts").split()) == kept_ids
    assert db(f"SELECT count(*) FROM fileinfo WHERE postid = '{IDS['old'][1]}'") == "0"
    sh(TARGET, f"test ! -e /var/lib/mattermost/data/{old_file} && test -e /var/lib/mattermost/data/{kept_file}")
    assert "pre-retention" in sh(TARGET, "ls /var/backups/mattermost")


def test_strict_privacy_closes_every_flow_and_the_real_server_serves_it():
    run = deploy(TARGET, *SMTP, "--data", "mattermost_privacy_strict=true")
    assert run.ok, run.output[-4000:]
    config = json.loads(sh(TARGET, f"cat {CONFIG}"))
    for flow, (_, _, closed) in privacy.FLOWS.items():
        for key, value in closed.items():
            assert get_dotted(config, key) == (value, True), f"{flow}: {key}"
    # The running server took them: its client config (config/client.go) says so.
    client = chat.login(PORT, "boss").client.get("/config/client", params={"format": "old"})
    assert (client["DiagnosticsEnabled"], client["EnableLinkPreviews"], client["EnableGifPicker"],
            client["SendPushNotifications"]) == ("false", "false", "false", "false")
    assert planned_changes(TARGET, *SMTP, "--data", "mattermost_privacy_strict=true") == []
