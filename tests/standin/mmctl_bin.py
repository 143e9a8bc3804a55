#!/usr/bin/python3
# STAND-IN for tests: this is NOT mmctl. The `bin/mmctl` of the stand-in release; it
# speaks to the stand-in server over the local-mode socket like `mmctl --local` does,
# with mmctl's command names, arguments and `--json` shapes for the commands the deploy
# uses (team/channel/user lists, archive, delete, deactivate, create, bots, tokens,
# export, config). Data lives in the real PostgreSQL database behind the server.
import http.client
import json
import os
import socket
import sys

VERSION = "@VERSION@"


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost")
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def call(method, path, body=None):
    socket_path = os.environ.get("MMCTL_LOCAL_SOCKET_PATH", "/var/tmp/mattermost_local.socket")
    try:
        conn = UnixHTTPConnection(socket_path)
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        payload = json.loads(response.read() or b"null")
    except OSError as e:
        fail(f"cannot connect to the local-mode socket {socket_path}: {e}")
    if response.status >= 400:
        fail(payload.get("message", f"HTTP {response.status}") if isinstance(payload, dict) else str(payload))
    return response.status, payload


def fail(message):
    print(f"Error: {message}", file=sys.stderr)
    sys.exit(1)


def team_by_name(name):
    return call("GET", f"/api/v4/teams/name/{name}")[1]


def channel_by_ref(ref):
    if ":" not in ref:
        fail(f"channel {ref!r} must be given as TEAM:CHANNEL")
    team_name, name = ref.split(":", 1)
    team = team_by_name(team_name)
    for channel in call("GET", f"/api/v4/teams/{team['id']}/channels")[1]:
        if channel["name"] == name:
            return channel
    fail(f"Unable to find channel '{ref}'")


def user_by_ref(ref):
    for user in call("GET", "/api/v4/users")[1]:
        if ref in (user["username"], user["email"], user["id"]):
            return user
    fail(f"user {ref} not found")


def option(args, name, default=None):
    if name in args:
        i = args.index(name)
        value = args[i + 1]
        del args[i:i + 2]
        return value
    return default


def flag(args, name):
    if name in args:
        args.remove(name)
        return True
    return False


def out(items, as_json, text):
    if as_json:
        print(json.dumps(items))
    else:
        for item in items if isinstance(items, list) else [items]:
            print(text(item))


def main(argv):
    args = list(argv)
    local = flag(args, "--local") or os.environ.get("MMCTL_LOCAL") == "true"
    as_json = flag(args, "--json")
    if args == ["version"]:
        print(f"mmctl:\nVersion:\t{VERSION}\nBuiltDate:\t2026-01-01\nCommitDate:\t2026-01-01")
        return 0
    if not local:
        fail("stand-in mmctl only supports --local")
    cmd = args[:2]
    rest = args[2:]
    if cmd == ["system", "status"]:
        status, body = call("GET", "/api/v4/system/ping?get_server_status=true")
        print(json.dumps(body, indent=2))
    elif cmd == ["system", "version"]:
        print(f"Server version {call('GET', '/api/v4/system/version')[1]['version']}")
    elif cmd == ["team", "list"]:
        out(call("GET", "/api/v4/teams")[1], as_json, lambda t: t["name"] + (" (archived)" if t["delete_at"] else ""))
    elif cmd == ["team", "create"]:
        team = call("POST", "/api/v4/teams", {"name": option(rest, "--name"),
                                              "display_name": option(rest, "--display-name")})[1]
        out(team, as_json, lambda t: f"New team {t['name']} successfully created")
    elif cmd == ["channel", "list"]:
        team = team_by_name(rest[0])
        channels = call("GET", f"/api/v4/teams/{team['id']}/channels")[1]
        out(channels, as_json, lambda c: c["name"] + (" (archived)" if c["delete_at"] else "")
            + (" (private)" if c["type"] == "P" else ""))
    elif cmd == ["channel", "create"]:
        team = team_by_name(option(rest, "--team"))
        channel = call("POST", "/api/v4/channels", {
            "team_id": team["id"], "name": option(rest, "--name"), "display_name": option(rest, "--display-name"),
            "type": "P" if flag(rest, "--private") else "O"})[1]
        out(channel, as_json, lambda c: f"New channel {c['name']} successfully created")
    elif cmd == ["channel", "archive"]:
        for ref in rest:
            call("DELETE", f"/api/v4/channels/{channel_by_ref(ref)['id']}")
    elif cmd == ["channel", "delete"]:
        if not flag(rest, "--confirm"):
            fail("aborted: You did not answer YES exactly, in all capitals")
        for ref in rest:
            call("DELETE", f"/api/v4/channels/{channel_by_ref(ref)['id']}?permanent=true")
    elif cmd == ["channel", "users"] and rest[:1] == ["add"]:
        channel = channel_by_ref(rest[1])
        for ref in rest[2:]:
            call("POST", f"/api/v4/channels/{channel['id']}/members", {"user_id": user_by_ref(ref)["id"]})
    elif cmd == ["user", "list"]:
        flag(rest, "--all")
        out(call("GET", "/api/v4/users")[1], as_json, lambda u: f"{u['id']}: {u['username']} ({u['email']})")
    elif cmd == ["user", "create"]:
        user = call("POST", "/api/v4/users", {
            "username": option(rest, "--username"), "email": option(rest, "--email"),
            "password": option(rest, "--password", ""), "first_name": option(rest, "--firstname", ""),
            "last_name": option(rest, "--lastname", "")})[1]
        out(user, as_json, lambda u: f"Created user {u['username']}")
    elif cmd == ["user", "deactivate"]:
        for ref in rest:
            call("PUT", f"/api/v4/users/{user_by_ref(ref)['id']}/active", {"active": False})
    elif cmd == ["user", "activate"]:
        for ref in rest:
            call("PUT", f"/api/v4/users/{user_by_ref(ref)['id']}/active", {"active": True})
    elif cmd == ["user", "delete"]:
        if not flag(rest, "--confirm"):
            fail("aborted: You did not answer YES exactly, in all capitals")
        for ref in rest:
            call("DELETE", f"/api/v4/users/{user_by_ref(ref)['id']}?permanent=true")
    elif cmd == ["user", "reset-password"]:
        for ref in rest:
            call("POST", "/api/v4/users/password/reset/send", {"email": user_by_ref(ref)["email"]})
    elif cmd == ["bot", "create"]:
        bot = call("POST", "/api/v4/bots", {"username": rest[0], "display_name": option(rest, "--display-name", "")})[1]
        out({"user_id": bot["id"], "username": bot["username"]}, as_json, lambda b: f"Created bot {b['username']}")
    elif cmd == ["token", "generate"]:
        token = call("POST", f"/api/v4/users/{user_by_ref(rest[0])['id']}/tokens", {"description": " ".join(rest[1:])})[1]
        out(token, as_json, lambda t: f"{t['token']}: {t['description']}")
    elif cmd == ["export", "create"]:
        job = call("POST", "/api/v4/exports")[1]
        out(job, as_json, lambda j: f"Export process job successfully created, ID: {j['id']}")
    elif cmd == ["export", "list"]:
        out(call("GET", "/api/v4/exports")[1], as_json, lambda name: name)
    elif cmd == ["post", "create"]:  # mmctl post create TEAM:CHANNEL --message M (stand-in: --user, --create-at)
        channel = channel_by_ref(rest[0])
        body = {"channel_id": channel["id"], "message": option(rest, "--message"),
                "user_id": user_by_ref(option(rest, "--user"))["id"], "create_at": option(rest, "--create-at"),
                "file_names": [n for n in (option(rest, "--attach"),) if n]}
        out(call("POST", "/api/v4/posts", body)[1], as_json, lambda p: p["id"])
    elif cmd == ["user", "login"]:  # stand-in only: give a user a session, for the tests
        call("POST", f"/api/v4/users/{user_by_ref(rest[0])['id']}/sessions", {})
    else:
        fail(f"stand-in mmctl: unsupported command {' '.join(args)!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
