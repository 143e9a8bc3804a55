"""Mattermost's releases as GitHub lists them, read on the workstation with `requests`.

`GET {github_api_url}/repos/{repository}/releases?per_page=100` (paged), with the
`GITHUB_TOKEN` from the environment when present, answers cached on the workstation with
their ETag (a 304 costs nothing to parse). A rate limit, a refusal or no network raise
ReleaseLookupError with a sentence the operator can act on; the caller then falls back
only to a version pinned in the settings - never to a stale answer.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = ROOT / ".cache" / "github"
MAX_PAGES = 5  # 500 releases: years of Mattermost history, and a bound on the loop


class ReleaseLookupError(Exception):
    """The release list could not be read; the message says why and what to do."""


def rate_limit_message(headers, now: float | None = None) -> str:
    reset = headers.get("X-RateLimit-Reset")
    when = ""
    if reset and reset.isdigit():
        minutes = max(0, int(reset) - int(now if now is not None else time.time())) // 60
        when = f" It resets in {minutes} min ({time.strftime('%H:%M UTC', time.gmtime(int(reset)))})."
    return ("the GitHub API rate limit is used up." + when +
            " Set GITHUB_TOKEN in the environment to raise the limit.")


def _cache_file(url: str) -> Path:
    return CACHE_DIR / (hashlib.sha256(url.encode()).hexdigest()[:24] + ".json")


def _get_page(session: requests.Session, url: str, timeout: float) -> tuple[list, str | None]:
    cache = _cache_file(url)
    cached = json.loads(cache.read_text()) if cache.exists() else None
    headers = {"Accept": "application/vnd.github+json", "User-Agent": "mattermost-deploy"}
    if cached and cached.get("etag"):
        headers["If-None-Match"] = cached["etag"]
    try:
        response = session.get(url, headers=headers, timeout=timeout)
    except requests.RequestException as e:
        raise ReleaseLookupError(f"cannot reach {url.split('/repos/')[0]} ({type(e).__name__}): "
                                 "no network or the API is down") from None
    if response.status_code == 304 and cached:
        return cached["body"], cached.get("next")
    if response.status_code in (403, 429) and (
            response.headers.get("X-RateLimit-Remaining") == "0" or response.status_code == 429):
        raise ReleaseLookupError(rate_limit_message(response.headers))
    if response.status_code != 200:
        raise ReleaseLookupError(f"GitHub answered HTTP {response.status_code} for {url}: "
                                 f"{response.text[:200]}")
    try:
        body = response.json()
    except ValueError:
        raise ReleaseLookupError(f"{url} did not answer JSON") from None
    if not isinstance(body, list):
        raise ReleaseLookupError(f"{url} did not answer a release list")
    match = re.search(r'<([^>]+)>;\s*rel="next"', response.headers.get("Link", ""))
    next_url = match.group(1) if match else None
    if next_url and next_url.startswith("/"):
        base = re.match(r"^(https?://[^/]+)", url)
        next_url = (base.group(1) if base else "") + next_url
    if response.headers.get("ETag"):
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({"etag": response.headers["ETag"], "body": body, "next": next_url}))
    return body, next_url


def fetch_releases(api_url: str, repository: str = "mattermost/mattermost", timeout: float = 15) -> list[dict]:
    """Every release GitHub lists for `repository` (drafts and prereleases included)."""
    session = requests.Session()
    token = os.environ.get("GITHUB_TOKEN")
    if token:
        session.headers["Authorization"] = f"Bearer {token}"
    url: str | None = f"{api_url.rstrip('/')}/repos/{repository}/releases?per_page=100"
    releases: list[dict] = []
    for _ in range(MAX_PAGES):
        if not url:
            break
        page, url = _get_page(session, url, timeout)
        releases.extend(page)
    return releases
