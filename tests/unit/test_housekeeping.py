"""Declared housekeeping: the emoji folder check, the plan against the server's state,
the confirmation rule, and the channel and user reports."""

import re
import runpy

import pytest
from pyinfra.api.exceptions import DeployError

from tasks import housekeeping, reports
from tasks.settings import ROOT, SettingsError, load_settings
from tests.images import GIF_1X1, jpeg_header, png

DEFAULTS = {k: v for k, v in runpy.run_path(str(ROOT / "group_data" / "all.py")).items() if not k.startswith("__")}
PNG = png(4, 4)
DAY = 86_400_000
NOW = 1_800_000_000_000

# As the helper's housekeeping_state reports a server (the shape the real server gives it).
STATE = {
    "teams": [{"name": "acme", "display_name": "Acme", "channels": [
        {"name": "town-square", "display_name": "Town Square", "type": "O", "archived": False, "create_at": NOW - 900 * DAY,
         "last_post_at": 0, "messages": 0, "members": 3},
        {"name": "old-project", "display_name": "Old", "type": "O", "archived": False, "create_at": NOW - 900 * DAY,
         "last_post_at": NOW - 400 * DAY, "messages": 12, "members": 2},
        {"name": "gone", "display_name": "Gone", "type": "P", "archived": True, "create_at": NOW - 900 * DAY,
         "last_post_at": NOW - 800 * DAY, "messages": 3, "members": 1},
        {"name": "busy", "display_name": "Busy", "type": "O", "archived": False, "create_at": NOW - 900 * DAY,
         "last_post_at": NOW - 2 * DAY, "messages": 500, "members": 9},
    ]}],
    "users": [{"username": "alice", "email": "a@x.org", "active": True, "is_bot": False, "last_activity_at": None},
              {"username": "bob", "email": "b@x.org", "active": False, "is_bot": False, "last_activity_at": NOW}],
    "emoji": ["party"],
    "email_configured": False,
    "bot_token": True,
}


def settings(**overrides):
    return load_settings({**DEFAULTS, **overrides}, "chat.example.org", environ={})


def test_emoji_folder_good_images(tmp_path):
    (tmp_path / "Party.png").write_bytes(PNG)
    (tmp_path / "thumbs_up_custom.gif").write_bytes(GIF_1X1)
    (tmp_path / "photo.jpg").write_bytes(jpeg_header(1028, 600))
    (tmp_path / ".hidden").write_bytes(b"x")
    assert [(e.name, e.size) for e in housekeeping.read_emoji_folder(tmp_path)] == [
        ("party", len(PNG)), ("photo", len(jpeg_header(1028, 600))), ("thumbs_up_custom", len(GIF_1X1))]
    assert housekeeping.read_emoji_folder(tmp_path / "missing") == []


def test_image_sizes_read_from_headers():
    assert housekeeping.image_size(png(300, 20)) == ("PNG", 300, 20)
    assert housekeeping.image_size(GIF_1X1) == ("GIF", 1, 1)
    assert housekeeping.image_size(jpeg_header(640, 480)) == ("JPEG", 640, 480)
    assert housekeeping.image_size(b"BM" + b"\0" * 40) is None


def test_the_whole_upload_request_counts_against_512_kib(tmp_path):
    # The server compares the request's Content-Length (image AND form) with 512 KiB.
    overhead = housekeeping.emoji_request_size("edge", "edge.png", 0)
    assert 200 < overhead < 600
    (tmp_path / "edge.png").write_bytes(PNG + b"\0" * (512 * 1024 - overhead - len(PNG)))
    assert [e.name for e in housekeeping.read_emoji_folder(tmp_path)] == ["edge"]
    (tmp_path / "edge.png").write_bytes(PNG + b"\0" * (512 * 1024 - overhead - len(PNG) + 1))
    with pytest.raises(DeployError, match="edge.png: 511 KiB, Mattermost accepts an upload of at most 512 KiB"):
        housekeeping.read_emoji_folder(tmp_path)


@pytest.mark.parametrize("name,data,message", [
    ("bitmap.png", b"BM" + b"\0" * 40, "bitmap.png: not a PNG, JPEG or GIF image"),
    ("huge.png", PNG + b"\0" * 600 * 1024, "huge.png: 600 KiB, Mattermost accepts an upload of at most 512 KiB"),
    ("wide.png", png(1029, 2), "wide.png: 1029x2 pixels, Mattermost accepts at most 1028x1028"),
    ("smile.png", PNG, "smile.png: :smile: is a system emoji of Mattermost"),
    ("+1.png", PNG, "+1.png: :+1: is a system emoji of Mattermost"),
    ("no spaces.png", PNG, "no spaces.png: the name must be 1-64 of a-z 0-9 _ + -"),
])
def test_emoji_folder_refuses_bad_images_before_anything(tmp_path, name, data, message):
    (tmp_path / "fine.png").write_bytes(PNG)
    (tmp_path / name).write_bytes(data)
    with pytest.raises(DeployError, match=re.escape(message)) as err:
        housekeeping.read_emoji_folder(tmp_path)
    assert "nothing was changed" in str(err.value)


def test_plan_touches_only_what_differs(tmp_path):
    (tmp_path / "party.png").write_bytes(PNG)
    (tmp_path / "shipit.png").write_bytes(PNG)
    s = settings(mattermost_channels_archive=["acme:old-project", "acme:gone", "acme:unknown"],
                 mattermost_channels_delete=["acme:busy", "acme:never-was"],
                 mattermost_users_create=[{"username": "carol", "email": "c@x.org"}, {"username": "alice", "email": "a@x.org"}],
                 mattermost_users_deactivate=["alice", "bob"], mattermost_users_erase=["bob", "nobody"],
                 mattermost_confirm_permanent_deletion=True)
    actions = housekeeping.plan(s, STATE, housekeeping.read_emoji_folder(tmp_path))
    assert [(a.kind, a.target) for a in actions] == [
        ("archive-channel", "acme:old-project"), ("delete-channel", "acme:busy"), ("create-user", "carol"),
        ("deactivate-user", "alice"), ("erase-user", "bob"), ("upload-emoji", "shipit")]
    assert [a.permanent for a in actions] == [False, True, False, False, True, False]
    assert actions[1].sentence() == "Delete channel acme:busy permanently (with its posts)"


def test_plan_without_state_plans_everything_declared():
    s = settings(mattermost_channels_archive=["acme:old-project"], mattermost_users_deactivate=["alice"])
    for state in (None, {"error": "Mattermost is not running"}):
        assert [(a.kind, a.target) for a in housekeeping.plan(s, state, [])] == [
            ("archive-channel", "acme:old-project"), ("deactivate-user", "alice")]


def test_permanent_deletion_needs_the_confirmation_setting():
    with pytest.raises(DeployError, match="not confirmed: set mattermost_confirm_permanent_deletion"):
        housekeeping.check_confirmation(settings(mattermost_channels_delete=["acme:busy"]))
    with pytest.raises(DeployError, match="bob"):
        housekeeping.check_confirmation(settings(mattermost_users_erase=["bob"]))
    housekeeping.check_confirmation(settings(mattermost_users_erase=["bob"], mattermost_confirm_permanent_deletion=True))
    housekeeping.check_confirmation(settings(mattermost_channels_archive=["acme:busy"]))


@pytest.mark.parametrize("overrides,message", [
    ({"mattermost_users_create": [{"username": "carol", "email": "c@x.org", "password": "x"}]}, "no password"),
    ({"mattermost_users_create": [{"username": "carol"}]}, "needs a username and an email"),
    ({"mattermost_channels_archive": ["old-project"]}, "must be team:channel"),
    ({"mattermost_retention_days": 0}, "mattermost_retention_days"),
])
def test_declared_state_is_checked(overrides, message):
    with pytest.raises(SettingsError, match=message):
        settings(**overrides)


def test_channel_report_and_stale():
    rows = {r["channel"]: r for r in reports.channel_rows(STATE, 180, NOW)}
    assert rows["old-project"]["stale"] and rows["old-project"]["last_post"] == "2025-12-11"
    assert rows["old-project"]["messages"] == 12
    assert not rows["busy"]["stale"] and not rows["gone"]["stale"]  # archived channels are not reported stale
    assert rows["gone"]["type"] == "private (archived)" and rows["busy"]["members"] == 9
    assert rows["town-square"]["stale"]  # never posted in, created 900 days ago
    # the default channel cannot be archived, so archive-stale leaves it alone
    assert reports.stale_channels(STATE, 180, NOW) == ["acme:old-project"]
    assert reports.stale_channels(STATE, 500, NOW) == []


def test_user_report():
    rows = reports.user_rows(STATE)
    assert [(r["username"], r["state"]) for r in rows] == [("alice", "active"), ("bob", "deactivated")]
    assert rows[0]["last_activity"] == "never" and rows[0]["last_activity_at"] is None
    assert rows[1]["last_activity"] != "never" and rows[1]["last_activity_at"]
    text = reports.table(rows, ["username", "state", "last_activity"])
    assert text.splitlines()[1].split() == ["alice", "active", "never"]
