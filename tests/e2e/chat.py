"""Mattermost as its users meet it: the PyPI client `mattermostdriver` (written by others,
not by this project) logging in through nginx over HTTPS, posting, uploading, reacting.
Accounts and teams are made the way an admin makes them: `mmctl --local` on the server."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from mattermostdriver import Driver
from urllib3.exceptions import InsecureRequestWarning

from tests.e2e.conftest import sh

PASSWORD = "Chat-Password-2026"  # test accounts only (the deploy's minimum length is 12)
warnings.simplefilter("ignore", InsecureRequestWarning)  # the test servers' self-signed certificates


def mmctl(target: str, args: str) -> str:
    """`mmctl --local ARGS` on the server, as the service user (what an admin types)."""
    return sh(target, "cd /opt/mattermost && MMCTL_LOCAL_SOCKET_PATH=/run/mattermost/local.socket "
                      f"runuser -u mattermost -- bin/mmctl --local {args}")


def mmctl_json(target: str, args: str):
    """The JSON an mmctl command prints with --json (on stdout; the real mmctl adds lines of
    text on stderr, e.g. `user list`: "There are N users on local instance")."""
    import json

    return json.loads(mmctl(target, f"{args} --json 2>/dev/null"))


def create_user(target: str, username: str, team: str | None = None, admin: bool = False) -> None:
    mmctl(target, f"user create --username {username} --email {username}@example.org --password {PASSWORD}"
                  + (" --system-admin" if admin else ""))
    if team:
        mmctl(target, f"team users add {team} {username}")


def login(port: int, username: str, password: str = PASSWORD) -> Driver:
    """A user logged in over https://127.0.0.1:<port> (the test server's nginx)."""
    driver = Driver({"url": "127.0.0.1", "port": port, "scheme": "https", "verify": False,
                     "login_id": username, "password": password, "timeout": 30})
    driver.login()
    return driver


@dataclass
class Story:
    """What a user left on the server: a post with a file and a custom-emoji reaction."""
    post_id: str
    file_id: str
    message: str
    file_body: bytes
    emoji: str


def leave_a_post_with_file_and_reaction(port: int, username: str, team: str, message: str, file_body: bytes,
                                        emoji: str) -> Story:
    chat = login(port, username)
    channel = chat.channels.get_channel_by_name_and_team_name(team, "town-square")
    upload = chat.files.upload_file(channel["id"], files={"files": ("minutes.txt", file_body)})
    file_id = upload["file_infos"][0]["id"]
    post = chat.posts.create_post({"channel_id": channel["id"], "message": message, "file_ids": [file_id]})
    me = chat.users.get_user("me")
    chat.reactions.create_reaction({"user_id": me["id"], "post_id": post["id"], "emoji_name": emoji})
    return Story(post["id"], file_id, message, file_body, emoji)


def still_there(port: int, username: str, story: Story) -> None:
    """The same user, logged in afresh, sees the post, downloads the file and sees the
    reaction and the custom emoji (its image served too)."""
    chat = login(port, username)
    post = chat.posts.get_post(story.post_id)
    assert post["message"] == story.message and post.get("delete_at", 0) == 0, post
    assert story.file_id in post.get("file_ids", []), post
    assert chat.files.get_file(story.file_id).content == story.file_body
    reactions = chat.reactions.get_reactions_of_post(story.post_id)
    assert story.emoji in [r["emoji_name"] for r in reactions], reactions
    emoji = chat.emoji.get_custom_emoji_by_name(story.emoji)
    image = chat.emoji.get_custom_emoji_image(emoji["id"])
    assert image.status_code == 200 and len(image.content) > 0
