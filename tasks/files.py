"""Where Mattermost keeps uploaded files: the local data folder, or an S3-compatible bucket
(a managed one at the VPS provider, or a store the organisation runs). The settings of the
store (settings.files), the config.json keys they own, the root-only keys on the server,
and the probe that proves Mattermost's key can write, read and delete in the bucket before
anything uses it. Moving the files between the two is `make move-files` (mmhelper/jobs/files_move.py).

Facts this relies on (../shared/reference/s3-and-remote-database.md, checked in 11.4's
public/model/config.go and platform/shared/filestore/s3store.go): AmazonS3Endpoint is
host[:port] without a scheme, AmazonS3SSL picks https; empty keys make Mattermost ask the
cloud's IAM, so both keys are always set; a write must finish within
AmazonS3RequestTimeoutMilliseconds (30 s by default: too short for a large upload to a remote
bucket); Mattermost trusts the system's CA store only, so a private CA goes there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from tasks.plans import plan_ending

STORES = ("local", "s3")
KEY_ENV = ("MATTERMOST_S3_ACCESS_KEY_ID", "MATTERMOST_S3_SECRET_ACCESS_KEY")
BACKUP_KEY_ENV = ("MATTERMOST_S3_BACKUP_ACCESS_KEY_ID", "MATTERMOST_S3_BACKUP_SECRET_ACCESS_KEY")
CA_PATH = "/usr/local/share/ca-certificates/mattermost-files-ca.crt"  # Debian's place for a local CA
ENDPOINT = re.compile(r"^[A-Za-z0-9.-]+(:\d{1,5})?$")
BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class SecretText(str):
    """Never shows itself in reprs or tracebacks."""

    def __repr__(self) -> str:
        return "SecretText(********)"


@dataclass(frozen=True)
class FileStore:
    """settings.files"""

    store: str = "local"
    endpoint: str | None = None
    bucket: str | None = None
    region: str = ""
    ssl: bool = True
    path_prefix: str = ""
    ca_pem: str | None = field(default=None, repr=False)
    request_timeout_ms: int = 300000
    access_key: SecretText | None = field(default=None, repr=False)
    secret_key: SecretText | None = field(default=None, repr=False)
    backup_access_key: SecretText | None = field(default=None, repr=False)
    backup_secret_key: SecretText | None = field(default=None, repr=False)

    @property
    def bucket_configured(self) -> bool:
        return bool(self.bucket)


def files_settings(get, env: dict) -> tuple[FileStore, list[str]]:
    """The group from host data (`get(key)`) and the workstation's environment, and its problems."""
    problems: list[str] = []
    store = get("files_store") or "local"
    if store not in STORES:
        problems.append(f"files_store must be \"local\" or \"s3\", not {store!r}")
    bucket, endpoint = get("files_s3_bucket") or None, get("files_s3_endpoint") or None
    if store == "s3" and not bucket:
        problems.append("files_store is \"s3\" but files_s3_bucket is not set")
    if not bucket:
        return FileStore(store=store), problems
    if not BUCKET.match(str(bucket)):
        problems.append(f"files_s3_bucket {bucket!r} is not a bucket name (3-63 lower-case letters, digits, . and -)")
    if not endpoint or not ENDPOINT.match(str(endpoint)):
        problems.append(f"files_s3_endpoint must be host[:port] without https:// (Mattermost's AmazonS3Endpoint), "
                        f"not {endpoint!r}")
    keys = [env.get(k) or None for k in KEY_ENV]
    if not all(keys):
        problems.append(f"files_s3_bucket is set but {' and '.join(KEY_ENV)} are not both set on this workstation: "
                        "export them or put them in secrets.env (Mattermost's key: read, write, delete in the bucket)")
    backup = [env.get(k) or None for k in BACKUP_KEY_ENV]
    if any(backup) and not all(backup):
        problems.append(f"set both {' and '.join(BACKUP_KEY_ENV)}, or neither")
    ca_file, ca_pem = get("files_s3_ca_file") or None, None
    if ca_file:
        path = Path(str(ca_file)).expanduser()
        if not path.is_file() or "BEGIN CERTIFICATE" not in path.read_text(errors="replace"):
            problems.append(f"files_s3_ca_file {ca_file!r} is not a PEM certificate file on this workstation")
        else:
            ca_pem = path.read_text()
    timeout = get("files_s3_request_timeout_ms") or 300000
    if not isinstance(timeout, int) or timeout < 30000:
        problems.append("files_s3_request_timeout_ms must be a number of milliseconds, at least 30000")
    prefix = str(get("files_s3_path_prefix") or "").strip("/")
    return FileStore(
        store=store, endpoint=endpoint, bucket=bucket, region=str(get("files_s3_region") or ""),
        ssl=get("files_s3_ssl") is not False, path_prefix=prefix, ca_pem=ca_pem, request_timeout_ms=timeout,
        access_key=SecretText(keys[0]) if keys[0] else None, secret_key=SecretText(keys[1]) if keys[1] else None,
        backup_access_key=SecretText(backup[0]) if backup[0] else None,
        backup_secret_key=SecretText(backup[1]) if backup[1] else None,
    ), problems


def key_files(private_dir: str) -> dict[str, str]:
    """Where the keys live on the server (root, 0600)."""
    return {"access": f"{private_dir}/s3-access-key-id", "secret": f"{private_dir}/s3-secret-access-key",
            "backup_access": f"{private_dir}/s3-backup-access-key-id",
            "backup_secret": f"{private_dir}/s3-backup-secret-access-key"}


def secrets(files: FileStore, private_dir: str) -> dict[str, str]:
    """path -> content of the key files the deploy places."""
    if not files.bucket_configured or not files.access_key:
        return {}
    paths = key_files(private_dir)
    out = {paths["access"]: files.access_key + "\n", paths["secret"]: files.secret_key + "\n"}
    if files.backup_access_key:
        out[paths["backup_access"]] = files.backup_access_key + "\n"
        out[paths["backup_secret"]] = files.backup_secret_key + "\n"
    return out


def owned_keys(files: FileStore, private_dir: str) -> dict:
    """The FileSettings keys the deploy owns. The driver itself is switched by `make
    move-files` (old files would answer 500 in a bucket they were never copied to), so it is
    owned only on a fresh install or where it already is what the settings say."""
    if not files.bucket_configured:
        return {"FileSettings.DriverName": {"$keep_unless_fresh": "local"}}
    paths = key_files(private_dir)
    return {
        "FileSettings.DriverName": {"$keep_unless_fresh": "amazons3" if files.store == "s3" else "local"},
        "FileSettings.AmazonS3Bucket": files.bucket,
        "FileSettings.AmazonS3Endpoint": files.endpoint,
        "FileSettings.AmazonS3SSL": files.ssl,
        "FileSettings.AmazonS3Region": files.region,
        "FileSettings.AmazonS3PathPrefix": files.path_prefix,
        "FileSettings.AmazonS3RequestTimeoutMilliseconds": files.request_timeout_ms,
        "FileSettings.AmazonS3AccessKeyId": {"$secret_file": paths["access"]},
        "FileSettings.AmazonS3SecretAccessKey": {"$secret_file": paths["secret"]},
    }


def probe_spec(files: FileStore, private_dir: str) -> dict | None:
    """What the server's probe uses (paths of the key files, never the keys)."""
    if not files.bucket_configured:
        return None
    return {"endpoint": files.endpoint, "bucket": files.bucket, "region": files.region, "ssl": files.ssl,
            "prefix": files.path_prefix, **{k: v for k, v in key_files(private_dir).items()
                                            if k in ("access", "secret")}}


def move_spec(s, to: str) -> dict:
    """The move's spec for the helper: paths and names, never a key."""
    return {**(probe_spec(s.files, s.private_dir) or {}), **{k: v for k, v in key_files(s.private_dir).items()},
            "to": to, "config_file": s.config_file, "data_dir": s.data_dir, "install_dir": s.install_dir,
            "db": s.db_name, "service": "mattermost", "ping_url": s.ping_url, "timeout": s.health_timeout,
            "start_timeout": s.start_timeout, "lock_file": f"{s.deploy_state_dir}/files-move.lock",
            "state_file": f"{s.deploy_state_dir}/files-move.json"}


def move_plan_text(host: str, plan: dict) -> str:
    where = "into the bucket" if plan["to"] == "s3" else "back to the local data folder"
    lines = [f"{host}: move the uploaded files {where}"]
    if plan.get("nothing_to_do"):
        return "\n".join([*lines, f"  nothing to move: {plan['nothing_to_do']}"])
    for name in ("local", "bucket"):
        if plan.get(name):
            lines.append(f"  {name}: {plan[name]['files']} files, {plan[name]['bytes'] / (1 << 20):.1f} MB")
    if plan.get("disk"):
        lines.append(f"  disk: needs {plan['disk']['need'] >> 20} MB, {plan['disk']['free'] >> 20} MB free")
    state = plan.get("state") or {}
    if state.get("status") == "running":
        lines.append(f"  an earlier move stopped after: {', '.join(state.get('done') or []) or 'nothing'} - "
                     "`make move-files` goes on")
    lines += plan_ending(plan, [], "the copy runs while Mattermost serves; users wait only for the final pass, the "
                                   "switch and the start; the source is kept")
    return "\n".join(lines)


def bucket_spec(s, writer: bool = False) -> dict | None:
    """How the server's helper reaches the bucket with rclone: for backups the read-only key
    when there is one (writer=False), else Mattermost's own (restores write)."""
    base = probe_spec(s.files, s.private_dir)
    if base is None:
        return None
    paths = key_files(s.private_dir)
    if not writer and s.files.backup_access_key:
        base = {**base, "access": paths["backup_access"], "secret": paths["backup_secret"]}
    return base
