"""When the disk is not enough: a server converged with local files, used, then its files
moved into a bucket of a real SeaweedFS cluster (TLS from a private CA the deploy adds to the
server's trust store) with `make move-files`, served byte for byte through nginx to the PyPI
client, refused keys refused before any change, and moved back with `make move-files BACK=1`.
Real Mattermost 11.4, real SeaweedFS 4.48, Debian's rclone, Debian 13."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib

import pytest

from tests import seaweedfs, testhost
from tests.e2e import chat
from tests.e2e.conftest import KEEP, ROOT, deploy, planned_changes, run_env, sh

TARGET = "e2e-bucket"
PORT = 24454
def _png(size: int = 8) -> bytes:
    """A real PNG (Mattermost decodes profile images and makes thumbnails of images)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + b"".join(bytes([x * 30, y * 30, 128]) for x in range(size)) for y in range(size))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


PNG = _png()
STATE: dict = {}


def keys(which: str = "mattermost", secret: str | None = None) -> dict:
    access, real = seaweedfs.KEYS[which]
    backup = seaweedfs.KEYS["backup"]
    return {"MATTERMOST_S3_ACCESS_KEY_ID": access, "MATTERMOST_S3_SECRET_ACCESS_KEY": secret or real,
            "MATTERMOST_S3_BACKUP_ACCESS_KEY_ID": backup[0], "MATTERMOST_S3_BACKUP_SECRET_ACCESS_KEY": backup[1]}


def run(*args: str, env: dict | None = None, timeout: int = 1800):
    return deploy(TARGET, *args, env=env or keys(), timeout=timeout)


def config() -> dict:
    return json.loads(sh(TARGET, "cat /var/lib/mattermost/config/config.json"))


def plan(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "verbs.move_files_plan", *args], cwd=ROOT,
                          env=run_env(TARGET, keys()), capture_output=True, text=True, timeout=600)
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def server():
    store = seaweedfs.ensure_cluster()
    testhost.stop_server(TARGET)
    testhost.start_server(TARGET, ssh_port=22334, https_port=PORT, extra_data={
        "files_s3_bucket": store["bucket"], "files_s3_endpoint": store["endpoint"],
        "files_s3_ca_file": store["ca_file"]})
    yield TARGET
    if not KEEP:
        testhost.stop_server(TARGET)


def served(chat_client, file_id: str) -> bytes:
    return chat_client.files.get_file(file_id).content


def test_converge_with_local_files_and_the_bucket_known(server):
    converged = run()
    assert converged.ok, converged.output[-5000:]
    files = config()["FileSettings"]
    assert files["DriverName"] == "local" and files["AmazonS3Bucket"] == seaweedfs.BUCKET
    assert files["AmazonS3SSL"] is True and files["AmazonS3RequestTimeoutMilliseconds"] == 300000
    for secret in (*seaweedfs.KEYS["mattermost"], seaweedfs.KEYS["backup"][1]):
        assert secret not in converged.output
    assert sh(TARGET, "stat -c '%U %a' /etc/mattermost/private/s3-secret-access-key").strip() == "root 600"
    assert planned_changes(TARGET, env=keys()) == []
    # people use it: a file, an image (its thumbnail and preview), a profile picture
    chat.mmctl(TARGET, "team create --name acme --display-name Acme")
    chat.create_user(TARGET, "olga", team="acme")
    olga = chat.login(PORT, "olga")
    channel = olga.channels.get_channel_by_name_and_team_name("acme", "town-square")
    report = olga.files.upload_file(channel["id"], files={"files": ("report ä #1.txt", b"stored locally first\n")})
    image = olga.files.upload_file(channel["id"], files={"files": ("pixel.png", PNG)})
    ids = [report["file_infos"][0]["id"], image["file_infos"][0]["id"]]
    olga.posts.create_post({"channel_id": channel["id"], "message": "before the move", "file_ids": ids})
    me = olga.users.get_user("me")
    olga.users.set_user_profile_image(me["id"], files={"image": ("me.png", PNG)})
    STATE.update(ids=ids, user=me["id"], channel=channel["id"],
                 profile=olga.users.get_user_profile_image(me["id"]).content)


def test_a_key_that_cannot_write_is_refused_before_any_change(server):
    before = sh(TARGET, "sha256sum /var/lib/mattermost/config/config.json")
    readonly = run(env={**keys(), "MATTERMOST_S3_ACCESS_KEY_ID": seaweedfs.KEYS["backup"][0],
                        "MATTERMOST_S3_SECRET_ACCESS_KEY": seaweedfs.KEYS["backup"][1]})
    failed = [line for line in readonly.output.splitlines() if line.startswith("FAILED:")]
    assert not readonly.ok and len(failed) == 1 and "the object store refuses Mattermost's key" in failed[0], failed
    assert "AccessDenied" in failed[0]
    assert sh(TARGET, "sha256sum /var/lib/mattermost/config/config.json") == before
    assert seaweedfs.KEYS["backup"][1] not in readonly.output
    # the right key again: the run puts it back
    assert run().ok


def test_move_files_plan_changes_nothing(server):
    out = plan()
    assert "ready:" in out and "local:" in out, out
    assert config()["FileSettings"]["DriverName"] == "local"


def test_move_files_into_the_bucket(server):
    moved = run("verbs/move_files.py")
    assert moved.ok, moved.output[-5000:]
    assert "every file arrived" in moved.output and "users waited" in moved.output
    assert config()["FileSettings"]["DriverName"] == "amazons3"
    olga = chat.login(PORT, "olga")
    assert served(olga, STATE["ids"][0]) == b"stored locally first\n"
    assert served(olga, STATE["ids"][1]) == PNG
    assert olga.files.get_file_thumbnail(STATE["ids"][1]).status_code == 200
    assert olga.users.get_user_profile_image(STATE["user"]).content == STATE["profile"]
    # a new upload goes to the bucket only
    new = olga.files.upload_file(STATE["channel"], files={"files": ("after.txt", b"stored in the bucket\n")})
    path = json.loads(sh(TARGET, "runuser -u postgres -- psql -XAt -d mattermost -c \"SELECT row_to_json(f) FROM "
                                 f"fileinfo f WHERE id = '{new['file_infos'][0]['id']}'\""))["path"]
    assert sh(TARGET, f"test -e '/var/lib/mattermost/data/{path}' && echo local || echo absent").strip() == "absent"
    assert served(olga, new["file_infos"][0]["id"]) == b"stored in the bucket\n"
    STATE["after"] = new["file_infos"][0]["id"]
    # the settings say so now (only the deploy's reference file of owned keys changes), then nothing
    assert run("--data", "files_store=s3").ok
    assert planned_changes(TARGET, "--data", "files_store=s3", env=keys()) == []


def file_path(file_id: str) -> str:
    return sh(TARGET, f"runuser -u postgres -- psql -XAt -d mattermost -c \"SELECT path FROM fileinfo WHERE id = "
                      f"'{file_id}'\"").strip()


LOSE = """
exec(open("/usr/local/lib/mattermost-deploy/mmhelper.py").read(), {"__name__": "bundle"})
import json, sys
from mmhelper import s3
spec = json.load(open("/etc/mattermost/managed-config.json"))
b = s3.bucket_from({"endpoint": spec["FileSettings.AmazonS3Endpoint"], "bucket": spec["FileSettings.AmazonS3Bucket"],
                    "access": "/etc/mattermost/private/s3-access-key-id",
                    "secret": "/etc/mattermost/private/s3-secret-access-key"})
print(b.delete(sys.argv[1])[0])
"""


def test_backup_and_restore_with_the_files_in_the_bucket(server):
    backup = run("verbs/backup.py", "--data", "files_store=s3")
    assert backup.ok, backup.output[-3000:]
    name = sh(TARGET, "ls -t /var/backups/mattermost | grep -v '^\\.' | head -1").strip()
    manifest = json.loads(sh(TARGET, f"cat /var/backups/mattermost/{name}/manifest.json"))
    assert manifest["files_from"] == f"bucket {seaweedfs.BUCKET}", manifest
    report = file_path(STATE["ids"][0])
    assert sh(TARGET, f"cat '/var/backups/mattermost/{name}/data/{report}'") == "stored locally first\n"
    # an object lost from the bucket (a wrong lifecycle rule, a mistaken delete)
    sh(TARGET, f"python3 - '{report}' <<'EOF'\n{LOSE}\nEOF")
    olga = chat.login(PORT, "olga")
    with pytest.raises(Exception):  # noqa: B017 - the driver raises its own error for the 500/404
        served(olga, STATE["ids"][0])
    restored = run("verbs/restore.py", "--data", "restore_backup=latest", "--data", "files_store=s3")
    assert restored.ok, restored.output[-3000:]
    assert "copied back into the bucket" in restored.output
    assert served(chat.login(PORT, "olga"), STATE["ids"][0]) == b"stored locally first\n"


def test_move_back_killed_after_the_stop_goes_on(server):
    sh(TARGET, "(while ! grep -q '\"stop\"' /var/lib/mattermost-deploy/files-move.json 2>/dev/null; do sleep 0.05; "
               "done; pkill -9 -f '[m]mhelper.py files-move'; pkill -9 -x rclone) >/dev/null 2>&1 &")
    killed = run("verbs/move_files.py", "--data", "move_back=true")
    assert not killed.ok
    state = json.loads(sh(TARGET, "cat /var/lib/mattermost-deploy/files-move.json"))
    assert state["status"] == "running" and "stop" in state["done"] and "switch" not in state["done"], state
    assert "an earlier move stopped after" in plan("--back")


def test_move_back_to_the_local_folder(server):
    back = run("verbs/move_files.py", "--data", "move_back=true")
    assert back.ok, back.output[-5000:]
    assert "continuing the unfinished move" in back.output
    assert config()["FileSettings"]["DriverName"] == "local"
    olga = chat.login(PORT, "olga")
    for file_id, body in ((STATE["ids"][0], b"stored locally first\n"), (STATE["after"], b"stored in the bucket\n")):
        assert served(olga, file_id) == body
    assert olga.users.get_user_profile_image(STATE["user"]).content == STATE["profile"]
    assert run().ok
    assert planned_changes(TARGET, env=keys()) == []
