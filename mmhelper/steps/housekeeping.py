"""Channels, users and custom emoji over the local-mode socket (and the emoji API with the
deploy's bot token).
"""

import http.client
import json
import os
import secrets
import socket
import subprocess
import urllib.error
import urllib.parse
import urllib.request

from mmhelper.parts.common import Failure, read_json, read_password, write_private
from mmhelper.parts.config import get_dotted, smtp_check
from mmhelper.parts.pg import psql_as_postgres

# The bot the check after an upgrade's start uses (mmhelper/jobs/upgrade_check.py).
PROBE = "mattermost-deploy-probe"


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=30):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


def _answer(method, path, status, data):
    if status >= 400:
        try:
            message = json.loads(data).get("message")
        except (ValueError, AttributeError):
            message = None
        raise Failure(f"Mattermost refused {method} {path}: HTTP {status} {message or ''}".strip())
    return json.loads(data or b"null")


def local_api(spec, method, path, body=None):
    """The local-mode socket: fully authorised, like `mmctl --local`. Only the routes that
    server/channels/api4/*_local.go registers exist there (e.g. no GET /channels/{id}/stats,
    no POST /bots, no emoji routes)."""
    conn = UnixHTTPConnection(spec["socket"])
    try:
        payload = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=payload, headers={"Content-Type": "application/json"} if payload else {})
        response = conn.getresponse()
        return _answer(method, path, response.status, response.read())
    finally:
        conn.close()


def local_pages(spec, path, per_page=200):
    """Every item of a paged list route (page=0,1,... until a short page)."""
    items, page = [], 0
    while True:
        batch = local_api(spec, "GET", f"{path}{'&' if '?' in path else '?'}page={page}&per_page={per_page}") or []
        items += batch
        if len(batch) < per_page:
            return items
        page += 1


def mmctl(spec, *args):
    """`mmctl --local ARGS` as the service user, for the commands an operator would type."""
    cmd = ["runuser", "-u", spec["user"], "--", os.path.join(spec["install_dir"], "bin", "mmctl"), "--local", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, MMCTL_LOCAL_SOCKET_PATH=spec["socket"]))
    if result.returncode != 0:
        raise Failure(f"mmctl {' '.join(args[:3])} failed: {(result.stderr or result.stdout).strip()[-300:]}")
    return result.stdout


def api_with_token(spec, method, path, body=None, content_type="application/json"):
    """The REST API on 127.0.0.1 with the deploy's bot token (emoji have no local route)."""
    token = read_password(spec["token_file"])
    if not token:
        raise Failure("the deploy's bot token is missing: run the full deploy")
    base = spec.get("api_base") or "http://127.0.0.1:8065"  # with the SiteURL's path, where there is one
    request = urllib.request.Request(f"{base}{path}", data=body, method=method,
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as e:
        return _answer(method, path, e.code, e.read())


def bot_token_works(spec):
    if not read_password(spec["token_file"]):
        return False
    try:
        return bool(api_with_token(spec, "GET", "/api/v4/users/me"))
    except (Failure, OSError):
        return False


def housekeeping_state(spec):
    """Teams with their channels (type, archived, last post, messages, members), users
    (active or not, last activity), custom emoji and whether the deploy's bot token works -
    what the declared housekeeping and the reports compare against. Read over the local
    socket and, for the two things it does not serve, from the database."""
    if not os.path.exists(spec["socket"]):
        return {"error": "Mattermost is not running (no local-mode socket yet)"}
    try:
        teams = local_pages(spec, "/api/v4/teams")  # getAllTeams (api4/team_local.go)
        # getAllChannels (api4/channel_local.go): public and private channels of every team, with team_name.
        channels = local_pages(spec, "/api/v4/channels?include_deleted=true")
        db = spec["db"]
        # The local socket has no channel stats route: members counted in the channelmembers table.
        out = psql_as_postgres("SELECT channelid, count(*) FROM channelmembers GROUP BY channelid;", db).stdout
        members = dict(line.split("|") for line in out.splitlines() if "|" in line)
        # No local emoji route either: the emoji table (deleted emoji keep their row with deleteat set).
        emoji = psql_as_postgres("SELECT name FROM emoji WHERE deleteat = 0 ORDER BY name;", db).stdout.split()
        # What people (and bots) last posted in each channel: Channels.LastPostAt also moves for
        # the server's own system messages (joins, leaves, header changes), which keep a
        # channel nobody uses looking alive.
        out = psql_as_postgres("SELECT c.id, (SELECT max(p.createat) FROM posts p WHERE p.channelid = c.id AND "
                               "p.deleteat = 0 AND p.type NOT LIKE 'system\\_%') FROM channels c;", db).stdout
        people_posted = {cid: int(at) for cid, at in (line.split("|") for line in out.splitlines() if "|" in line) if at}
        # When each user was last active: the server's Status record (platform/status.go
        # SetStatusOnline: every request that posts or views sets it, saved at least every
        # StatusMinUpdateTime), or a session's LastActivityAt. The user objects of the API carry
        # last_activity_at only in a team's "recently active" listing.
        out = psql_as_postgres("SELECT u.username, GREATEST(COALESCE(s.lastactivityat, 0), COALESCE((SELECT "
                               "max(x.lastactivityat) FROM sessions x WHERE x.userid = u.id), 0)) FROM users u "
                               "LEFT JOIN status s ON s.userid = u.id;", db).stdout
        active_at = {name: int(at) for name, at in (line.split("|") for line in out.splitlines() if "|" in line)
                     if int(at or 0) > 0}
        by_team = {t["name"]: [] for t in teams}
        for c in channels:
            by_team.setdefault(c.get("team_name"), []).append({
                "name": c["name"], "display_name": c["display_name"], "type": c["type"],
                "archived": bool(c["delete_at"]), "create_at": c["create_at"],
                "last_post_at": people_posted.get(c["id"]), "last_any_post_at": c["last_post_at"],
                "messages": c["total_msg_count"], "members": int(members.get(c["id"], 0))})
        teams_out = [{"name": t["name"], "display_name": t["display_name"],
                      "channels": sorted(by_team.get(t["name"], []), key=lambda c: c["name"])} for t in teams]
        users = [{"username": u["username"], "email": u.get("email", ""), "active": not u["delete_at"],
                  "is_bot": bool(u.get("is_bot")), "last_activity_at": active_at.get(u["username"])}
                 for u in local_pages(spec, "/api/v4/users")  # localGetUsers: active and deactivated
                 if u["username"] != PROBE]  # the upgrade check's probe bot is the deploy's, not a person
        return {"teams": teams_out, "users": users, "emoji": emoji,
                "email_configured": email_configured(spec), "bot_token": bot_token_works(spec)}
    except (Failure, OSError, ValueError, KeyError) as e:
        return {"error": str(e)}


def email_configured(spec):
    """Whether Mattermost can send e-mail: the SMTP server config.json names answers with
    its greeting. (An empty EmailSettings.SMTPServer becomes "localhost" port 10025 when
    Mattermost saves its config - public/model/config.go SetDefaults - so the setting
    alone says nothing.) Without it no password e-mail can reach a new user."""
    config = read_json(spec.get("config_file") or "") or {}
    return bool(get_dotted(config, "EmailSettings.SMTPServer")[0]) and smtp_check(config, timeout=5) is None


def find_user(spec, username):
    try:
        return local_api(spec, "GET", f"/api/v4/users/username/{urllib.parse.quote(username)}")
    except Failure:
        return None


def housekeeping(spec):
    """One declared action, checked against the server just before it is done, so a run
    repeated after a failure does only what is still missing."""
    action, target = spec["action"], spec["target"]
    now = housekeeping_state(spec)
    if now.get("error"):
        raise Failure(f"cannot read channels and users: {now['error']}")
    channels = {f"{t['name']}:{c['name']}": c for t in now["teams"] for c in t["channels"]}
    users = {u["username"]: u for u in now["users"]}
    if action in ("archive-channel", "delete-channel"):
        channel = channels.get(target)
        if channel is None:
            print(f"channel {target} does not exist (already deleted?)")
            return
        if action == "archive-channel":
            if channel["archived"]:
                print(f"channel {target} is already archived")
                return
            mmctl(spec, "channel", "archive", target)
        else:
            mmctl(spec, "channel", "delete", target, "--confirm")
    elif action == "create-user":
        if target in users:
            print(f"user {target} exists")
            return
        if not now["email_configured"]:
            raise Failure(f"{target} could never set a password: the SMTP server in config.json "
                          "(EmailSettings.SMTPServer, SMTPPort) does not answer, so the password e-mail cannot leave; "
                          "configure e-mail first - the user was not created")
        # A password nobody knows, sent in the request body (never on a command line); the
        # user sets their own through the e-mail. createUser and sendPasswordReset are local
        # routes (api4/user_local.go); `mmctl user reset-password` takes e-mail addresses.
        user = {"username": target, "email": spec["email"], "password": secrets.token_urlsafe(24) + "aA1!"}
        if spec.get("first_name"):
            user["first_name"] = spec["first_name"]
        local_api(spec, "POST", "/api/v4/users", user)
        local_api(spec, "POST", "/api/v4/users/password/reset/send", {"email": spec["email"]})
        print(f"user {target} created; the password e-mail went to {spec['email']}")
    elif action == "deactivate-user":
        if target not in users or not users[target]["active"]:
            print(f"user {target} is already deactivated (or gone)")
            return
        mmctl(spec, "user", "deactivate", target)
    elif action == "erase-user":
        if target not in users:
            print(f"user {target} does not exist (already erased?)")
            return
        # Measured on the real 10.3 and 11.4 builds: local mode deletes with
        # ServiceSettings.EnableAPIUserDeletion false (deleteUsersCmdF in cmd/mmctl/commands/
        # user.go has no config check; localDeleteUser in api4/user_local.go neither).
        mmctl(spec, "user", "delete", target, "--confirm")
        if find_user(spec, target):
            raise Failure(f"mmctl reported {target} deleted but the user is still there")
    else:
        raise Failure(f"unknown housekeeping action {action}")
    print(f"{action} {target}: done")


def bot_token(spec):
    """The deploy's bot and its access token, kept root-only (for the emoji API).

    `mmctl bot create` refuses local mode (cmd/mmctl/commands/bot.go: disableLocalPrecheck)
    and the local API has no POST /bots; it does create users, convert a user to a bot and
    make a bot's token (api4/user_local.go: POST /users, /users/{id}/convert_to_bot,
    /users/{id}/tokens). A bot cannot log in with a password. The deploy keeps
    EnableUserAccessTokens on while emoji are declared: the real 10.3 server refused this
    token without it (11.4 did not)."""
    if bot_token_works(spec):
        print("the deploy's bot token is in place")
        return
    bot = find_user(spec, spec["bot"])
    if bot is None:
        bot = local_api(spec, "POST", "/api/v4/users", {
            "username": spec["bot"], "email": f"{spec['bot']}@localhost",
            "password": secrets.token_urlsafe(24) + "aA1!", "first_name": "Mattermost deploy"})
    if not bot.get("is_bot"):
        local_api(spec, "POST", f"/api/v4/users/{bot['id']}/convert_to_bot")
    token = local_api(spec, "POST", f"/api/v4/users/{bot['id']}/tokens", {"description": "custom emoji uploads"})
    os.makedirs(os.path.dirname(spec["token_file"]), mode=0o700, exist_ok=True)
    write_private(spec["token_file"], token["token"] + "\n")
    print(f"bot {spec['bot']} has a token in {spec['token_file']} (root only)")


def emoji_body(name, creator_id, filename, image, boundary):
    """The multipart body of POST /api/v4/emoji: a JSON part `emoji` and the `image`."""
    return (f"--{boundary}\r\nContent-Disposition: form-data; name=\"emoji\"\r\n\r\n"
            + json.dumps({"name": name, "creator_id": creator_id})
            + f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{filename}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + image + f"\r\n--{boundary}--\r\n".encode()


def emoji_upload(spec):
    """Upload one image from the staging folder as custom emoji `name`, unless it exists."""
    name, path = spec["name"], spec["path"]
    existing = housekeeping_state(spec).get("emoji") or []
    if name in existing:
        print(f"emoji :{name}: exists")
        return
    me = api_with_token(spec, "GET", "/api/v4/users/me")
    with open(path, "rb") as f:
        image = f.read()
    boundary = "mmdeploy" + secrets.token_hex(8)
    api_with_token(spec, "POST", "/api/v4/emoji", emoji_body(name, me["id"], os.path.basename(path), image, boundary),
                   f"multipart/form-data; boundary={boundary}")
    print(f"emoji :{name}: uploaded")
