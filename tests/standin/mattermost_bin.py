#!/usr/bin/python3
# STAND-IN for tests: this is NOT Mattermost. It is the `bin/mattermost` of the stand-in
# release that tests/standin/release.py builds, so the deploy can be exercised on a
# machine without internet. It follows the real formats from the reference: the
# `version` output, config loading (MM_CONFIG, MM_* overrides, defaults written back),
# ListenAddress, /api/v4/system/ping with X-Version-Id, schema migrations recorded in
# the real PostgreSQL database, the local-mode socket and sd_notify (Type=notify).
import hashlib
import json
import os
import random
import re
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = "@VERSION@"
BUILD_NUMBER = "@BUILD_NUMBER@"
# "ok" for a working release; "broken" runs its migration and then fails to start.
BEHAVIOUR = "@BEHAVIOUR@"
HERE = os.path.dirname(os.path.realpath(__file__))
# Compiled-in defaults, as the real binary has them (the builder fills this in).
DEFAULTS = json.loads(r"""@DEFAULTS@""")


def schema_version(version):
    major, minor, patch = (int(x) for x in version.split("."))
    return major * 10000 + minor * 100 + patch


def log(level, msg, **fields):
    line = {"timestamp": time.strftime("%Y-%m-%d %H:%M:%S.000 Z", time.gmtime()),
            "level": level, "msg": msg, **fields}
    text = json.dumps(line)
    print(text, flush=True)
    if LOG_FILE:
        with open(LOG_FILE, "a") as f:
            f.write(text + "\n")


LOG_FILE = None


# ---------------------------------------------------------------- configuration

def config_path():
    if os.environ.get("MM_CONFIG"):
        return os.environ["MM_CONFIG"]
    for candidate in ("config/config.json", os.path.join(HERE, "..", "config", "config.json")):
        if os.path.exists(candidate):
            return candidate
    return "config/config.json"


def fill_defaults(config, defaults):
    changed = False
    for section, values in defaults.items():
        if section not in config:
            config[section] = values
            changed = True
        elif isinstance(values, dict) and isinstance(config[section], dict):
            for key, value in values.items():
                if key not in config[section]:
                    config[section][key] = value
                    changed = True
    return changed


def load_config(write_back):
    path = config_path()
    with open(path) as f:
        config = json.load(f)
    # Like the real server: missing settings get their defaults and the file is saved.
    if fill_defaults(config, json.loads(json.dumps(DEFAULTS))) and write_back:
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(config, f, indent=4)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    # MM_<SECTION>_<KEY> overrides, read-only in the console.
    for section, values in config.items():
        if not isinstance(values, dict):
            continue
        for key in values:
            env = os.environ.get(f"MM_{section.upper()}_{key.upper()}")
            if env is not None:
                current = values[key]
                if isinstance(current, bool):
                    env = env.lower() == "true"
                elif isinstance(current, int):
                    env = int(env)
                values[key] = env
    return path, config


def validate(config):
    errors = []
    if int(VERSION.split(".")[0]) >= 11 and config["TeamSettings"].get(
            "ExperimentalViewArchivedChannels") is False:
        errors.append("TeamSettings.ExperimentalViewArchivedChannels=false is no longer supported")
    if config["SqlSettings"].get("DriverName") != "postgres":
        errors.append("SqlSettings.DriverName must be postgres")
    return errors


# ---------------------------------------------------------------- database (real PostgreSQL via psql)

def psql(datasource, sql):
    url = urllib.parse.urlsplit(datasource)
    params = dict(urllib.parse.parse_qsl(url.query))
    env = dict(os.environ,
               PGHOST=url.hostname or "localhost", PGPORT=str(url.port or 5432),
               PGUSER=urllib.parse.unquote(url.username or ""),
               PGPASSWORD=urllib.parse.unquote(url.password or ""),
               PGDATABASE=url.path.lstrip("/"),
               PGSSLMODE=params.get("sslmode", "prefer"),
               PGCONNECT_TIMEOUT=params.get("connect_timeout", "10"))
    result = subprocess.run(["psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-c", sql],
                            env=env, capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise RuntimeError(result.stderr.strip() or "psql failed")
    return result.stdout.strip()


SCHEMA = """
CREATE TABLE IF NOT EXISTS systems (name varchar(64) PRIMARY KEY, value varchar(1024));
CREATE TABLE IF NOT EXISTS db_migrations (version bigint PRIMARY KEY, name varchar(64) NOT NULL);
CREATE TABLE IF NOT EXISTS posts (id varchar(26) PRIMARY KEY, createat bigint, updateat bigint,
  deleteat bigint DEFAULT 0, userid varchar(26), channelid varchar(26), message varchar(65535));
CREATE TABLE IF NOT EXISTS teams (id varchar(26) PRIMARY KEY, createat bigint, updateat bigint,
  deleteat bigint DEFAULT 0, displayname varchar(64), name varchar(64) UNIQUE, type varchar(1) DEFAULT 'O');
CREATE TABLE IF NOT EXISTS channels (id varchar(26) PRIMARY KEY, createat bigint, updateat bigint,
  deleteat bigint DEFAULT 0, teamid varchar(26), type varchar(1), displayname varchar(64), name varchar(64),
  header varchar(1024) DEFAULT '', purpose varchar(250) DEFAULT '', lastpostat bigint DEFAULT 0,
  totalmsgcount bigint DEFAULT 0, creatorid varchar(26) DEFAULT '', UNIQUE (teamid, name));
CREATE TABLE IF NOT EXISTS users (id varchar(26) PRIMARY KEY, createat bigint, updateat bigint,
  deleteat bigint DEFAULT 0, username varchar(64) UNIQUE, email varchar(128) UNIQUE, firstname varchar(64) DEFAULT '',
  lastname varchar(64) DEFAULT '', nickname varchar(64) DEFAULT '', roles varchar(256) DEFAULT 'system_user',
  password varchar(128) DEFAULT '', lastactivityat bigint DEFAULT 0, isbot boolean DEFAULT false);
CREATE TABLE IF NOT EXISTS channelmembers (channelid varchar(26), userid varchar(26), PRIMARY KEY (channelid, userid));
CREATE TABLE IF NOT EXISTS sessions (id varchar(26) PRIMARY KEY, token varchar(26), userid varchar(26), createat bigint);
CREATE TABLE IF NOT EXISTS useraccesstokens (id varchar(26) PRIMARY KEY, token varchar(26) UNIQUE, userid varchar(26),
  description varchar(512), isactive boolean DEFAULT true);
CREATE TABLE IF NOT EXISTS emoji (id varchar(26) PRIMARY KEY, createat bigint, updateat bigint, deleteat bigint DEFAULT 0,
  creatorid varchar(26), name varchar(64));
CREATE TABLE IF NOT EXISTS fileinfo (id varchar(26) PRIMARY KEY, creatorid varchar(26), postid varchar(26),
  createat bigint, deleteat bigint DEFAULT 0, path varchar(512), name varchar(256), size bigint);
CREATE TABLE IF NOT EXISTS standin_sent_emails (createat bigint, email varchar(128), kind varchar(64));
"""


def migrate(datasource):
    current = psql(datasource, SCHEMA + "SELECT coalesce(max(version), 0) FROM db_migrations;")
    current = int(current.splitlines()[-1] or 0)
    mine = schema_version(VERSION)
    if current > mine:
        raise RuntimeError(
            f"the database schema ({current}) is newer than this server ({mine}): "
            "restore the database backup taken before the upgrade")
    psql(datasource,
         f"INSERT INTO db_migrations VALUES ({mine}, 'standin_{VERSION}') ON CONFLICT DO NOTHING;"
         f"INSERT INTO systems VALUES ('Version', '{VERSION}') "
         "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value;")
    return current, mine


# ---------------------------------------------------------------- the v4 API subset housekeeping uses

def new_id():
    return "".join(random.choice("abcdefghijkmnopqrstuwxyz13456789") for _ in range(26))


def now_ms():
    return int(time.time() * 1000)


def lit(value):
    """SQL literal (the stand-in quotes values itself; psql has no bind parameters here)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(int(value))
    return "'" + str(value).replace("'", "''") + "'"


def rows(ds, sql):
    out = psql(ds, f"SELECT coalesce(json_agg(t), '[]'::json) FROM ({sql}) t;")
    return json.loads(out or "[]")


TEAM = ("SELECT id, createat AS create_at, updateat AS update_at, deleteat AS delete_at, displayname AS display_name, "
        "name, '' AS description, '' AS email, type, '' AS company_name, '' AS allowed_domains, '' AS invite_id, "
        "false AS allow_open_invite, NULL AS scheme_id, NULL AS group_constrained, NULL AS policy_id FROM teams")
CHANNEL = ("SELECT id, createat AS create_at, updateat AS update_at, deleteat AS delete_at, teamid AS team_id, type, "
           "displayname AS display_name, name, header, purpose, lastpostat AS last_post_at, "
           "totalmsgcount AS total_msg_count, 0 AS extra_update_at, creatorid AS creator_id, NULL AS scheme_id, "
           "NULL AS props, NULL AS group_constrained, NULL AS shared, totalmsgcount AS total_msg_count_root, "
           "NULL AS policy_id, lastpostat AS last_root_post_at FROM channels")
USER = ("SELECT id, createat AS create_at, updateat AS update_at, deleteat AS delete_at, username, '' AS auth_data, "
        "'' AS auth_service, email, true AS email_verified, nickname, firstname AS first_name, lastname AS last_name, "
        "'' AS position, roles, 0 AS last_password_update, 'en' AS locale, isbot AS is_bot, "
        "lastactivityat AS last_activity_at FROM users")


class ApiError(Exception):
    def __init__(self, code, error_id, message):
        super().__init__(message)
        self.code, self.error_id, self.message = code, error_id, message


def api(config, method, path, query, body, local, token):
    """The stand-in's answers to the API paths mmctl --local and the emoji calls use."""
    ds = config["SqlSettings"]["DataSource"]
    parts = [p for p in path.split("/") if p][2:]  # after /api/v4
    if not local:
        if not token or not rows(ds, f"SELECT 1 FROM useraccesstokens WHERE token = {lit(token)} AND isactive"):
            raise ApiError(401, "api.context.session_expired.app_error", "Invalid or expired session")
    if method == "GET" and parts == ["teams"]:
        return rows(ds, TEAM + " ORDER BY name")
    if method == "POST" and parts == ["teams"]:
        tid = new_id()
        psql(ds, f"INSERT INTO teams VALUES ({lit(tid)}, {now_ms()}, {now_ms()}, 0, {lit(body['display_name'])}, "
                 f"{lit(body['name'])}, {lit(body.get('type', 'O'))});")
        return rows(ds, TEAM + f" WHERE id = {lit(tid)}")[0]
    if method == "GET" and len(parts) == 3 and parts[:2] == ["teams", "name"]:
        found = rows(ds, TEAM + f" WHERE name = {lit(parts[2])}")
        if not found:
            raise ApiError(404, "app.team.get_by_name.missing.app_error", "Unable to find the team.")
        return found[0]
    if method == "GET" and len(parts) == 3 and parts[0] == "teams" and parts[2] == "channels":
        return rows(ds, CHANNEL + f" WHERE teamid = {lit(parts[1])} ORDER BY name")
    if method == "POST" and parts == ["channels"]:
        cid = new_id()
        psql(ds, f"INSERT INTO channels (id, createat, updateat, teamid, type, displayname, name) VALUES ({lit(cid)}, "
                 f"{now_ms()}, {now_ms()}, {lit(body['team_id'])}, {lit(body.get('type', 'O'))}, "
                 f"{lit(body['display_name'])}, {lit(body['name'])});")
        return rows(ds, CHANNEL + f" WHERE id = {lit(cid)}")[0]
    if len(parts) >= 2 and parts[0] == "channels":
        cid = parts[1]
        if method == "GET" and parts[2:] == ["stats"]:
            count = psql(ds, f"SELECT count(*) FROM channelmembers WHERE channelid = {lit(cid)};")
            return {"channel_id": cid, "member_count": int(count), "guest_count": 0, "pinnedpost_count": 0}
        if method == "POST" and parts[2:] == ["members"]:
            psql(ds, f"INSERT INTO channelmembers VALUES ({lit(cid)}, {lit(body['user_id'])}) ON CONFLICT DO NOTHING;")
            return {"channel_id": cid, "user_id": body["user_id"]}
        if method == "DELETE" and len(parts) == 2:
            if query.get("permanent") == "true":
                psql(ds, f"DELETE FROM posts WHERE channelid = {lit(cid)}; DELETE FROM channelmembers WHERE "
                         f"channelid = {lit(cid)}; DELETE FROM channels WHERE id = {lit(cid)};")
            else:
                psql(ds, f"UPDATE channels SET deleteat = {now_ms()}, updateat = {now_ms()} WHERE id = {lit(cid)};")
            return {"status": "OK"}
    if method == "GET" and parts == ["users"]:
        return rows(ds, USER + " ORDER BY username")
    if method == "POST" and parts == ["users"]:
        uid = new_id()
        psql(ds, f"INSERT INTO users (id, createat, updateat, username, email, firstname, lastname, password, isbot) "
                 f"VALUES ({lit(uid)}, {now_ms()}, {now_ms()}, {lit(body['username'])}, {lit(body['email'])}, "
                 f"{lit(body.get('first_name', ''))}, {lit(body.get('last_name', ''))}, "
                 f"{lit(hashlib.sha256(body.get('password', '').encode()).hexdigest())}, {lit(body.get('is_bot', False))});")
        return rows(ds, USER + f" WHERE id = {lit(uid)}")[0]
    if method == "POST" and parts == ["users", "password", "reset", "send"]:
        psql(ds, f"INSERT INTO standin_sent_emails VALUES ({now_ms()}, {lit(body['email'])}, 'password_reset');")
        return {"status": "OK"}
    if len(parts) >= 2 and parts[0] == "users":
        uid = parts[1]
        if method == "PUT" and parts[2:] == ["active"]:
            at = 0 if body.get("active") else now_ms()
            psql(ds, f"UPDATE users SET deleteat = {at}, updateat = {now_ms()} WHERE id = {lit(uid)};"
                     + ("" if body.get("active") else f" DELETE FROM sessions WHERE userid = {lit(uid)};"))
            return {"status": "OK"}
        if method == "POST" and parts[2:] == ["sessions"]:  # stand-in only: a login for the tests
            psql(ds, f"INSERT INTO sessions VALUES ({lit(new_id())}, {lit(new_id())}, {lit(uid)}, {now_ms()});")
            return {"status": "OK"}
        if method == "POST" and parts[2:] == ["tokens"]:
            token = new_id()
            psql(ds, f"INSERT INTO useraccesstokens VALUES ({lit(new_id())}, {lit(token)}, {lit(uid)}, "
                     f"{lit(body.get('description', ''))}, true);")
            return {"id": new_id(), "token": token, "user_id": uid, "description": body.get("description", "")}
        if method == "DELETE" and len(parts) == 2 and query.get("permanent") == "true":
            if not local and not config["ServiceSettings"].get("EnableAPIUserDeletion"):
                raise ApiError(401, "api.user.delete_user.not_enabled.app_error", "Permanent user deletion is disabled")
            psql(ds, f"DELETE FROM posts WHERE userid = {lit(uid)}; DELETE FROM channelmembers WHERE userid = {lit(uid)}; "
                     f"DELETE FROM sessions WHERE userid = {lit(uid)}; DELETE FROM useraccesstokens WHERE userid = {lit(uid)}; "
                     f"DELETE FROM users WHERE id = {lit(uid)};")
            return {"status": "OK"}
    if method == "POST" and parts == ["bots"]:
        return api(config, "POST", "/api/v4/users", {}, {"username": body["username"], "is_bot": True,
                   "email": f"{body['username']}@localhost", "first_name": body.get("display_name", "")}, True, None)
    if method == "POST" and parts == ["posts"]:
        pid, at = new_id(), int(body.get("create_at") or now_ms())  # create_at: a stand-in convenience for tests
        psql(ds, f"INSERT INTO posts (id, createat, updateat, userid, channelid, message) VALUES ({lit(pid)}, {at}, {at}, "
                 f"{lit(body['user_id'])}, {lit(body['channel_id'])}, {lit(body['message'])}); UPDATE channels SET "
                 f"lastpostat = greatest(lastpostat, {at}), totalmsgcount = totalmsgcount + 1 "
                 f"WHERE id = {lit(body['channel_id'])};")
        for name in body.get("file_names", []):  # an attachment, stored as the real file store does
            fid = new_id()
            day = time.strftime("%Y%m%d", time.gmtime(at / 1000))
            rel = f"{day}/teams/noteam/channels/{body['channel_id']}/users/{body['user_id']}/{fid}/{name}"
            full = os.path.join(config["FileSettings"]["Directory"], rel)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "w") as f:
                f.write(f"attachment of post {pid}\n")
            psql(ds, f"INSERT INTO fileinfo VALUES ({lit(fid)}, {lit(body['user_id'])}, {lit(pid)}, {at}, 0, {lit(rel)}, "
                     f"{lit(name)}, 32);")
        return {"id": pid, "create_at": at, "channel_id": body["channel_id"], "user_id": body["user_id"]}
    if method == "GET" and parts == ["emoji"]:
        return rows(ds, "SELECT id, createat AS create_at, updateat AS update_at, deleteat AS delete_at, "
                        "creatorid AS creator_id, name FROM emoji WHERE deleteat = 0 ORDER BY name")
    if method == "POST" and parts == ["emoji"]:
        return create_emoji(config, body)
    if method == "POST" and parts == ["exports"]:  # stand-in for the export job mmctl starts
        return create_export(config)
    if method == "GET" and parts == ["exports"]:
        folder = os.path.join(config["FileSettings"]["Directory"], "export")
        return sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    raise ApiError(404, "api.context.404.app_error", f"no such API in the stand-in: {method} {path}")


EMOJI_NAME = re.compile(r"^[a-z0-9_+-]{1,64}$")
MAX_EMOJI_BYTES = 512 * 1024


def create_emoji(config, body):
    ds = config["SqlSettings"]["DataSource"]
    meta, image = body["emoji"], body["image"]
    if not config["ServiceSettings"].get("EnableCustomEmoji"):
        raise ApiError(501, "api.emoji.disabled.app_error", "Custom emoji have been disabled by the system admin.")
    if not EMOJI_NAME.match(meta.get("name", "")):
        raise ApiError(400, "model.emoji.name.app_error", "Name must be 1 to 64 lowercase alphanumeric characters.")
    if len(image) > MAX_EMOJI_BYTES:
        raise ApiError(413, "api.emoji.create.too_large.app_error",
                       "Unable to create emoji. Image must be less than 512 KiB in size.")
    if not (image.startswith(b"\x89PNG") or image.startswith(b"GIF8") or image.startswith(b"\xff\xd8")):
        raise ApiError(400, "api.emoji.upload.image.app_error",
                       "Unable to create emoji. File must be a PNG, JPEG, or GIF.")
    if rows(ds, f"SELECT 1 FROM emoji WHERE name = {lit(meta['name'])} AND deleteat = 0"):
        raise ApiError(400, "api.emoji.create.duplicate.app_error",
                       "Unable to create emoji. Another emoji with the same name exists.")
    eid = new_id()
    folder = os.path.join(config["FileSettings"]["Directory"], "emoji", eid)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "image"), "wb") as f:
        f.write(image)
    psql(ds, f"INSERT INTO emoji VALUES ({lit(eid)}, {now_ms()}, {now_ms()}, 0, {lit(meta.get('creator_id', ''))}, "
             f"{lit(meta['name'])});")
    return {"id": eid, "name": meta["name"], "creator_id": meta.get("creator_id", "")}


def create_export(config):
    """Mattermost's bulk export format: a zip with import.jsonl (version, team, channel,
    user and post lines) and the attachments."""
    import zipfile

    ds = config["SqlSettings"]["DataSource"]
    folder = os.path.join(config["FileSettings"]["Directory"], "export")
    os.makedirs(folder, exist_ok=True)
    name = f"{int(time.time())}_{new_id()}_export.zip"
    lines = [{"type": "version", "version": 1, "info": {"generator": "standin", "version": VERSION}}]
    lines += [{"type": "team", "team": {"name": t["name"], "display_name": t["display_name"], "type": t["type"]}}
              for t in rows(ds, "SELECT name, displayname AS display_name, type FROM teams")]
    lines += [{"type": "user", "user": u} for u in rows(ds, "SELECT username, email FROM users WHERE NOT isbot")]
    lines += [{"type": "post", "post": p} for p in rows(ds, "SELECT u.username AS user, c.name AS channel, p.message, "
              "p.createat AS create_at FROM posts p JOIN users u ON u.id = p.userid JOIN channels c ON c.id = p.channelid")]
    with zipfile.ZipFile(os.path.join(folder, name), "w") as z:
        z.writestr("import.jsonl", "\n".join(json.dumps(line) for line in lines) + "\n")
    return {"id": new_id(), "type": "export_process", "status": "success", "data": {"export_file": name}}


# ---------------------------------------------------------------- server

def version_header(config):
    digest = hashlib.md5(json.dumps(config["ServiceSettings"].get("SiteURL", "")).encode()).hexdigest()
    return f"{VERSION}.{BUILD_NUMBER}.{digest}.false"


def make_handler(config, local=False):
    datasource = config["SqlSettings"]["DataSource"]
    files_dir = config["FileSettings"]["Directory"]

    class Handler(BaseHTTPRequestHandler):
        server_version = "standin-mattermost"

        def log_message(self, fmt, *args):
            pass

        def reply(self, code, body, ctype="application/json"):
            data = body.encode() if isinstance(body, str) else body
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("X-Version-Id", version_header(config))
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query))
            if url.path == "/api/v4/system/ping":
                body = {"status": "OK", "ActiveSearchBackend": "database",
                        "AndroidLatestVersion": "", "IosLatestVersion": ""}
                code = 200
                if query.get("get_server_status") == "true":
                    try:
                        psql(datasource, "SELECT 1;")
                        body["database_status"] = "OK"
                    except Exception:
                        body["database_status"] = "UNHEALTHY"
                    ok = os.access(files_dir, os.W_OK)
                    body["filestore_status"] = "OK" if ok else "UNHEALTHY"
                    if "UNHEALTHY" in (body["database_status"], body["filestore_status"]):
                        body["status"] = "UNHEALTHY"
                        code = 500
                self.reply(code, json.dumps(body))
            elif url.path == "/api/v4/system/version":
                self.reply(200, json.dumps({"version": VERSION}))
            elif url.path.startswith("/api/v4/"):
                self.call_api("GET", url, query, None)
            elif url.path in ("/", "/login"):
                with open(os.path.join(HERE, "..", "client", "root.html"), "rb") as f:
                    self.reply(200, f.read(), "text/html")
            else:
                self.reply(404, json.dumps({"id": "api.context.404.app_error",
                                            "status_code": 404}))

        def call_api(self, method, url, query, body):
            auth = self.headers.get("Authorization", "")
            token = auth[7:] if auth.startswith("Bearer ") else None
            try:
                self.reply(200 if method != "POST" else 201, json.dumps(api(config, method, url.path, query, body,
                                                                         local, token)))
            except ApiError as e:
                self.reply(e.code, json.dumps({"id": e.error_id, "message": e.message, "status_code": e.code}))
            except Exception as e:
                self.reply(500, json.dumps({"id": "standin.error", "message": str(e), "status_code": 500}))

        def body(self):
            data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            ctype = self.headers.get("Content-Type", "")
            if ctype.startswith("multipart/form-data"):
                return parse_multipart(ctype, data)
            return json.loads(data or b"{}")

        def do_POST(self):
            url = urllib.parse.urlsplit(self.path)
            self.call_api("POST", url, dict(urllib.parse.parse_qsl(url.query)), self.body())

        def do_PUT(self):
            url = urllib.parse.urlsplit(self.path)
            self.call_api("PUT", url, dict(urllib.parse.parse_qsl(url.query)), self.body())

        def do_DELETE(self):
            url = urllib.parse.urlsplit(self.path)
            self.call_api("DELETE", url, dict(urllib.parse.parse_qsl(url.query)), None)

    return Handler


def parse_multipart(ctype, data):
    """The emoji upload's two parts: `emoji` (JSON) and `image` (the file)."""
    boundary = ctype.split("boundary=", 1)[1].strip('"').encode()
    out = {}
    for part in data.split(b"--" + boundary):
        head, _, content = part.partition(b"\r\n\r\n")
        match = re.search(rb'name="([^"]+)"', head)
        if match:
            value = content[:-2] if content.endswith(b"\r\n") else content
            name = match.group(1).decode()
            out[name] = json.loads(value) if name == "emoji" else value
    return out


class UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self):
        request, _ = super().get_request()
        return request, ("local", 0)


def sd_notify(message):
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.connect(address)
        s.sendall(message.encode())


def serve():
    global LOG_FILE
    path, config = load_config(write_back=True)
    log_dir = config["LogSettings"].get("FileLocation") or "logs"
    if config["LogSettings"].get("EnableFile", True):
        os.makedirs(log_dir, exist_ok=True)  # like the real server, which creates logs/
        LOG_FILE = os.path.join(log_dir, "mattermost.log")
    log("info", "Server is initializing...", version=VERSION, config=path)
    errors = validate(config)
    if errors:
        log("error", "invalid configuration", errors=errors)
        return 1
    try:
        before, after = migrate(config["SqlSettings"]["DataSource"])
    except Exception as e:
        log("error", "Failed to run database migrations", error=str(e))
        return 1
    log("info", "database schema", before=before, after=after)
    if BEHAVIOUR == "broken":
        log("error", "stand-in broken release: failing after its migration")
        return 1
    os.makedirs(config["FileSettings"]["Directory"], exist_ok=True)

    host, _, port = config["ServiceSettings"]["ListenAddress"].rpartition(":")
    http = ThreadingHTTPServer((host, int(port)), make_handler(config))
    servers = [http]
    if config["ServiceSettings"].get("EnableLocalMode"):
        sock = config["ServiceSettings"]["LocalModeSocketLocation"]
        if os.path.exists(sock):
            os.unlink(sock)
        old = os.umask(0o177)
        local = UnixHTTPServer(sock, make_handler(config, local=True))
        os.umask(old)
        os.chmod(sock, 0o600)
        servers.append(local)
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    log("info", "Server is listening", address=config["ServiceSettings"]["ListenAddress"])
    sd_notify("READY=1\nSTATUS=Serving")
    stop.wait()
    sd_notify("STOPPING=1")
    for s in servers:
        s.shutdown()
    log("info", "Server stopped")
    return 0


def print_version():
    load_config(write_back=False)
    print(f"Version: {VERSION}")
    print(f"Build Number: {BUILD_NUMBER}")
    print("Build Date: Thu Jan  1 00:00:00 UTC 2026")
    print(f"Build Hash: standin{schema_version(VERSION)}")
    print("Build Hash Enterprise: none")
    print("Build Enterprise Ready: false")
    return 0


def main(argv):
    if not argv or argv[0] == "server":
        return serve()
    if argv[0] == "version":
        return print_version()
    if argv[:2] == ["config", "validate"]:
        _, config = load_config(write_back=False)
        errors = validate(config)
        for e in errors:
            print(f"Error: {e}", file=sys.stderr)
        if not errors:
            print("The document is valid")
        return 1 if errors else 0
    print(f"stand-in mattermost: unsupported command {' '.join(argv)!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
