#!/usr/bin/python3
"""STAND-IN upstream for tests: plays releases.mattermost.com, the signing key URL and the
GitHub releases API, which cannot be reached from this machine.

Runs in its own container on the test network (the target downloads from it by name) and
is published on 127.0.0.1 for the workstation side. Serves the folder given as argument:

  /releases/{V}/mattermost-{V}-linux-amd64.tar.gz[.sig|.sha256]   release downloads
  /pubkey.gpg, /other-pubkey.gpg ...                               signing keys
  /api/repos/{owner}/{repo}/releases[?per_page=&page=]             GitHub-shaped listing,
      from github/releases.json, with ETag / If-None-Match (304) and a simulated rate
      limit while github/ratelimited exists (403, X-RateLimit-Remaining: 0, -Reset)
  /api-{NAME}/repos/...                                            the same from github-{NAME}/
      (its own releases.json, else github/'s; its own ratelimited): a test that changes
      what GitHub says does it in its own name, beside the tests that run at the same time
  /unavailable/...                                                 always 503 (a broken mirror)
"""

import hashlib
import json
import sys
import time
import urllib.parse
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()


class Handler(SimpleHTTPRequestHandler):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, directory=str(ROOT), **kwargs)

    def log_message(self, fmt, *args):
        sys.stderr.write(f"{self.address_string()} {fmt % args}\n")

    def send_json(self, code, payload, headers=()):
        body = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers:
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path.startswith("/unavailable/"):
            self.send_json(503, {"message": "stand-in mirror is down"})
        elif url.path.startswith("/api") and "/repos/" in url.path and url.path.endswith("/releases"):
            name = url.path.split("/", 2)[1][len("api"):].lstrip("-")
            folder = ROOT / (f"github-{name}" if name and name.replace("-", "").isalnum() else "github")
            self.github_releases(url, folder)
        else:
            super().do_GET()

    def github_releases(self, url, folder):
        reset = str(int(time.time()) + 1800)
        if (folder / "ratelimited").exists():
            self.send_json(403, {"message": "API rate limit exceeded for 127.0.0.1."},
                           [("X-RateLimit-Limit", "60"), ("X-RateLimit-Remaining", "0"),
                            ("X-RateLimit-Reset", reset)])
            return
        try:
            listing = folder / "releases.json"
            releases = json.loads((listing if listing.exists() else ROOT / "github" / "releases.json").read_text())
        except OSError:
            releases = []
        query = dict(urllib.parse.parse_qsl(url.query))
        per_page = min(int(query.get("per_page", 30)), 100)
        page = int(query.get("page", 1))
        chunk = releases[(page - 1) * per_page: page * per_page]
        etag = f'"{hashlib.sha1(json.dumps(chunk).encode()).hexdigest()}"'
        headers = [("ETag", etag), ("X-RateLimit-Limit", "60"),
                   ("X-RateLimit-Remaining", "59"), ("X-RateLimit-Reset", reset)]
        if page * per_page < len(releases):
            nxt = f"<http://{self.headers.get('Host')}{url.path}?per_page={per_page}&page={page + 1}>; rel=\"next\""
            headers.append(("Link", nxt))
        if self.headers.get("If-None-Match") == etag:
            self.send_response(304)
            for key, value in headers:
                self.send_header(key, value)
            self.end_headers()
            return
        self.send_json(200, chunk, headers)


if __name__ == "__main__":
    ThreadingHTTPServer(("0.0.0.0", 8080), Handler).serve_forever()
