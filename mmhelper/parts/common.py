"""Small system helpers every step uses: running commands, files, PostgreSQL, systemd, HTTP
health, and the one failure type (a sentence for the operator).
"""

import contextlib
import grp
import hashlib
import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

HELPER_VERSION = 1


MASK = "********"


class Failure(Exception):
    """A failure the operator can act on: printed as one line, exit status 1."""


def parse_version_output(text):
    match = re.search(r"^Version:\s*(\d+\.\d+\.\d+)", text, re.M)
    return match.group(1) if match else None


def parse_version_header(value):
    """X-Version-Id: {Version}.{BuildNumber}.{ConfigHash}.{Enterprise} -> Version."""
    match = re.match(r"^(\d+\.\d+\.\d+)(?:\.|$)", value or "")
    return match.group(1) if match else None


def run(cmd, check=True, **kwargs):
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    result = subprocess.run(cmd, **kwargs)
    if check and result.returncode != 0:
        raise Failure(f"{' '.join(cmd[:3])} failed: {(result.stderr or result.stdout).strip()[-300:]}")
    return result


def file_info(path):
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    info = {"mode": stat.S_IMODE(st.st_mode), "owner": _user_name(st.st_uid),
            "group": _group_name(st.st_gid), "type": _kind(st)}
    if stat.S_ISREG(st.st_mode):
        with open(path, "rb") as f:
            info["sha256"] = hashlib.sha256(f.read()).hexdigest()
    elif stat.S_ISLNK(st.st_mode):
        info["target"] = os.readlink(path)
    return info


def _kind(st):
    if stat.S_ISLNK(st.st_mode):
        return "link"
    if stat.S_ISDIR(st.st_mode):
        return "dir"
    return "file" if stat.S_ISREG(st.st_mode) else "other"


def _user_name(uid):
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group_name(gid):
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def key_values(path, keys):
    """The values of `KEY value` lines (login.defs' form) for the keys asked; None for a key
    the file does not set. As shadow's tools read it: '#' lines skipped, the last line wins."""
    found = dict.fromkeys(keys)
    try:
        with open(path) as f:
            for line in f:
                parts = line.split(None, 1)
                if parts and parts[0] in found:
                    found[parts[0]] = parts[1].strip() if len(parts) > 1 else ""
    except FileNotFoundError:
        return None
    return found


def read_password(path):
    try:
        with open(path) as f:
            return f.read().strip() or None
    except FileNotFoundError:
        return None


def write_private(path, data, uid=0, gid=0, mode=0o600):
    """Atomic write of a file that only its owner may read."""
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        os.fchmod(fd, mode)
        os.fchown(fd, uid, gid)
        with os.fdopen(fd, "w") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def http_get(url, timeout=5.0):
    request = urllib.request.Request(url, headers={"User-Agent": "mattermost-deploy"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def ping(url, timeout=5.0):
    """Health as the deploy judges it: HTTP 200, status OK, database OK, the version."""
    try:
        code, headers, body = http_get(url, timeout)
    except OSError as e:
        return {"ok": False, "error": f"no answer ({getattr(e, 'reason', e)})", "version": None}
    version = parse_version_header(headers.get("X-Version-Id"))
    try:
        payload = json.loads(body or b"{}")
    except ValueError:
        payload = {}
    ok = code == 200 and payload.get("status") == "OK" and payload.get("database_status", "OK") == "OK"
    error = None if ok else f"HTTP {code}, status {payload.get('status')}, database {payload.get('database_status')}"
    return {"ok": ok, "error": error, "version": version}


def run_release_binary(release_dir, config, user, *args, env=None, in_release=False, timeout=120):
    """Run `bin/mattermost ARGS` of a release as the service user (never root), on a
    private copy of `config` so nothing in the install or state folders is touched."""
    tmp = tempfile.mkdtemp(prefix="mm-run-")
    try:
        env = dict(os.environ, **(env or {}), MM_CONFIG=os.path.join(tmp, "config.json"))
        if config and os.path.exists(config):
            shutil.copyfile(config, env["MM_CONFIG"])
        cmd = [os.path.join(release_dir, "bin", "mattermost"), *args]
        if _user_exists(user):
            account = pwd.getpwnam(user)
            for path in (tmp, env["MM_CONFIG"]):
                if os.path.exists(path):
                    os.chown(path, account.pw_uid, account.pw_gid)
            cmd = ["runuser", "-u", user, "--", *cmd]
        # in_release: run from the release folder (read-only for the user), where the binary
        # finds its i18n/ and so explains itself in words rather than message ids.
        return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=release_dir if in_release else tmp,
                              timeout=timeout)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def installed_version(release_dir, user, config=None):
    """What a release's own binary says it is (with a private copy of `config`, by default
    its own config/config.json). Mattermost 5 and 6 start the whole server
    (and wait for its database) for `version` unless given --skip-server-start
    (cmd/mattermost/commands/version.go of mattermost-server v5/v6); 8 and later no longer
    know the flag and print the version at once: so the flag first, then without it."""
    if not os.path.exists(os.path.join(release_dir, "bin", "mattermost")):
        return None
    config = config or os.path.join(release_dir, "config", "config.json")
    if not os.path.exists(config):
        config = os.path.join(release_dir, "config.dist", "config.json")
    for args in (("version", "--skip-server-start"), ("version",)):
        found = parse_version_output(run_release_binary(release_dir, config, user, *args).stdout)
        if found:
            return found
    return None


def _user_exists(user):
    try:
        pwd.getpwnam(user)
        return True
    except KeyError:
        return False


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def link_release(link, target):
    tmp = f"{link}.new-link"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, link)


def dir_size(path):
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def write_hold(path, version, reason):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"version": version, "reason": reason[:300],
                   "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, f)


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
