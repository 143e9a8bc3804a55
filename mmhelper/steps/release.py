"""A release: downloaded, verified (checksum when known, signature always, against the pinned
key) and unpacked into its own read-only folder before anything uses it.
"""

import contextlib
import hashlib
import json
import os
import pwd
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

from mmhelper.parts.common import Failure, free_bytes, installed_version, link_release, run


def parse_gpg_status(status_text, pinned_fingerprint):
    """Decide from `gpg --status-fd` output whether a signature is good and made by the
    pinned key. Returns None when good, else the reason as a sentence."""
    pinned = pinned_fingerprint.replace(" ", "").upper()
    tokens = [line.split()[1:] for line in status_text.splitlines() if line.startswith("[GNUPG:] ")]
    kinds = {t[0]: t[1:] for t in tokens if t}
    if "EXPKEYSIG" in kinds:
        return ("the signing key has expired: refresh it (Mattermost extends its expiry; "
                "check mattermost_signing_key_url) - verification is never skipped")
    if "REVKEYSIG" in kinds:
        return "the signing key has been revoked"
    if "EXPSIG" in kinds:
        return "the signature has expired"
    if "BADSIG" in kinds:
        return "BAD signature: the file does not match its signature (corrupt or tampered download)"
    if "ERRSIG" in kinds or "NO_PUBKEY" in kinds:
        return "the signature was not made by the pinned signing key"
    if "VALIDSIG" not in kinds or "GOODSIG" not in kinds:
        return "no valid signature found"
    valid = kinds["VALIDSIG"]
    primary = (valid[9] if len(valid) > 9 else valid[0]).upper()
    if primary != pinned and valid[0].upper() != pinned:
        return f"signed by key {primary}, not by the pinned key {pinned}"
    return None


def check_tar_members(members):
    """Refuse a release whose files would land outside mattermost/ or that holds devices."""
    for m in members:
        name = m.name
        if name.startswith("/") or ".." in name.split("/"):
            raise Failure(f"release archive holds an unsafe path {name!r}: refusing to unpack")
        if not (name == "mattermost" or name.startswith("mattermost/")):
            raise Failure(f"release archive has {name!r} outside mattermost/: not a Mattermost release")
        if not (m.isfile() or m.isdir() or m.issym()):
            raise Failure(f"release archive holds a special file {name!r}: refusing to unpack")
        if m.issym() and (m.linkname.startswith("/") or ".." in m.linkname.split("/")):
            raise Failure(f"release archive holds a link {name!r} pointing outside: refusing")
    if not any(m.name == "mattermost/bin/mattermost" for m in members):
        raise Failure("release archive has no mattermost/bin/mattermost: not a Mattermost release")


def parse_checksum_file(text, filename):
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 1 and re.fullmatch(r"[0-9a-fA-F]{64}", parts[0]):
            return parts[0].lower()
        if len(parts) >= 2 and parts[-1].lstrip("*") == filename:
            return parts[0].lower()
    return None


def download(url, dest, what):
    request = urllib.request.Request(url, headers={"User-Agent": "mattermost-deploy"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response, open(dest, "wb") as f:
            total = int(response.headers.get("Content-Length") or 0)
            done, next_report = 0, 0.25
            while True:
                chunk = response.read(1 << 20)
                if not chunk:
                    break
                f.write(chunk)
                done += len(chunk)
                if total > 10 << 20 and done / total >= next_report:
                    print(f"  {what}: {done * 100 // total}% of {total >> 20} MB", flush=True)
                    next_report += 0.25
            if total and done != total:
                raise Failure(f"download of {url} stopped after {done} of {total} bytes: try again")
    except urllib.error.HTTPError as e:
        if e.code == 404:
            raise Failure(f"{what} not found at {url} (HTTP 404): check mattermost_version "
                          "and mattermost_release_url") from None
        raise Failure(f"download of {url} failed (HTTP {e.code}): the release server or mirror "
                      "has a problem; try again later") from None
    except (urllib.error.URLError, OSError) as e:
        raise Failure(f"cannot download {url} ({getattr(e, 'reason', e)}): check the server's "
                      "network and mattermost_release_url") from None


def fetch_release(spec):
    """Download, verify (checksum when known, signature always) and unpack one release
    into releases_dir/VERSION. Nothing is unpacked before both checks pass; on any
    failure the staging folder is removed and no release folder appears."""
    version, releases_dir = spec["version"], spec["releases_dir"]
    final = os.path.join(releases_dir, version)
    if os.path.isdir(final):
        print(f"release {version} is already unpacked")
        return
    os.makedirs(releases_dir, mode=0o755, exist_ok=True)
    for name in os.listdir(releases_dir):
        if name.startswith(".staging-"):
            shutil.rmtree(os.path.join(releases_dir, name), ignore_errors=True)
    staging = tempfile.mkdtemp(prefix=f".staging-{version}-", dir=releases_dir)
    try:
        _fetch_into(spec, staging)
        os.rename(os.path.join(staging, "mattermost"), final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"release {version} verified and unpacked into {final}")


def _fetch_into(spec, staging):
    version = spec["version"]
    tarball = os.path.join(staging, os.path.basename(urllib.parse.urlsplit(spec["url"]).path))
    sig = tarball + ".sig"

    # Preflight: room for the download and the unpacked copy.
    with contextlib.suppress(OSError, ValueError):
        request = urllib.request.Request(spec["url"], method="HEAD", headers={"User-Agent": "mattermost-deploy"})
        with urllib.request.urlopen(request, timeout=30) as response:
            size = int(response.headers.get("Content-Length") or 0)
            need, have = 3 * size, free_bytes(staging)
            if size and have < need:
                raise Failure(f"not enough free disk in {spec['releases_dir']}: need {need >> 20} MB "
                              f"for release {version}, have {have >> 20} MB; free some space")

    # The signing key: refreshed from its URL, accepted only with the pinned fingerprint.
    gnupg = os.path.join(staging, "gnupg")
    os.mkdir(gnupg, 0o700)
    key_file = os.path.join(staging, "signing-key.asc")
    cached_key = spec.get("key_cache")
    try:
        download(spec["key_url"], key_file, "signing key")
    except Failure as e:
        if not (cached_key and os.path.exists(cached_key)):
            raise
        print(f"  warning: {e}; using the cached signing key", flush=True)
        shutil.copyfile(cached_key, key_file)
    gpg = ["gpg", "--homedir", gnupg, "--batch", "--no-tty", "--no-autostart"]
    run(gpg + ["--import", key_file])
    listing = run(gpg + ["--with-colons", "--fingerprint"]).stdout
    fingerprints = [line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:")]
    pinned = spec["fingerprint"].replace(" ", "").upper()
    if pinned not in (f.upper() for f in fingerprints):
        raise Failure(f"the key at {spec['key_url']} is not the pinned signing key {pinned} "
                      f"(it has {', '.join(fingerprints) or 'no keys'}): check mattermost_signing_key_url")
    if cached_key:
        shutil.copyfile(key_file, cached_key)

    print(f"  downloading Mattermost {version} from {spec['url']}", flush=True)
    download(spec["url"], tarball, f"release {version}")
    download(spec["sig_url"], sig, f"signature of release {version}")

    h = hashlib.sha256()
    with open(tarball, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    actual = h.hexdigest()
    expected = spec.get("sha256")
    if not expected and spec.get("checksum_url"):
        checksum_file = tarball + ".sha256"
        download(spec["checksum_url"], checksum_file, f"checksum of release {version}")
        with open(checksum_file) as f:
            expected = parse_checksum_file(f.read(), os.path.basename(tarball))
        if not expected:
            raise Failure(f"{spec['checksum_url']} has no SHA-256 for {os.path.basename(tarball)}")
    if expected and expected.lower() != actual:
        raise Failure(f"SHA-256 mismatch for {os.path.basename(tarball)}: expected {expected}, got "
                      f"{actual}; the download is corrupt or tampered - nothing was installed")
    print(f"  SHA-256 {actual} {'matches' if expected else '(no published checksum to compare)'}", flush=True)

    result = subprocess.run(gpg + ["--status-fd", "1", "--verify", sig, tarball],
                            capture_output=True, text=True)
    problem = parse_gpg_status(result.stdout, pinned)
    if problem or result.returncode != 0:
        raise Failure(f"signature check of release {version} failed: "
                      f"{problem or result.stderr.strip()[-200:]}; nothing was installed")
    print(f"  signature good, made by the pinned key {pinned}", flush=True)

    with tarfile.open(tarball) as tar:
        check_tar_members(tar.getmembers())
        # Members checked above; "tar" keeps Unix semantics where Python offers filters
        # (3.12+, and it warns without one), as on Debian 12's Python 3.11.2, which has none.
        extra = {"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}
        tar.extractall(staging, numeric_owner=True, **extra)
    os.unlink(tarball)
    release = os.path.join(staging, "mattermost")
    _wire_release(release, spec)
    # Root owns the release; the service user may read and run it, never change it.
    for root, dirs, files in os.walk(release):
        for name in dirs + files:
            path = os.path.join(root, name)
            os.lchown(path, 0, 0)
            if not os.path.islink(path):
                os.chmod(path, os.stat(path).st_mode & ~0o022)
    os.chown(release, 0, 0)
    os.chmod(release, 0o755)
    client_writable({"release_dir": release, "user": spec["user"]})
    os.chmod(staging, 0o755)
    found = installed_version(release, spec["user"])
    if found != version:
        raise Failure(f"the release downloaded for {version} says it is version {found}: "
                      "check mattermost_release_url")
    with open(os.path.join(release, ".mattermost-deploy.json"), "w") as f:
        json.dump({"version": version, "sha256": actual, "signed_by": pinned,
                   "source": spec["url"], "unpacked_at": int(time.time())}, f, indent=1)


def _wire_release(release, spec):
    """Point the release's state folders at their places outside it, before it is
    published: the release folder is never changed after this, and the familiar paths
    (`/opt/mattermost/config/config.json`, `data/`, `logs/`) keep working."""
    config = os.path.join(release, "config")
    if os.path.isdir(config) and not os.path.islink(config):
        os.rename(config, os.path.join(release, "config.dist"))
    client_plugins = os.path.join(release, "client", "plugins")
    if os.path.isdir(client_plugins) and not os.path.islink(client_plugins):
        os.rename(client_plugins, os.path.join(release, "client", "plugins.dist"))
    for name, target in spec["links"].items():
        path = os.path.join(release, name)
        if os.path.lexists(path):
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.symlink(target, path)


def client_files(release_dir):
    """The web app files Mattermost rewrites at start for the SiteURL's path and its
    Content-Security-Policy (channels/utils/subpath.go, UpdateAssetsSubpathInDir): root.html,
    every manifest.json and *.css under client/ (client/plugins is a link and not followed)."""
    client = os.path.join(release_dir, "client")
    found = []
    for root, dirs, files in os.walk(client):
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]
        for name in files:
            if name in ("root.html", "manifest.json") or name.endswith(".css"):
                if root == client or name != "root.html":
                    found.append(os.path.join(root, name))
    return found


def client_writable(spec):
    """Give those files (only those) to the service user, so Mattermost can do what it does
    at every start; the unit makes <install_dir>/client writable for it. Everything else in
    the release stays root's and read-only."""
    account = pwd.getpwnam(spec["user"])
    changed = 0
    for path in client_files(spec["release_dir"]):
        st = os.lstat(path)
        if (st.st_uid, st.st_gid) != (account.pw_uid, account.pw_gid):
            os.chown(path, account.pw_uid, account.pw_gid)
            changed += 1
    print(f"web app files Mattermost rewrites at start: {changed} given to {spec['user']}")


def switch(spec):
    link, target = spec["install_dir"], os.path.join(spec["releases_dir"], spec["version"])
    if not os.path.isdir(target):
        raise Failure(f"release folder {target} is missing: the download step did not run")
    if os.path.exists(link) and not os.path.islink(link):
        raise Failure(f"{link} is a real folder: it must be adopted first (run the full deploy)")
    link_release(link, target)
    print(f"{link} -> {target}")
