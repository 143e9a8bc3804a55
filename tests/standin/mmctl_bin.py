#!/usr/bin/python3
# STAND-IN for tests: this is NOT mmctl. The `bin/mmctl` of the stand-in release; it
# speaks to the stand-in server over the local-mode socket like `mmctl --local` does.
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


def local_get(path):
    socket_path = os.environ.get("MMCTL_LOCAL_SOCKET_PATH", "/var/tmp/mattermost_local.socket")
    try:
        conn = UnixHTTPConnection(socket_path)
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    except OSError as e:
        sys.exit(f"Error: cannot connect to the local-mode socket {socket_path}: {e}")


def main(argv):
    local = "--local" in argv or os.environ.get("MMCTL_LOCAL") == "true"
    args = [a for a in argv if a not in ("--local", "--json")]
    if args == ["version"]:
        print(f"mmctl:\nVersion:\t{VERSION}\nBuiltDate:\t2026-01-01\nCommitDate:\t2026-01-01")
        return 0
    if not local:
        print("Error: stand-in mmctl only supports --local", file=sys.stderr)
        return 1
    if args == ["system", "status"]:
        status, body = local_get("/api/v4/system/ping?get_server_status=true")
        print(json.dumps(body, indent=2))
        return 0 if status == 200 else 1
    if args == ["system", "version"]:
        _, body = local_get("/api/v4/system/version")
        print(f"Server version {body['version']}")
        return 0
    print(f"Error: stand-in mmctl: unsupported command {' '.join(args)!r}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
