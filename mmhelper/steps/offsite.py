"""Off-server copies of the backups with restic (Debian's package): encrypted, deduplicated,
in a repository elsewhere (SFTP on a storage box, S3, a REST server). After each local
backup the server sends that backup's folder; restic's own `forget --prune` keeps the
retention; the outcome is recorded for `make status` and patch night. Secrets (the
repository password, the SFTP key, S3 credentials) stay in root-only files."""

import json
import os
import re
import shlex
import subprocess
import time

from mmhelper.parts.common import Failure, read_json, write_private

STALE_AFTER = 36 * 3600  # an off-server copy older than this is reported as stale


def restic_env(spec):
    """The environment restic runs with: the repository, the password FILE (never the
    password itself on a command line), and the variables of restic.env (S3 keys...)."""
    env = dict(os.environ, RESTIC_REPOSITORY=spec["repository"], RESTIC_PASSWORD_FILE=spec["password_file"],
               RESTIC_CACHE_DIR=spec.get("cache_dir", "/var/cache/restic"))
    extra = spec.get("env_file")
    if extra and os.path.exists(extra):
        with open(extra) as f:
            for line in f:
                key, _, value = line.strip().partition("=")
                if key and not key.startswith("#"):
                    env[key] = value
    return env


def restic_command(spec, *args):
    cmd = ["restic"]
    if spec["repository"].startswith("sftp:") and spec.get("ssh_key"):
        user_host = spec["repository"][len("sftp:"):].split(":", 1)[0]
        ssh = ["ssh", "-i", spec["ssh_key"], "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
               "-o", f"UserKnownHostsFile={spec['known_hosts']}", "-o", "StrictHostKeyChecking=yes",
               "-o", "ConnectTimeout=15", user_host, "-s", "sftp"]
        cmd += ["-o", "sftp.command=" + " ".join(shlex.quote(a) for a in ssh)]
    return cmd + list(args)


def restic(spec, *args, check=True, timeout=7200):
    result = subprocess.run(restic_command(spec, *args), env=restic_env(spec), capture_output=True, text=True,
                            timeout=timeout)
    if check and result.returncode != 0:
        raise Failure(f"restic {args[0]} failed: {explain(result.stderr or result.stdout)}")
    return result


def explain(text):
    """restic's error, shortened to the line that says what went wrong."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if re.search(r"Fatal|wrong password|no such host|connection refused|Permission denied|Host key", line, re.I):
            return line[:300]
    return (lines[-1] if lines else "no output")[:300]


def ensure_repository(spec):
    """Initialise the repository the first time (restic refuses to overwrite an existing one)."""
    probe = restic(spec, "cat", "config", check=False)
    if probe.returncode == 0:
        return False
    text = probe.stderr + probe.stdout
    if probe.returncode == 10 or "Is there a repository" in text or "does not exist" in text:
        restic(spec, "init")
        return True
    raise Failure(f"the off-server repository cannot be reached: {explain(text)}")


def record(spec, **fields):
    status = read_json(spec["status_file"]) or {}
    status.update(fields)
    write_private(spec["status_file"], json.dumps(status), mode=0o600)
    return status


def offsite_copy(spec, folder, name):
    """Send one published backup folder to the repository, then apply the retention."""
    started = time.time()
    try:
        created = ensure_repository(spec)
        out = restic(spec, "backup", "--json", "--tag", "mattermost", "--tag", name, "--host", spec["host"],
                     folder).stdout
        summary = next((json.loads(line) for line in out.splitlines()
                        if line.startswith("{") and '"message_type":"summary"' in line.replace(" ", "")), {})
        keep = spec.get("keep") or {}
        policy = [x for k, v in sorted(keep.items()) if v for x in (f"--keep-{k}", str(v))]
        if policy:
            restic(spec, "forget", "--prune", "--tag", "mattermost", "--host", spec["host"], *policy)
    except (Failure, subprocess.TimeoutExpired, OSError) as e:
        record(spec, last_error=str(e), last_error_at=time.time(), last_attempt=name)
        raise Failure(f"the local backup {name} is complete, but its off-server copy failed: {e}") from None
    status = record(spec, last_ok=time.time(), last_ok_backup=name, last_snapshot=summary.get("snapshot_id"),
                    last_error=None, seconds=round(time.time() - started, 1),
                    added_bytes=summary.get("data_added"), repository_created=created)
    print(f"  off-server copy of {name}: snapshot {status['last_snapshot'] or '?'}, "
          f"{(summary.get('data_added') or 0) >> 20} MB new, {status['seconds']} s", flush=True)


def offsite_state(spec):
    """What `make status` and patch night show: ok, stale or failed, and since when."""
    status = read_json(spec["status_file"]) or {}
    now = time.time()
    if status.get("last_error") and (status.get("last_error_at") or 0) >= (status.get("last_ok") or 0):
        return {"state": "failed", "error": status["last_error"], "since": status.get("last_error_at"),
                "last_ok": status.get("last_ok")}
    if not status.get("last_ok"):
        return {"state": "none", "last_ok": None}
    if now - status["last_ok"] > STALE_AFTER:
        return {"state": "stale", "last_ok": status["last_ok"]}
    return {"state": "ok", "last_ok": status["last_ok"], "backup": status.get("last_ok_backup")}


def offsite_fetch(spec):
    """Bring a backup back from the repository into the backup folder (the newest, or the
    one named), ready for `restore`. Prints the backup's name."""
    ensure = restic(spec, "snapshots", "--json", "--tag", "mattermost", check=False)
    if ensure.returncode != 0:
        raise Failure(f"cannot list the off-server backups: {explain(ensure.stderr)}")
    snapshots = sorted(json.loads(ensure.stdout or "[]"), key=lambda s: s["time"])
    wanted = spec.get("backup")
    if wanted and wanted != "latest":
        snapshots = [s for s in snapshots if wanted in (s.get("tags") or [])]
    if not snapshots:
        raise Failure(f"no off-server backup {wanted or ''} in {spec['repository']}".replace("  ", " "))
    snap = snapshots[-1]
    name = next(t for t in snap.get("tags", []) if t != "mattermost")
    final = os.path.join(spec["backup_dir"], name)
    if os.path.exists(os.path.join(final, "manifest.json")):
        print(name)
        return
    staging = os.path.join(spec["backup_dir"], f".offsite-{name}")
    subprocess.run(["rm", "-rf", staging], check=False)
    os.makedirs(staging, mode=0o700)
    restic(spec, "restore", snap["id"], "--target", staging)
    source = os.path.join(staging, snap["paths"][0].lstrip("/"))
    os.rename(source, final)
    subprocess.run(["rm", "-rf", staging], check=False)
    print(name)
