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


# ---------------------------------------------------------------- server

def version_header(config):
    digest = hashlib.md5(json.dumps(config["ServiceSettings"].get("SiteURL", "")).encode()).hexdigest()
    return f"{VERSION}.{BUILD_NUMBER}.{digest}.false"


def make_handler(config):
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
            elif url.path in ("/", "/login"):
                with open(os.path.join(HERE, "..", "client", "root.html"), "rb") as f:
                    self.reply(200, f.read(), "text/html")
            else:
                self.reply(404, json.dumps({"id": "api.context.404.app_error",
                                            "status_code": 404}))

    return Handler


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
        local = UnixHTTPServer(sock, make_handler(config))
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
