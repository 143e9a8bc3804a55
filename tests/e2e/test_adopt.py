"""Adopting the production server's situation: REAL Mattermost installed by hand per the
official tarball guide (a real /opt/mattermost with config, data and plugins inside,
the official unit), used for a while. The deploy carries it over with no setting, file or
plugin lost, and the user still finds their post and file through nginx."""

import json

import pytest

from tests import handinstall, testhost
from tests.e2e import chat
from tests.e2e.conftest import KEEP, deploy, https_get, planned_changes, sh
from tests.standin.build import default_version

VERSION = default_version()
TARGET = "e2e-adopt"
PORT = 24432
HAND_PASSWORD = "hand-install-password"
SEEDED: dict = {}


def psql(sql: str) -> str:
    return sh(TARGET, f"runuser -u postgres -- psql -XAt -d mattermost -c \"{sql}\"").strip()


@pytest.fixture(scope="module")
def adopted():
    testhost.stop_server(TARGET)
    testhost.start_server(TARGET, ssh_port=22302, https_port=PORT)
    handinstall.install(TARGET, VERSION, f"https://127.0.0.1:{PORT}", HAND_PASSWORD)
    SEEDED.update(handinstall.leave_user_data(TARGET, chat.PASSWORD))
    SEEDED["path"] = psql(f"SELECT path FROM fileinfo WHERE id = '{SEEDED['file_id']}'")
    run = deploy(TARGET)
    yield run
    if not KEEP:
        testhost.stop_server(TARGET)


def test_adoption_converges_and_serves(adopted):
    assert adopted.ok, adopted.output[-5000:]
    assert f"Adopt the hand-installed Mattermost {VERSION} in /opt/mattermost" in adopted.output
    status, headers, body = https_get(PORT)
    assert status == 200 and json.loads(body)["database_status"] == "OK"
    assert headers["X-Version-Id"].startswith(f"{VERSION}.")


def test_system_console_setting_kept(adopted):
    config = json.loads(sh(TARGET, "cat /var/lib/mattermost/config/config.json"))
    assert config["TeamSettings"]["SiteName"] == "Hand Installed Chat"
    assert config["FileSettings"]["Directory"] == "/var/lib/mattermost/data/"


def test_uploaded_file_plugin_and_posts_kept(adopted):
    assert sh(TARGET, f"cat /var/lib/mattermost/data/{SEEDED['path']}").strip() == "quarterly report, uploaded before adoption"
    assert "1.2.3" in sh(TARGET, "cat /var/lib/mattermost/plugins/com.example.demo/plugin.json")
    plugins = chat.mmctl_json(TARGET, "plugin list")
    active = [p for group in (plugins if isinstance(plugins, list) else [plugins]) for p in group.get("active", [])]
    assert "com.example.demo" in [p["id"] for p in active], plugins
    # the user, through nginx with the PyPI client: the post and the file are there
    alice = chat.login(PORT, "alice")
    post = alice.posts.get_post(SEEDED["post_id"])
    assert post["message"] == "written before adoption" and SEEDED["file_id"] in post["file_ids"]
    assert alice.files.get_file(SEEDED["file_id"]).content == b"quarterly report, uploaded before adoption\n"


def test_adopted_data_is_a_copy_not_a_link(adopted):
    # the kept old folder must not change when Mattermost rewrites a live file in place
    kept = sh(TARGET, "ls -d /opt/mattermost.adopted-*").split()[0]
    inodes = sh(TARGET, f"stat -c %i /var/lib/mattermost/data/{SEEDED['path']} {kept}/data/{SEEDED['path']}").split()
    assert inodes[0] != inodes[1]


def test_database_password_kept_and_private(adopted):
    assert sh(TARGET, "cat /etc/mattermost/private/db-password").strip() == HAND_PASSWORD
    assert sh(TARGET, "stat -c '%U %a' /etc/mattermost/private/db-password").strip() == "root 600"
    assert HAND_PASSWORD not in adopted.output


def test_old_folder_kept_renamed_and_whole(adopted):
    kept = sh(TARGET, "ls -d /opt/mattermost.adopted-*").split()
    assert len(kept) == 1
    assert "quarterly report" in sh(TARGET, f"cat {kept[0]}/data/{SEEDED['path']}")
    assert "Hand Installed Chat" in sh(TARGET, f"cat {kept[0]}/config/config.json")
    assert "ExecStart=/opt/mattermost/bin/mattermost" in sh(TARGET, f"cat {kept[0]}/mattermost.service.orig")
    assert sh(TARGET, "readlink /opt/mattermost").strip() == f"/opt/mattermost-releases/{VERSION}"


def test_second_run_after_adoption_changes_nothing(adopted):
    assert planned_changes(TARGET) == []
