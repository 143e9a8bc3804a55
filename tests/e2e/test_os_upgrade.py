"""Debian 12 still works, and becomes Debian 13 safely - against real Mattermost on a real
Debian 12 container, as one story in order: converge on Debian 12 (PostgreSQL 15, nginx
1.22), a second run changes nothing, the Mattermost upgrade with its real migrations, a
patch night; then the release upgrade: the plan (nothing changed, a held package
refused), the run killed half-way and completed by running it again, Debian 13 with
PostgreSQL 17 serving the same data (the old cluster kept), the deploy converging on the
new release; and the way back: the pre-upgrade backup restored onto a fresh Debian 12.

The tests of this module run in file order and build on each other."""

import json
import os
import subprocess
import sys
import tarfile

import pytest

from tests import testhost
from tests.e2e import chat
from tests.e2e.conftest import KEEP, ROOT, deploy, https_get, killed_while, planned_changes, sh
from tests.images import png
from tests.standin import apt_repo, build
from tests.testhost import UPSTREAM_ROOT

TARGET, BACK = "e2e-bookworm", "e2e-wayback"
PORT, BACK_PORT = 24437, 24438
A, B = build.OLDER_ESR, build.ESR_VERSION
APT = "apt-os"  # this story's own stand-in apt repository
EMOJI = "release-party"
STORY: dict = {}


def running_version(port: int = PORT) -> str:
    status, headers, body = https_get(port)
    assert status == 200 and json.loads(body)["status"] == "OK", body
    return ".".join(headers["X-Version-Id"].split(".")[:3])


def verb(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=900, env={**os.environ, "MMDEPLOY_TARGET": TARGET})


def clusters(target: str = TARGET) -> list[str]:
    return [" ".join(line.split()[:4]) for line in sh(target, "pg_lsclusters -h").strip().splitlines()]


@pytest.fixture(scope="module", autouse=True)
def servers(tmp_path_factory):
    for name in (TARGET, BACK):
        testhost.stop_server(name)
    testhost.start_server(TARGET, ssh_port=22307, https_port=PORT, distro="bookworm")
    folder = tmp_path_factory.getbasetemp() / "bookworm-emoji"
    folder.mkdir(exist_ok=True)
    (folder / f"{EMOJI}.png").write_bytes(png(32, 32))
    STORY["emoji"] = ["--data", f"mattermost_emoji_dir={folder}"]
    yield
    if not KEEP:
        for name in (TARGET, BACK):
            testhost.stop_server(name)


def test_converge_on_debian_12():
    run = deploy(TARGET, "--data", f"mattermost_version={A}", *STORY["emoji"])
    assert run.ok, run.output[-4000:]
    assert sh(TARGET, "cat /etc/debian_version").startswith("12.")
    assert clusters() == ["15 main 5432 online"]
    assert "listen 443 ssl http2" in sh(TARGET, "cat /etc/nginx/sites-available/mattermost.conf")  # nginx 1.22
    assert running_version() == A
    chat.mmctl(TARGET, "team create --name acme --display-name Acme")
    chat.create_user(TARGET, "alice", team="acme")
    STORY["story"] = chat.leave_a_post_with_file_and_reaction(
        PORT, "alice", "acme", "written on Debian 12", b"bookworm notes\n", EMOJI)


def test_second_run_on_debian_12_changes_nothing():
    assert planned_changes(TARGET, "--data", f"mattermost_version={A}", *STORY["emoji"]) == []


def test_mattermost_upgrade_on_debian_12():
    run = deploy(TARGET, *STORY["emoji"])
    assert run.ok and f"upgraded {A} -> {B}" in run.output, run.output[-4000:]
    assert running_version() == B
    chat.still_there(PORT, "alice", STORY["story"])


def test_patch_night_on_debian_12():
    apt_repo.publish(UPSTREAM_ROOT, {"1.0": None}, APT)
    sh(TARGET, f"echo '{apt_repo.source_line(APT)}' > /etc/apt/sources.list.d/standin.list && apt-get update -q >/dev/null "
               f"&& DEBIAN_FRONTEND=noninteractive apt-get install -y -q {apt_repo.PACKAGE}=1.0 >/dev/null")
    apt_repo.publish(UPSTREAM_ROOT, {"1.0": None, "1.1": None}, APT)
    run = deploy(TARGET, "verbs/patch_night.py")
    assert run.ok, run.output[-4000:]
    assert sh(TARGET, f"dpkg-query -W -f '${{Version}}' {apt_repo.PACKAGE}") == "1.1"
    assert running_version() == B


def test_release_upgrade_plan_changes_nothing_and_says_what_would_happen():
    before = sh(TARGET, "md5sum /etc/apt/sources.list /etc/apt/sources.list.d/* /etc/debian_version; "
                        "ls -l --time-style=+%s /var/lib/apt/lists")
    proc = verb("verbs.os_upgrade_plan")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    text = proc.stdout
    assert f"local-{TARGET}: Debian 12 (bookworm) -> 13 (trixie)" in text
    assert "PostgreSQL 15 -> 17: pg_upgradecluster" in text
    assert "/etc/apt/sources.list.d/standin.list" in text  # the third-party source, set aside
    assert "cannot be undone automatically" in text and "safe to start: yes" in text
    assert "packages: " in text and " upgraded, " in text
    assert sh(TARGET, "md5sum /etc/apt/sources.list /etc/apt/sources.list.d/* /etc/debian_version; "
                      "ls -l --time-style=+%s /var/lib/apt/lists") == before
    # a held package is a refusal, with the reason, and nothing changes
    sh(TARGET, f"apt-mark hold {apt_repo.PACKAGE} >/dev/null")
    try:
        refused = deploy(TARGET, "verbs/os_upgrade.py")
        failed = [line for line in refused.output.splitlines() if line.startswith("FAILED:")]
        assert len(failed) == 1 and "held packages would block the upgrade" in failed[0], refused.output[-2000:]
        assert "Starting operation" not in refused.output
    finally:
        sh(TARGET, f"apt-mark unhold {apt_repo.PACKAGE} >/dev/null")
    assert sh(TARGET, "cat /etc/debian_version").startswith("12.")


def test_release_upgrade_killed_half_way_completes_when_run_again():
    killed_while(TARGET, ["verbs/os_upgrade.py", "-y"], "apt-get -y -q", 600, "the package upgrade")
    assert "os-upgrade.lock" in sh(TARGET, "ls /var/lib/mattermost-deploy")
    run = deploy(TARGET, "verbs/os_upgrade.py", timeout=3000)
    assert run.ok, run.output[-5000:]
    assert "continuing the unfinished run" in run.output
    assert sh(TARGET, "cat /etc/debian_version").startswith("13.")
    # PostgreSQL 17 serves the database; 15's cluster is kept, stopped, for the operator to drop
    assert clusters() == ["15 main 5433 down", "17 main 5432 online"]
    assert running_version() == B
    chat.still_there(PORT, "alice", STORY["story"])
    reports = sorted((ROOT / "reports").glob(f"os-upgrade-local-{TARGET}-*.txt"))
    text = reports[-1].read_text()
    assert "release: bookworm -> trixie" in text and "PostgreSQL: 15 -> 17" in text and "(healthy)" in text
    assert "standin.list" in text  # the third-party source set aside, named in the report
    assert "os-upgrade.lock" not in sh(TARGET, "ls /var/lib/mattermost-deploy")  # the lock is released


def test_the_deploy_converges_on_debian_13_and_nothing_is_left_to_do():
    run = deploy(TARGET, *STORY["emoji"])
    assert run.ok, run.output[-4000:]
    assert "http2 on;" in sh(TARGET, "cat /etc/nginx/sites-available/mattermost.conf")  # nginx 1.26
    assert planned_changes(TARGET, *STORY["emoji"]) == []
    again = deploy(TARGET, "verbs/os_upgrade.py")
    assert again.ok and "already Debian 13 (trixie): nothing to do" in again.output
    chat.still_there(PORT, "alice", STORY["story"])


def test_the_way_back_restores_the_pre_upgrade_backup_onto_debian_12(tmp_path):
    name = sh(TARGET, "ls /var/backups/mattermost | grep pre-os-upgrade").split()[-1]
    testhost.start_server(BACK, ssh_port=22308, https_port=BACK_PORT, distro="bookworm")
    prepared = deploy(BACK, "--data", f"mattermost_version={B}")
    assert prepared.ok, prepared.output[-4000:]
    # the backup travels as make fetch-backup delivers it: a tar of its folder
    source = testhost.client().containers.get(testhost.container_name(TARGET))
    stream, _ = source.get_archive(f"/var/backups/mattermost/{name}")
    archive = tmp_path / "backup.tar"
    with open(archive, "wb") as f:
        for chunk in stream:
            f.write(chunk)
    with tarfile.open(archive) as tar:
        assert f"{name}/database.dump.gz" in tar.getnames()
    target = testhost.client().containers.get(testhost.container_name(BACK))
    target.put_archive("/var/backups/mattermost", archive.read_bytes())
    restore = subprocess.run([sys.executable, "-m", "tasks.run", "verbs/restore.py", "-y", "--data",
                              f"restore_backup={name}"], cwd=ROOT, capture_output=True, text=True, timeout=900,
                             env={**os.environ, "MMDEPLOY_TARGET": BACK, "PYINFRA_PROGRESS": "off"})
    assert restore.returncode == 0, (restore.stdout + restore.stderr)[-4000:]
    assert sh(BACK, "cat /etc/debian_version").startswith("12.")
    assert running_version(BACK_PORT) == B
    chat.still_there(BACK_PORT, "alice", STORY["story"])
