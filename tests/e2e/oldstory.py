"""Shared steps of the old-server stories (test_old_mysql.py, test_old_postgres.py): a
Mattermost 5.39 installed by hand on Debian 12 years ago, filled through its old command
line and API, then read back through nginx with the PyPI client once it is 11.4."""

from __future__ import annotations

import json

from tests import oldserver, testhost
from tests.e2e import chat
from tests.e2e.conftest import sh

OLD = "5.39.0"
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360f8cfc0f01f0005fe02fea7d4a0a10000000049454e44ae426082")


def start_old_server(target: str, ssh_port: int, port: int, engine: str, db_password: str) -> dict:
    """A fresh Debian 12 test server with Mattermost 5.39 installed on it by the old guide
    (MariaDB or PostgreSQL) and used: what its users made."""
    testhost.stop_server(target)
    testhost.start_server(target, ssh_port=ssh_port, https_port=port, distro="bookworm",
                          extra_data={"mattermost_allow_below_7_1": True})  # 7.1 cannot be built here (README)
    oldserver.install(target, OLD, engine, db_password, f"https://127.0.0.1:{port}")
    return oldserver.seed(target)


def old_login(port: int, name: str) -> chat.Driver:
    """A user of the old server logs in with the password they set back then."""
    return chat.login(port, name, oldserver.USERS[name]["password"])


def everything_is_there(port: int, made: dict) -> None:
    """Every post, file, reaction, custom emoji, pinned flag, the thread, the direct message,
    the bot's post, the archived channel and the deactivated user, as made at the start -
    read through nginx by the PyPI client, users logging in with their old passwords."""
    alice, bob = old_login(port, "alice"), old_login(port, "bob")
    posts = made["posts"]
    welcome = alice.posts.get_post(posts["welcome"])
    assert welcome["message"].startswith("Welcome to the old server \U0001F680 - Gr\u00fc\u00dfe"), welcome
    assert alice.posts.get_post(posts["long"])["message"].count("Lorem ipsum") == 300
    attachment = bob.posts.get_post(posts["attachment"])
    assert attachment["props"]["attachments"][0]["title"] == "Build 17", attachment
    thread = alice.posts.get_thread(posts["root"])
    assert {posts["reply1"], posts["reply2"]} <= set(thread["order"]), thread
    assert "a tab\there" in thread["posts"][posts["reply2"]]["message"]
    assert alice.posts.get_post(posts["root"])["is_pinned"] is True
    # files: the upload and its post; the private channel's image for its member
    assert made["files"]["report"] in alice.posts.get_post(posts["with_file"])["file_ids"]
    assert alice.files.get_file(made["files"]["report"]).content == b"quarterly report, old server\n"
    assert bob.files.get_file(made["files"]["pixel"]).content == PNG
    # reactions: the custom emoji twice, a system one once; the emoji's image still served
    reactions = alice.reactions.get_reactions_of_post(posts["welcome"])
    names = sorted(r["emoji_name"] for r in reactions)
    assert names == ["+1", "oldparrot", "oldparrot"], reactions
    emoji = alice.emoji.get_custom_emoji_by_name("oldparrot")
    assert emoji["id"] == made["emoji"]
    assert alice.emoji.get_custom_emoji_image(emoji["id"]).content == PNG
    # the direct message, the bot's post, bob's flag and preference
    assert bob.posts.get_post(posts["direct"])["message"] == "a direct message from the old days"
    bot_post = alice.posts.get_post(posts["bot"])
    assert bot_post["user_id"] == made["bot"] and bot_post["message"] == "beep: posted by the old bot"
    prefs = {(p["category"], p["name"]): p["value"] for p in bob.preferences.get_user_preferences("me")}
    assert prefs[("flagged_post", posts["attachment"])] == "true"
    assert prefs[("display_settings", "use_military_time")] == "true"
    # what the old runbook did: the archived channel and the deactivated user
    archived = alice.channels.get_channel(made["channels"]["old-project"])
    assert archived["delete_at"] > 0 and archived["name"] == "old-project"
    carol = alice.users.get_user_by_username("carol")
    assert carol["delete_at"] > 0
    assert alice.posts.get_post(posts["private"])["message"] == "board only: the pixel"


def post_count(target: str, psql: bool = True) -> int:
    if psql:
        return int(sh(target, "runuser -u postgres -- psql -XAt -d mattermost -c 'SELECT count(*) FROM posts'").strip())
    return int(sh(target, "mysql -N -B -D mattermost -e 'SELECT COUNT(*) FROM Posts'").strip())


def config(target: str) -> dict:
    return json.loads(sh(target, "cat /var/lib/mattermost/config/config.json"))


def config_at(target: str, install_dir: str) -> str:
    """A hand install's config.json, as its folder holds it (before the adoption)."""
    return sh(target, f"cat {install_dir}/config/config.json")
