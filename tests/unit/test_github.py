"""The release lookup against a GitHub-shaped API on loopback (the stand-in upstream's
handler, run in-process): paging, ETag cache, token, rate limit, no network."""

import json
import threading
from http.server import ThreadingHTTPServer

import pytest

from facts import github
from tests.standin import build, upstream


@pytest.fixture()
def api(tmp_path, monkeypatch):
    """A stand-in GitHub API serving `releases`; records what each request carried."""
    root = tmp_path / "upstream"
    monkeypatch.setattr(upstream, "ROOT", root)
    monkeypatch.setattr(github, "CACHE_DIR", tmp_path / "cache")
    seen = []

    class Recording(upstream.Handler):
        def send_response(self, code, message=None):
            seen.append({"code": code, "auth": self.headers.get("Authorization"),
                         "etag": self.headers.get("If-None-Match"), "path": self.path})
            super().send_response(code, message)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Recording)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def publish(tags):
        build.publish_github_releases(root, [build.github_release(t, day=i) for i, t in enumerate(tags)])

    yield {"url": f"http://127.0.0.1:{server.server_port}/api", "root": root, "seen": seen, "publish": publish}
    server.shutdown()


def test_all_pages_are_read(api):
    tags = [f"v10.{i // 10}.{i % 10}" for i in range(150)]
    api["publish"](tags)
    releases = github.fetch_releases(api["url"])
    assert [r["tag_name"] for r in releases] == tags
    assert len(api["seen"]) == 2 and api["seen"][1]["path"].endswith("page=2")


def test_second_lookup_is_a_conditional_request(api):
    api["publish"](["v11.7.6", "v11.7.5"])
    first = github.fetch_releases(api["url"])
    second = github.fetch_releases(api["url"])
    assert first == second
    assert [s["code"] for s in api["seen"]] == [200, 304]
    assert api["seen"][1]["etag"]


def test_token_is_sent_when_set(api, monkeypatch):
    api["publish"](["v11.7.6"])
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_test_token")
    github.fetch_releases(api["url"])
    assert api["seen"][0]["auth"] == "Bearer ghp_test_token"


def test_rate_limit_says_when_it_resets(api):
    api["publish"](["v11.7.6"])
    (api["root"] / "github" / "ratelimited").write_text("")
    with pytest.raises(github.ReleaseLookupError, match=r"rate limit is used up\. It resets in \d+ min .*GITHUB_TOKEN"):
        github.fetch_releases(api["url"])


def test_no_network_is_named():
    with pytest.raises(github.ReleaseLookupError, match=r"cannot reach http://127.0.0.1:9/api \(ConnectionError\): no network"):
        github.fetch_releases("http://127.0.0.1:9/api", timeout=2)


def test_rate_limit_message_without_reset_header():
    assert github.rate_limit_message({}).startswith("the GitHub API rate limit is used up.")
    assert "resets in 30 min" in github.rate_limit_message({"X-RateLimit-Reset": "1800"}, now=0)


def test_cache_is_not_used_when_the_api_fails(api):
    api["publish"](["v11.7.6"])
    github.fetch_releases(api["url"])
    (api["root"] / "github" / "ratelimited").write_text("")
    with pytest.raises(github.ReleaseLookupError):
        github.fetch_releases(api["url"])
    assert json.loads(next((github.CACHE_DIR).iterdir()).read_text())["body"][0]["tag_name"] == "v11.7.6"
