"""Channels, users and custom emoji as declared state (settings in group_data/all.py,
per server in inventory.py): channels to archive or delete, users to create, deactivate
or erase, and the images in emoji/ as custom emoji.

The plan is read from the server over `mmctl --local` (in the run's one state round trip)
and every action is its own operation, so a dry run names each channel and user it would
touch. Each action re-checks the server just before it acts. Nothing permanent happens
without `mattermost_confirm_permanent_deletion`, and never without a backup first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pyinfra import host
from pyinfra.api import FileUploadCommand, StringCommand, operation
from pyinfra.api.exceptions import DeployError

from mmhelper.steps.housekeeping import emoji_body
from tasks.backup import backup_spec
from tasks.common import ROOT, current, helper, settings, streamed
from tasks.files import bucket_spec
from tasks.settings import Settings

BOT = "mattermost-deploy"
EMOJI_STAGING = "/var/lib/mattermost-deploy/emoji"
# The server's rules for a custom emoji (Mattermost server/): a name of a-z 0-9 _ + - (upper
# case too, but file names are lowercased here), at most 64 characters, not the name of a
# system emoji (public/model/emoji.go IsValidEmojiName, emoji_data.go SystemEmojis); the WHOLE
# upload request at most 512 KiB (channels/api4/emoji.go createEmoji: r.ContentLength >
# app.MaxEmojiFileSize); an image the server can decode of at most 1028x1028 pixels
# (channels/app/emoji.go MaxEmojiOriginalWidth/Height; larger than 128 it is scaled down).
EMOJI_NAME = re.compile(r"^[a-z0-9_+-]{1,64}$")
MAX_EMOJI_REQUEST = 512 * 1024
MAX_EMOJI_SIDE = 1028
SYSTEM_EMOJI_FILE = Path(__file__).with_name("system_emoji.txt")  # generated: python -m tests.realmm.emoji


@dataclass(frozen=True)
class Emoji:
    name: str
    path: Path
    size: int


def emoji_files(folder: Path) -> list[Path]:
    """The files of the emoji folder that are meant as emoji (hidden ones are not)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def image_size(data: bytes) -> tuple[str, int, int] | None:
    """(format, width, height) of a PNG, GIF or JPEG image, from its header; None otherwise."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR" and len(data) >= 24:
        return "PNG", int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return "GIF", int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
    if data.startswith(b"\xff\xd8"):
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                return None
            marker = data[i + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
                i += 2
                continue
            length = int.from_bytes(data[i + 2:i + 4], "big")
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
                return "JPEG", int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big")
            i += 2 + length
    return None


def system_emoji_names() -> frozenset[str]:
    lines = SYSTEM_EMOJI_FILE.read_text().splitlines()
    return frozenset(line.strip() for line in lines if line.strip() and not line.startswith("#"))


def emoji_request_size(name: str, filename: str, image_bytes: int) -> int:
    """Bytes of the upload request the server measures: the helper's own multipart body."""
    overhead = len(emoji_body(name, "x" * 26, filename, b"", "mmdeploy" + "0" * 16))
    return overhead + image_bytes


def read_emoji_folder(folder: Path) -> list[Emoji]:
    """The images of emoji/ as custom emoji, every file checked against the server's rules:
    one error lists every problem."""
    found, problems = [], []
    system = system_emoji_names()
    for path in emoji_files(folder):
        name = path.stem.lower()
        data = path.read_bytes()
        image = image_size(data)
        if not EMOJI_NAME.match(name):
            problems.append(f"{path.name}: the name must be 1-64 of a-z 0-9 _ + - (it becomes :{name}:)")
        elif name in system:
            problems.append(f"{path.name}: :{name}: is a system emoji of Mattermost; choose another name")
        elif image is None:
            problems.append(f"{path.name}: not a PNG, JPEG or GIF image")
        elif image[1] > MAX_EMOJI_SIDE or image[2] > MAX_EMOJI_SIDE:
            problems.append(f"{path.name}: {image[1]}x{image[2]} pixels, Mattermost accepts at most "
                            f"{MAX_EMOJI_SIDE}x{MAX_EMOJI_SIDE}")
        elif emoji_request_size(name, path.name, len(data)) > MAX_EMOJI_REQUEST:
            problems.append(f"{path.name}: {len(data) // 1024} KiB, Mattermost accepts an upload of at most "
                            f"512 KiB (image and form together): make it smaller")
        else:
            found.append(Emoji(name, path, len(data)))
    names = [e.name for e in found]
    problems += [f"two images for :{n}:" for n in sorted({n for n in names if names.count(n) > 1})]
    if problems:
        raise DeployError(f"{folder.name}/: " + "; ".join(problems) + " (nothing was changed on the server)")
    return found


@dataclass(frozen=True)
class Action:
    kind: str  # archive-channel, delete-channel, create-user, deactivate-user, erase-user, upload-emoji
    target: str
    extra: dict

    @property
    def permanent(self) -> bool:
        return self.kind in ("delete-channel", "erase-user")

    def sentence(self) -> str:
        return {
            "archive-channel": f"Archive channel {self.target}",
            "delete-channel": f"Delete channel {self.target} permanently (with its posts)",
            "create-user": f"Create user {self.target} ({self.extra.get('email')}; password set by the user via e-mail)",
            "deactivate-user": f"Deactivate user {self.target} (offboarding: sessions revoked)",
            "erase-user": f"Erase user {self.target} permanently (with all their posts)",
            "upload-emoji": f"Upload custom emoji :{self.target}:",
        }[self.kind]


def check_confirmation(s: Settings) -> None:
    permanent = [*s.channels_delete, *s.users_erase]
    if permanent and not s.confirm_permanent_deletion:
        raise DeployError(
            f"{s.host}: permanent deletion of {', '.join(permanent)} is declared but not confirmed: set "
            "mattermost_confirm_permanent_deletion = True for this run (nothing was changed on the server)")


def plan(s: Settings, state: dict | None, emoji: list[Emoji]) -> list[Action]:
    """The actions that bring the server to the declared state. With no state yet (a
    fresh server), every declared item is planned; each action re-checks before it acts."""
    known = state is not None and not state.get("error")
    channels = {f"{t['name']}:{c['name']}": c for t in (state or {}).get("teams", []) for c in t["channels"]}
    users = {u["username"]: u for u in (state or {}).get("users", [])}
    actions = []
    for ref in s.channels_archive:
        if not known or (ref in channels and not channels[ref]["archived"]):
            actions.append(Action("archive-channel", ref, {}))
    for ref in s.channels_delete:
        if not known or ref in channels:
            actions.append(Action("delete-channel", ref, {}))
    for user in s.users_create:
        if not known or user["username"] not in users:
            actions.append(Action("create-user", user["username"], dict(user)))
    for name in s.users_deactivate:
        if not known or (name in users and users[name]["active"]):
            actions.append(Action("deactivate-user", name, {}))
    for name in s.users_erase:
        if not known or name in users:
            actions.append(Action("erase-user", name, {}))
    present = set((state or {}).get("emoji") or [])
    for e in emoji:
        if not known or e.name not in present:
            actions.append(Action("upload-emoji", e.name, {"path": str(e.path), "file": e.path.name}))
    return actions


def helper_spec(s: Settings, **extra) -> dict:
    return {"user": s.user, "install_dir": s.install_dir, "socket": s.socket_path, "token_file": s.bot_token_file,
            "bot": BOT, "data_dir": s.data_dir, "db": s.db_name, "config_file": s.config_file,
            "api_base": s.local_api_base, "files": bucket_spec(s), **extra}


@operation(is_idempotent=False)
def backed_up_before_deletion():
    """A backup before anything permanent."""
    yield streamed(helper("backup", backup_spec(settings(), kind="pre-deletion")))


@operation()
def bot_token_kept():
    """The deploy's bot and its token (root-only on the server), for the emoji API."""
    if (current().get("housekeeping") or {}).get("bot_token"):
        host.noop("the deploy's bot token is in place")
        return
    yield helper("bot-token", helper_spec(settings()))


@operation()
def done(action: Action):
    s = settings()
    if action.kind == "upload-emoji":
        staged = f"{EMOJI_STAGING}/{action.extra['file']}"
        yield StringCommand("install", "-d", "-m", "0700", EMOJI_STAGING)
        yield FileUploadCommand(action.extra["path"], staged)
        yield streamed(helper("emoji-upload", helper_spec(s, name=action.target, path=staged)))
        return
    yield streamed(helper("housekeeping", helper_spec(s, action=action.kind, target=action.target,
                                                      email=action.extra.get("email"),
                                                      first_name=action.extra.get("first_name"))))


def emoji_folder(s: Settings) -> Path:
    folder = Path(s.emoji_dir)
    return folder if folder.is_absolute() else ROOT / folder


def declared(s: Settings) -> bool:
    """Anything to keep in shape? (Cheap: the emoji images are only read by configure.)"""
    return bool(s.channels_archive or s.channels_delete or s.users_create or s.users_deactivate or s.users_erase
                or emoji_files(emoji_folder(s)))


def email_configured(s: Settings, state: dict | None) -> bool:
    """An SMTP server named in the settings (checked again on the server before a user is
    created), or the one in config.json (set in the System Console) answering."""
    return bool(s.email.server or s.config.get("EmailSettings.SMTPServer") or (state or {}).get("email_configured"))


def check_email(s: Settings, state: dict | None, actions: list[Action]) -> None:
    """A new user gets a password nobody knows and sets their own through Mattermost's
    password e-mail: without an SMTP server that e-mail cannot leave, and the account would
    be unusable (Mattermost's sendPasswordReset fails, or silently sends nothing)."""
    new = [a.target for a in actions if a.kind == "create-user"]
    if new and not email_configured(s, state):
        raise DeployError(
            f"{s.host}: creating {', '.join(new)} needs e-mail: Mattermost sends each new user the link to set "
            "a password, and no SMTP server is configured - set smtp_server (and smtp_port, smtp_security, "
            "smtp_sender, smtp_user...) or configure e-mail in the System Console "
            "(nothing was changed on the server)")


def configure():
    s = settings()
    check_confirmation(s)
    emoji = read_emoji_folder(emoji_folder(s))  # a bad image stops the run here, before any change
    if not declared(s):
        return
    actions = plan(s, current().get("housekeeping"), emoji)
    check_email(s, current().get("housekeeping"), actions)
    if any(a.permanent for a in actions):
        backed_up_before_deletion(name="Back up before permanent deletion")
    if emoji:
        bot_token_kept(name=f"Keep a bot token for custom emoji uploads (bot {BOT}, token root-only)")
    for action in actions:
        done(name=action.sentence(), action=action)
