"""When the disk is not enough, as one story in order: a server converged with local files
(Mattermost 10.3) and a bucket known on a real SeaweedFS cluster (a master, two volume
servers, the S3 gateway over TLS from a private CA the deploy adds to the server's trust
store), used; a read-only key refused before config.json changes; `make move-files` into the
bucket, every file served byte for byte through nginx to the PyPI client; one volume server
stopped (what the operator sees); a backup, and an object lost from the bucket restored from
it; an upgrade to a broken release rolled back with the files in the bucket (the migration
plan lives there), then the upgrade to 11.4; the server destroyed and rebuilt from the
off-server repository alone; the move back, killed after the stop and run again.
Real Mattermost 10.3/11.4, real SeaweedFS 4.48, Debian's rclone and restic, Debian 13."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zipfile
import zlib

import pytest

from tests import seaweedfs, testhost
from tests.e2e import chat
from tests.e2e.conftest import KEEP, ROOT, deploy, planned_changes, run_env, sh
from tests.standin import build

TARGET = "e2e-bucket"
PORT = 24454
A, B, BROKEN = build.OLDER_ESR, build.ESR_VERSION, build.BROKEN
RESTIC = "restic-bucket-test-password-77"  # the test repository's password, test only
STATE: dict = {"pin": A}


def _png(size: int = 8) -> bytes:
    """A real PNG (Mattermost decodes profile images and makes thumbnails of images)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + b"".join(bytes([x * 30, y * 30, 128]) for x in range(size)) for y in range(size))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


PNG = _png()


def keys(**override) -> dict:
    return {"MATTERMOST_S3_ACCESS_KEY_ID": seaweedfs.KEYS["mattermost"][0],
            "MATTERMOST_S3_SECRET_ACCESS_KEY": seaweedfs.KEYS["mattermost"][1],
            "MATTERMOST_S3_BACKUP_ACCESS_KEY_ID": seaweedfs.KEYS["backup"][0],
            "MATTERMOST_S3_BACKUP_SECRET_ACCESS_KEY": seaweedfs.KEYS["backup"][1], "RESTIC_PASSWORD": RESTIC,
            **override}


def data(*extra: str) -> list[str]:
    return ["--data", f"mattermost_version={STATE['pin']}", *extra]


def run(*args: str, env: dict | None = None, timeout: int = 1800):
    verb = [args[0]] if args and args[0].endswith(".py") else []
    return deploy(TARGET, *verb, *data(), *args[len(verb):], env=env or keys(), timeout=timeout)


def changes(*args: str) -> list[str]:
    return planned_changes(TARGET, *data(), *args, env=keys())


def config() -> dict:
    return json.loads(sh(TARGET, "cat /var/lib/mattermost/config/config.json"))


def verb_output(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *data(), *args], cwd=ROOT,
                          env=run_env(TARGET, keys()), capture_output=True, text=True, timeout=900)


def start(store: dict, sftp: dict) -> None:
    testhost.start_server(TARGET, ssh_port=22334, https_port=PORT, extra_data={
        "files_s3_bucket": store["bucket"], "files_s3_endpoint": store["endpoint"],
        "files_s3_ca_file": store["ca_file"],
        "backup_offsite_repository": f"sftp:{sftp['user']}@{testhost.SFTP}:{sftp['root']}/{TARGET}",
        "backup_offsite_ssh_key": str(sftp["key"]), "backup_offsite_known_hosts": sftp["known_hosts"],
        "backup_offsite_keep": {"last": 5}})


@pytest.fixture(scope="module")
def server():
    store = seaweedfs.ensure_cluster()
    sftp = testhost.ensure_sftp(testhost.client())
    testhost.exec_on_container(testhost.SFTP, f"rm -rf {sftp['root']}/{TARGET}")
    STATE.update(store=store, sftp=sftp)
    testhost.stop_server(TARGET)
    start(store, sftp)
    yield TARGET
    if not KEEP:
        testhost.stop_server(TARGET)


def served(client, file_id: str) -> bytes:
    return client.files.get_file(file_id).content


def everything_served() -> None:
    """Every file made so far, its thumbnail and the profile picture, byte for byte."""
    olga = chat.login(PORT, "olga")
    for file_id, body in STATE["files"].items():
        assert served(olga, file_id) == body, file_id
    assert olga.files.get_file_thumbnail(STATE["image"]).status_code == 200
    assert olga.users.get_user_profile_image(STATE["user"]).content == STATE["profile"]


def file_path(file_id: str) -> str:
    return sh(TARGET, f"runuser -u postgres -- psql -XAt -d mattermost -c \"SELECT path FROM fileinfo WHERE id = "
                      f"'{file_id}'\"").strip()


def test_converge_with_local_files_and_the_bucket_known(server):
    converged = run()
    assert converged.ok, converged.output[-5000:]
    files = config()["FileSettings"]
    assert files["DriverName"] == "local" and files["AmazonS3Bucket"] == seaweedfs.BUCKET
    assert files["AmazonS3SSL"] is True and files["AmazonS3RequestTimeoutMilliseconds"] == 300000
    for secret in (*seaweedfs.KEYS["mattermost"], seaweedfs.KEYS["backup"][1], RESTIC):
        assert secret not in converged.output
    assert sh(TARGET, "stat -c '%U %a' /etc/mattermost/private/s3-secret-access-key").strip() == "root 600"
    assert changes() == []
    # people use it: a file, an image (with its thumbnail), a profile picture
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
    STATE.update(files={ids[0]: b"stored locally first\n", ids[1]: PNG}, image=ids[1], user=me["id"],
                 channel=channel["id"], profile=olga.users.get_user_profile_image(me["id"]).content)


def test_a_key_that_cannot_write_is_refused_before_any_change(server):
    before = sh(TARGET, "sha256sum /var/lib/mattermost/config/config.json")
    readonly = run(env=keys(MATTERMOST_S3_ACCESS_KEY_ID=seaweedfs.KEYS["backup"][0],
                            MATTERMOST_S3_SECRET_ACCESS_KEY=seaweedfs.KEYS["backup"][1]))
    failed = [line for line in readonly.output.splitlines() if line.startswith("FAILED:")]
    assert not readonly.ok and len(failed) == 1 and "the object store refuses Mattermost's key" in failed[0], failed
    assert "AccessDenied" in failed[0]
    assert sh(TARGET, "sha256sum /var/lib/mattermost/config/config.json") == before
    assert seaweedfs.KEYS["backup"][1] not in readonly.output
    assert run().ok  # the right key again


def test_move_files_into_the_bucket(server):
    shown = verb_output("verbs.job_plan", "move-files")
    assert "ready:" in shown.stdout and config()["FileSettings"]["DriverName"] == "local", shown.stdout + shown.stderr
    moved = run("verbs/job.py", "--data", "job=move-files")
    assert moved.ok, moved.output[-5000:]
    assert "every file arrived" in moved.output and "users waited" in moved.output
    assert config()["FileSettings"]["DriverName"] == "amazons3"
    everything_served()


def test_an_upgrade_rolled_back_and_an_upgrade_done_with_the_files_in_the_bucket(server):
    STATE["pin"] = BROKEN
    broken = run()
    assert not broken.ok and "rolled back" in broken.output, broken.output[-3000:]
    assert "Mattermost reversed its migrations (db downgrade)" in broken.output  # the plan was read from the bucket
    everything_served()
    assert run("verbs/unhold.py").ok
    STATE["pin"] = B
    upgraded = run()
    assert upgraded.ok, upgraded.output[-4000:]
    everything_served()
    # a new upload goes to the bucket only (10.3's minio-go 7.0.74 could not upload to SeaweedFS 4.48:
    # "The Content-Md5 you specified did not match"; 11.4's 7.0.95 can - README)
    olga = chat.login(PORT, "olga")
    new = olga.files.upload_file(STATE["channel"], files={"files": ("after.txt", b"stored in the bucket\n")})
    new_id = new["file_infos"][0]["id"]
    assert sh(TARGET, f"test -e '/var/lib/mattermost/data/{file_path(new_id)}' && echo local || echo absent").strip() \
        == "absent"
    STATE["files"][new_id] = b"stored in the bucket\n"
    everything_served()
    # the settings say so now (the deploy's reference file of owned keys changes once), then nothing
    assert run("--data", "files_store=s3").ok
    assert changes("--data", "files_store=s3") == []


def test_one_volume_server_stopped(server):
    """What the operator sees: files are still read (each object is on both volume servers),
    new uploads fail, and `make status` names the refused probe."""
    seaweedfs.stop_volume(1)
    try:
        everything_served()
        status = verb_output("verbs.status", "--json", "--data", "files_store=s3")
        [row] = json.loads(status.stdout)
        assert status.returncode == 1 and any("the bucket refuses Mattermost's key" in p for p in row["problems"]), row
        assert row["files"].startswith(f"bucket {seaweedfs.BUCKET}")
    finally:
        seaweedfs.start_volume(1)
    seaweedfs._wait_and_make_bucket()
    status = verb_output("verbs.status", "--json", "--data", "files_store=s3")
    assert not any("bucket" in p for p in json.loads(status.stdout)[0]["problems"])


LOSE = """
exec(open("/usr/local/lib/mattermost-deploy/mmhelper.py").read(), {"__name__": "bundle"})
import json, sys
from mmhelper.parts import s3
spec = json.load(open("/etc/mattermost/managed-config.json"))
b = s3.bucket_from({"endpoint": spec["FileSettings.AmazonS3Endpoint"], "bucket": spec["FileSettings.AmazonS3Bucket"],
                    "access": "/etc/mattermost/private/s3-access-key-id",
                    "secret": "/etc/mattermost/private/s3-secret-access-key"})
print(b.delete(sys.argv[1])[0])
"""


LISTING = """
from mmhelper.parts import rclone
print(json.dumps(sorted(rclone.listing({
    "endpoint": spec["FileSettings.AmazonS3Endpoint"], "bucket": spec["FileSettings.AmazonS3Bucket"],
    "ssl": spec.get("FileSettings.AmazonS3SSL", True), "prefix": spec.get("FileSettings.AmazonS3PathPrefix", ""),
    "access": "/etc/mattermost/private/s3-access-key-id",
    "secret": "/etc/mattermost/private/s3-secret-access-key"}))))"""


def test_backup_and_an_object_lost_from_the_bucket_restored(server):
    backup = run("verbs/backup.py", "--data", "files_store=s3")
    assert backup.ok, backup.output[-3000:]
    name = sh(TARGET, "ls -t /var/backups/mattermost | grep -v '^\\.' | head -1").strip()
    manifest = json.loads(sh(TARGET, f"cat /var/backups/mattermost/{name}/manifest.json"))
    assert manifest["files_from"] == f"bucket {seaweedfs.BUCKET}", manifest
    report = next(iter(STATE["files"]))
    path = file_path(report)
    assert sh(TARGET, f"cat '/var/backups/mattermost/{name}/data/{path}'") == "stored locally first\n"
    sh(TARGET, f"python3 - '{path}' <<'EOF'\n{LOSE}\nEOF")  # a mistaken delete, a wrong lifecycle rule
    with pytest.raises(Exception):  # noqa: B017 - the driver raises its own error for the failed download
        served(chat.login(PORT, "olga"), report)
    restored = run("verbs/restore.py", "--data", "restore_backup=latest", "--data", "files_store=s3")
    assert restored.ok, restored.output[-3000:]
    assert "copied back into the bucket" in restored.output
    everything_served()


def test_a_destroyed_server_is_rebuilt_with_its_files_in_the_bucket(server):
    testhost.stop_server(TARGET)  # the VPS is gone; the bucket and the off-server repository stay
    start(STATE["store"], STATE["sftp"])
    assert run("--data", "files_store=s3").ok
    rebuilt = run("verbs/rebuild.py", "--data", "files_store=s3")
    assert rebuilt.ok, rebuilt.output[-5000:]
    assert "restore check: everything the backup holds is back" in rebuilt.output
    everything_served()


def bucket_keys() -> set[str]:
    """What is in the bucket, listed on the server with Mattermost's key."""
    listing = sh(TARGET, "python3 - <<'EOF'\n" + LOSE.split("b = ")[0] + LISTING + "\nEOF")
    return set(json.loads(listing.strip().splitlines()[-1]))


def test_export_retention_and_erasure_with_the_files_in_the_bucket(server, tmp_path):
    # export: the job writes its zip into the bucket; the verb brings it to the workstation
    exported = verb_output("verbs.export", "--data", f"exports_dir={tmp_path}", "--data", "files_store=s3")
    assert exported.returncode == 0, exported.stderr[-2000:]
    [archive] = list(tmp_path.glob(f"local-{TARGET}/*_export.zip"))
    with zipfile.ZipFile(archive) as z:
        assert z.testzip() is None and any(name.endswith(".jsonl") for name in z.namelist())
    # retention: an old post's file leaves the bucket, a recent one stays
    olga = chat.login(PORT, "olga")
    old = olga.files.upload_file(STATE["channel"], files={"files": ("old.txt", b"three years old\n")})
    chat.mmctl(TARGET, "user create --username boss --email boss@example.org --password " + chat.PASSWORD
               + " --system-admin")
    chat.mmctl(TARGET, "team users add acme boss")
    old_id = old["file_infos"][0]["id"]
    chat.login(PORT, "boss").posts.create_post({"channel_id": STATE["channel"], "message": "old minutes",
                                                 "file_ids": [], "create_at": 1_600_000_000_000})
    sh(TARGET, "runuser -u postgres -- psql -XAtq -d mattermost -c \"UPDATE fileinfo SET postid = (SELECT id FROM posts "
               f"WHERE message = 'old minutes'), createat = 1600000000000 WHERE id = '{old_id}'\"")
    old_path, kept = file_path(old_id), file_path(next(iter(STATE["files"])))
    assert {old_path, kept} <= bucket_keys()
    applied = run("verbs/retention.py", "--data", "mattermost_retention_days=30", "--data", "retention_apply=true",
                  "--data", "files_store=s3")
    assert applied.ok, applied.output[-3000:]
    keys_now = bucket_keys()
    assert old_path not in keys_now and kept in keys_now
    # erasure: the erased user's files and picture leave the bucket
    chat.create_user(TARGET, "eve", team="acme")
    eve = chat.login(PORT, "eve")
    upload = eve.files.upload_file(STATE["channel"], files={"files": ("eve.txt", b"eve was here\n")})
    eve.posts.create_post({"channel_id": STATE["channel"], "message": "bye",
                           "file_ids": [upload["file_infos"][0]["id"]]})
    eve_path = file_path(upload["file_infos"][0]["id"])
    assert eve_path in bucket_keys()
    erased = run("verbs/erase.py", "--data", "erase_user=eve", "--data", "erase_confirmed=eve",
                 "--data", "files_store=s3")
    assert erased.ok, erased.output[-3000:]
    assert eve_path not in bucket_keys()
    everything_served()


def test_move_back_killed_after_the_stop_goes_on(server):
    state_file = "/var/lib/mattermost-deploy/files-move.json"
    sh(TARGET, f"(while ! (grep -q '\"to\": \"local\"' {state_file} && grep -q '\"stop\"' {state_file}) 2>/dev/null; "
               "do sleep 0.05; done; pkill -9 -f '[m]mhelper.py files-move'; pkill -9 -x rclone) >/dev/null 2>&1 &")
    killed = run("verbs/job.py", "--data", "job=move-files", "--data", "move_back=true", "--data", "files_store=s3")
    assert not killed.ok
    state = json.loads(sh(TARGET, "cat /var/lib/mattermost-deploy/files-move.json"))
    assert state["status"] == "running" and "stop" in state["done"] and "switch" not in state["done"], state
    assert "an earlier move stopped after" in verb_output("verbs.job_plan", "move-files", "--back").stdout
    back = run("verbs/job.py", "--data", "job=move-files", "--data", "move_back=true", "--data", "files_store=s3")
    assert back.ok, back.output[-5000:]
    assert "continuing the unfinished move" in back.output and "every file arrived" in back.output
    assert config()["FileSettings"]["DriverName"] == "local"
    everything_served()
    assert run().ok
    assert changes() == []
