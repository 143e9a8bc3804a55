"""A Mattermost 5/6 server installed BY HAND years ago, the way the tarball guide of the time
said - on MariaDB (Debian's; the guide offered MySQL) or on PostgreSQL - and used since:
teams, public and private channels, posts with files, replies, reactions, custom emoji,
pins, a direct message, users (active, deactivated, a bot), preferences, an archived
channel. Made with the server's own old command line (`bin/mattermost team create`, ...)
and its REST API, as people did. The release is the real one the stand-in upstream
serves (real Mattermost 5.39/6.3 built from source, tests/realmm). Test-only: it drives a
test container with `docker exec`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from tests import testhost
from tests.handinstall import OFFICIAL_UNIT
from tests.standin.build import UPSTREAM_HOST


@dataclass(frozen=True)
class Layout:
    """Where an admin put things: the guide's /opt/mattermost and mattermost.service, or their
    own folder, unit name and config file (`-c` on the unit's command line)."""
    install_dir: str = "/opt/mattermost"
    unit: str = "mattermost"
    config: str | None = None  # outside the install: the unit runs bin/mattermost -c CONFIG

    @property
    def config_file(self) -> str:
        return self.config or f"{self.install_dir}/config/config.json"


GUIDE = Layout()


def old_unit(db_service: str, layout: Layout = GUIDE) -> str:
    """The 5.x guide's unit: today's official one, bound to the database service it used (in
    the admin's own folder, with their config flag, when they chose so)."""
    unit = OFFICIAL_UNIT.replace("postgresql.service", f"{db_service}.service")
    exec_start = f"{layout.install_dir}/bin/mattermost" + (f" -c {layout.config}" if layout.config else "")
    return unit.replace("ExecStart=/opt/mattermost/bin/mattermost", f"ExecStart={exec_start}").replace(
        "WorkingDirectory=/opt/mattermost", f"WorkingDirectory={layout.install_dir}")


# Test-only passwords of the hand install (never a real secret).
USERS = {
    "alice": {"email": "alice@example.org", "password": "Alice-old-password-1", "admin": True},
    "bob": {"email": "bob@example.org", "password": "Bob-old-password-12", "admin": False},
    "carol": {"email": "carol@example.org", "password": "Carol-old-password-3", "admin": False},
}


def sh(target: str, command: str) -> str:
    code, out = testhost.exec_on(target, command)
    if code != 0:
        raise RuntimeError(f"{command[:200]!r} failed on {target} ({code}): {out[-3000:]}")
    return out


def datasource(engine: str, password: str, socket_only: bool = False) -> tuple[str, str]:
    """(DriverName, DataSource) as the 5.x guide wrote them into config.json (or, for a MariaDB
    that listens on its socket only, the socket form go-sql-driver reads)."""
    if engine == "mysql":
        where = "unix(/run/mysqld/mysqld.sock)" if socket_only else "tcp(localhost:3306)"
        return "mysql", (f"mmuser:{password}@{where}/mattermost?charset=utf8mb4,utf8"
                         "&readTimeout=30s&writeTimeout=30s")
    return "postgres", f"postgres://mmuser:{password}@localhost:5432/mattermost?sslmode=disable&connect_timeout=10"


def sql_literal(text: str) -> str:
    """A MariaDB string literal (backslash and quote escaped)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def install(target: str, version: str, engine: str, db_password: str, site_url: str, layout: Layout = GUIDE,
            socket_only: bool = False) -> None:
    """The old guide's steps: the database server and its user, the tarball unpacked into
    /opt/mattermost (or the admin's folder), config.json edited in place (or moved where the
    admin keeps it), the unit, started."""
    if engine == "mysql":
        sh(target, "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q mariadb-server >/dev/null")
        if socket_only:  # no TCP at all: clients reach it by its socket only
            sh(target, "printf '[mysqld]\\nskip-networking\\n' > /etc/mysql/mariadb.conf.d/99-socket-only.cnf "
                       "&& systemctl restart mariadb")
        sql = (f"CREATE USER 'mmuser'@'localhost' IDENTIFIED BY {sql_literal(db_password)}; CREATE DATABASE mattermost; "
               "GRANT ALL PRIVILEGES ON mattermost.* TO 'mmuser'@'localhost';")
        sh(target, f"mysql -u root <<'SQL'\n{sql}\nSQL")
        db_service = "mariadb"
    else:
        sh(target, "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null")
        sh(target, f"""runuser -u postgres -- psql -X -q \
            -c "CREATE DATABASE mattermost;" \
            -c "CREATE USER mmuser WITH PASSWORD '{db_password}';" \
            -c "GRANT ALL PRIVILEGES ON DATABASE mattermost TO mmuser;" \
            -c "ALTER DATABASE mattermost OWNER TO mmuser;" """)
        db_service = "postgresql"
    tarball = f"{UPSTREAM_HOST}/releases/{version}/mattermost-{version}-linux-amd64.tar.gz"
    folder = layout.install_dir
    sh(target, f"""set -e
        curl -sfo /tmp/mm.tar.gz {tarball}
        mkdir -p {folder}.unpack && tar -xzf /tmp/mm.tar.gz -C {folder}.unpack && rm /tmp/mm.tar.gz
        mkdir -p $(dirname {folder}) && mv {folder}.unpack/mattermost {folder} && rmdir {folder}.unpack
        mkdir {folder}/data
        useradd --system --user-group mattermost
        chown -R mattermost:mattermost {folder}
        chmod -R g+w {folder}""")
    driver, source = datasource(engine, db_password, socket_only)
    settings = {
        ("SqlSettings", "DriverName"): driver, ("SqlSettings", "DataSource"): source,
        ("ServiceSettings", "SiteURL"): site_url,
        ("TeamSettings", "SiteName"): "Old Hand Installed Chat",
        ("ServiceSettings", "EnableLocalMode"): True,
        ("ServiceSettings", "EnableBotAccountCreation"): True,  # the admin made a bot
        ("ServiceSettings", "EnableCustomEmoji"): True,  # and the team uploaded emoji
        ("ServiceSettings", "EnableUserAccessTokens"): True,  # the bot posts with a token
        ("PluginSettings", "EnableUploads"): True,
    }
    edits = "\n".join(f"c[{s!r}][{k!r}] = {v!r}" for (s, k), v in settings.items())
    sh(target, f"""python3 - <<'EOF'
import json
p = '{folder}/config/config.json'
c = json.load(open(p))
{edits}
json.dump(c, open(p, 'w'), indent=4)
EOF""")
    if layout.config:  # the admin keeps the config outside the install, readable by the service only
        sh(target, f"install -d -m 755 $(dirname {layout.config}) && mv {folder}/config/config.json {layout.config} "
                   f"&& chown mattermost:mattermost {layout.config} && chmod 600 {layout.config}")
    sh(target, f"cat > /etc/systemd/system/{layout.unit}.service <<'EOF'\n{old_unit(db_service, layout)}EOF\n"
               f"systemctl daemon-reload && systemctl enable --now {layout.unit}")
    sh(target, "for i in $(seq 1 120); do curl -sf http://127.0.0.1:8065/api/v4/system/ping >/dev/null && exit 0; "
               "sleep 0.5; done; exit 1")


def old_cli(target: str, *commands: str, layout: Layout = GUIDE) -> str:
    """`bin/mattermost ...` as the old runbooks typed them (as the service user, from the
    install folder, with the config flag where the config is elsewhere); the JSON log lines
    of each command are dropped from the output."""
    out = []
    flag = f"-c {layout.config} " if layout.config else ""
    for command in commands:
        text = sh(target, f"cd {layout.install_dir} && runuser -u mattermost -- bin/mattermost {flag}{command}")
        out += [line for line in text.splitlines() if not line.startswith("{")]
    return "\n".join(out)


SEED = r'''
import json, sys, urllib.request, urllib.error
base = "http://127.0.0.1:8065/api/v4"
users = json.loads(sys.argv[1])

def call(method, path, body=None, token=None, raw=None, ctype="application/json"):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(base + path, data=data, method=method, headers={"Content-Type": ctype})
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req) as r:
            return r.headers.get("Token"), json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        raise SystemExit(f"{method} {path}: {e.code} {e.read()[:500]}")

def multipart(fields, files):
    boundary = "seedboundary7MA4YWxkTrZu0gW"
    out = b""
    for name, value in fields.items():
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").encode()
    for name, (filename, data, ctype) in files.items():
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\n"
                f"Content-Type: {ctype}\r\n\r\n").encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode(), "multipart/form-data; boundary=" + boundary

tokens, ids = {}, {}
for name, u in users.items():
    if name == "carol":
        continue
    tokens[name], me = call("POST", "/users/login", {"login_id": name, "password": u["password"]})
    ids[name] = me["id"]
A, B = tokens["alice"], tokens["bob"]
_, team = call("GET", "/teams/name/staff", token=A)
chan = {n: call("GET", f"/teams/{team['id']}/channels/name/{n}", token=A)[1]["id"]
        for n in ("town-square", "old-project", "board")}
out = {"team": team["id"], "channels": chan, "posts": {}, "files": {}, "user_ids": ids}

def post(token, channel, message, **extra):
    _, p = call("POST", "/posts", {"channel_id": channel, "message": message, **extra}, token=token)
    return p["id"]

def upload(token, channel, filename, data, ctype):
    body, content_type = multipart({"channel_id": channel}, {"files": (filename, data, ctype)})
    _, f = call("POST", "/files", token=token, raw=body, ctype=content_type)
    return f["file_infos"][0]["id"]

# Posts: plain, 4-byte characters, a long one, one with JSON props (a message attachment)
P = out["posts"]
WELCOME = "Welcome to the old server \U0001F680 - Gr\u00fc\u00dfe, \u3053\u3093\u306b\u3061\u306f"
P["welcome"] = post(A, chan["town-square"], WELCOME)
P["long"] = post(A, chan["town-square"], "A long post. " + "Lorem ipsum dolor sit amet. " * 300)
P["attachment"] = post(B, chan["town-square"], "build report",
                       props={"attachments": [{"fallback": "build 17 ok", "color": "#36a64f", "title": "Build 17",
                                               "fields": [{"title": "status", "value": "ok", "short": True}]}]})
# A thread: a root and replies
P["root"] = post(A, chan["old-project"], "Kick-off of the old project")
P["reply1"] = post(B, chan["old-project"], "First reply", root_id=P["root"])
P["reply2"] = post(A, chan["old-project"], "Second reply, with 'quotes' and \"double\" and a tab\there", root_id=P["root"])
# Files: a text file and a PNG, each posted
png = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360f8cfc0f01f0005fe02fea7d4a0a10000000049454e44ae426082")
out["files"]["report"] = upload(A, chan["town-square"], "report.txt", b"quarterly report, old server\n", "text/plain")
out["files"]["pixel"] = upload(B, chan["board"], "pixel.png", png, "image/png")
P["with_file"] = post(A, chan["town-square"], "the report", file_ids=[out["files"]["report"]])
P["private"] = post(B, chan["board"], "board only: the pixel", file_ids=[out["files"]["pixel"]])
# A custom emoji (the team's), used as a reaction with a system one
body, ctype = multipart({"emoji": json.dumps({"name": "oldparrot", "creator_id": ids["alice"]})},
                        {"image": ("oldparrot.png", png, "image/png")})
_, emoji = call("POST", "/emoji", token=A, raw=body, ctype=ctype)
out["emoji"] = emoji["id"]
for token, uid, name in ((A, ids["alice"], "oldparrot"), (B, ids["bob"], "oldparrot"), (B, ids["bob"], "+1")):
    call("POST", "/reactions", {"user_id": uid, "post_id": P["welcome"], "emoji_name": name}, token=token)
# Pinned, flagged, preferences
call("POST", f"/posts/{P['root']}/pin", token=A)
call("PUT", f"/users/{ids['bob']}/preferences", [
    {"user_id": ids["bob"], "category": "flagged_post", "name": P["attachment"], "value": "true"},
    {"user_id": ids["bob"], "category": "display_settings", "name": "use_military_time", "value": "true"}], token=B)
# A direct message
_, dm = call("POST", "/channels/direct", [ids["alice"], ids["bob"]], token=A)
P["direct"] = post(A, dm["id"], "a direct message from the old days")
out["channels"]["direct"] = dm["id"]
# A bot (5.x: bots need EnableBotAccountCreation), with a post of its own through its token
_, bot = call("POST", "/bots", {"username": "oldbot", "display_name": "Old Bot"}, token=A)
_, tok = call("POST", f"/users/{bot['user_id']}/tokens", {"description": "seed"}, token=A)
call("POST", f"/teams/{team['id']}/members", {"team_id": team["id"], "user_id": bot["user_id"]}, token=A)
call("POST", f"/channels/{chan['town-square']}/members", {"user_id": bot["user_id"]}, token=A)
P["bot"] = post(tok["token"], chan["town-square"], "beep: posted by the old bot")
out["bot"] = bot["user_id"]
print(json.dumps(out))
'''


def seed(target: str, layout: Layout = GUIDE) -> dict:
    """Fill the old server as its users did, and return the ids of what was made."""
    old_cli(target,
            "team create --name staff --display_name Staff",
            *(f"user create --email {u['email']} --username {name} --password '{u['password']}'"
              + (" --system_admin" if u["admin"] else "") for name, u in USERS.items()),
            "team add staff alice bob carol",
            "channel create --team staff --name old-project --display_name 'Old project'",
            "channel create --team staff --name board --display_name Board --private",
            "channel add staff:old-project alice bob",
            "channel add staff:board alice bob", layout=layout)
    made = json.loads(sh(target, f"python3 - '{json.dumps(USERS)}' <<'EOF'\n{SEED}\nEOF").strip().splitlines()[-1])
    # What the old runbook did when a project ended and someone left
    old_cli(target, "channel archive staff:old-project", "user deactivate carol", layout=layout)
    made["listing"] = old_cli(target, "channel list staff", layout=layout)
    return made
