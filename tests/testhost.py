"""The built-in local test server: a real Debian 13 (trixie; or 12, bookworm; or 11, bullseye) with systemd
and sshd in a Docker container, plus the STAND-IN upstream (release downloads, signing
key, GitHub API).

Used by `make demo` and by the end-to-end tests. Follows ../shared/reference/test-host.md:
containers on their own Docker network, SSH and HTTPS published on 127.0.0.1 only, never
`--network host`; the base image of each release is built locally with debootstrap when
no `debian:<release>` image is available.

    python -m tests.testhost up NAME [--ssh-port P] [--https-port P] [--distro trixie|bookworm]
    python -m tests.testhost down NAME
    python -m tests.testhost clean          # every container, the network and images
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import docker
import docker.errors

ROOT = Path(__file__).resolve().parent.parent
LOCAL = ROOT / ".local"  # per-checkout state: ssh key, host descriptions (git-ignored)
CACHE = ROOT / ".cache"  # rebuildable: rootfs, stand-in builds, apt archives (git-ignored)
UPSTREAM_ROOT = CACHE / "standin" / "upstream"

PREFIX = "mmdeploy"
NETWORK = f"{PREFIX}-net"
UPSTREAM = f"{PREFIX}-upstream"
UPSTREAM_PORT = int(os.environ.get("MMDEPLOY_UPSTREAM_PORT", "18080"))
PEBBLE = f"{PREFIX}-pebble"
SMTP = f"{PREFIX}-smtp"
SFTP = f"{PREFIX}-sftp"
MAILDIR = CACHE / "smtp" / "Maildir"  # what the test SMTP server received, read by the tests
LABEL = {"org.mmdeploy.test": "1"}

DEBOOTSTRAP_PACKAGES = "systemd,systemd-sysv,dbus,openssh-server,python3,ca-certificates,curl,iproute2,procps"
# The Debian releases a test server can be: trixie (13) first, bookworm (12) and bullseye (11,
# the oldest servers still running) still. Each gets its apt sources in its own release's form
# (one-line on 11 and 12, deb822 on 13).
DISTROS = {
    "bullseye": {"version": "11", "file": "etc/apt/sources.list", "sources": """\
deb http://deb.debian.org/debian bullseye main
deb http://deb.debian.org/debian bullseye-updates main
deb http://deb.debian.org/debian-security bullseye-security main
"""},
    "bookworm": {"version": "12", "file": "etc/apt/sources.list", "sources": """\
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
"""},
    "trixie": {"version": "13", "file": "etc/apt/sources.list.d/debian.sources", "sources": """\
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie trixie-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: trixie-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""},
}
DEFAULT_DISTRO = os.environ.get("MMDEPLOY_DISTRO") or "trixie"
HELPERS_DISTRO = "bookworm"  # the upstream, pebble and SMTP containers (any release would do)


def serialized(fn):
    """Run the decorated helper under a file lock of its own name: stories that run side by
    side (pytest-xdist workers) make each shared image, network and helper container once,
    never twice at the same moment."""
    import fcntl
    import functools

    @functools.wraps(fn)
    def locked(*args, **kwargs):
        path = LOCAL / "locks" / f"{fn.__name__}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                return fn(*args, **kwargs)
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
    return locked


def base_image(distro: str) -> str:
    return f"{PREFIX}/debian{DISTROS[distro]['version']}:base"


def log(msg: str) -> None:
    print(f"[testhost] {msg}", file=sys.stderr, flush=True)


def client() -> docker.DockerClient:
    try:
        c = docker.from_env()
        c.ping()
        return c
    except docker.errors.DockerException as e:
        sys.exit(f"No Docker engine answers ({e}). Run `make prereqs` (installs docker.io and starts dockerd).")


# ------------------------------------------------------------------ base image

@serialized
def ensure_base_image(c: docker.DockerClient, distro: str = HELPERS_DISTRO) -> str:
    if distro not in DISTROS:
        sys.exit(f"unknown distro {distro!r}: choose one of {', '.join(DISTROS)}")
    image = base_image(distro)
    try:
        c.images.get(image)
        return image
    except docker.errors.ImageNotFound:
        pass
    try:
        c.images.get(f"debian:{distro}")
        _build_from_debian_image(c, distro)
    except docker.errors.ImageNotFound:
        _build_with_debootstrap(c, distro)
    return image


def _build_from_debian_image(c: docker.DockerClient, distro: str) -> None:
    log(f"building the base image from debian:{distro}")
    d = DISTROS[distro]
    dockerfile = f"""FROM debian:{distro}
RUN rm -f /etc/apt/sources.list /etc/apt/sources.list.d/* && printf '%s' '{d["sources"]}' > /{d["file"]} \\
 && apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \\
    {DEBOOTSTRAP_PACKAGES.replace(',', ' ')} && rm -f /etc/apt/apt.conf.d/docker-clean \\
 && : > /etc/machine-id
STOPSIGNAL SIGRTMIN+3
CMD ["/lib/systemd/systemd"]
"""
    c.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=base_image(distro), rm=True)


def _build_with_debootstrap(c: docker.DockerClient, distro: str) -> None:
    if not shutil.which("debootstrap"):
        sys.exit("debootstrap is missing: run `make prereqs` (apt-get install debootstrap).")
    rootfs = CACHE / f"rootfs-{distro}"
    if not (rootfs / "etc" / "debian_version").exists():
        tmp = rootfs.with_name(rootfs.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        logfile = LOCAL / "logs" / f"debootstrap-{distro}.log"
        logfile.parent.mkdir(parents=True, exist_ok=True)
        log(f"debootstrap {distro} (about a minute; its output: {logfile.relative_to(ROOT)})")
        started = time.time()
        with open(logfile, "w") as out:
            done = subprocess.run(
                ["debootstrap", "--variant=minbase", f"--include={DEBOOTSTRAP_PACKAGES}", distro,
                 str(tmp), "http://deb.debian.org/debian"], stdout=out, stderr=subprocess.STDOUT)
        if done.returncode != 0:
            sys.exit(f"debootstrap failed ({done.returncode}):\n" + "".join(logfile.read_text().splitlines(True)[-15:])
                     + f"see {logfile}")
        log(f"debootstrap {distro}: done in {time.time() - started:.0f} s")
        shutil.rmtree(rootfs, ignore_errors=True)
        tmp.rename(rootfs)
    d = DISTROS[distro]
    for stale in ("etc/apt/sources.list", "etc/apt/sources.list.d/debian.sources"):
        (rootfs / stale).unlink(missing_ok=True)
    (rootfs / d["file"]).parent.mkdir(parents=True, exist_ok=True)
    (rootfs / d["file"]).write_text(d["sources"])
    (rootfs / "etc/machine-id").write_text("")
    (rootfs / "etc/hostname").write_text("debian\n")
    log(f"importing the base image {base_image(distro)}")
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    subprocess.run(
        ["docker", "import", "-c", 'CMD ["/lib/systemd/systemd"]', "-", base_image(distro)],
        stdin=tar.stdout, check=True, stdout=subprocess.DEVNULL,
    )
    tar.wait()


@serialized
def ensure_image_with(c: docker.DockerClient, tag: str, packages: list[str]) -> str:
    """The base image plus Debian packages, built once (for the stand-in ACME server and
    the scanning tools of the benchmarks)."""
    image = f"{PREFIX}/{tag}"
    try:
        c.images.get(image)
        return image
    except docker.errors.ImageNotFound:
        pass
    log(f"building {image} ({', '.join(packages)})")
    container = c.containers.run(ensure_base_image(c), ["sleep", "infinity"], detach=True, labels=LABEL,
                                 network=ensure_network(c).name)
    try:
        result = container.exec_run(["sh", "-c", "apt-get update -q && DEBIAN_FRONTEND=noninteractive "
                                     f"apt-get install -y -q --no-install-recommends {' '.join(packages)}"])
        logfile = LOCAL / "logs" / f"image-{tag.replace(':', '-')}.log"
        logfile.parent.mkdir(parents=True, exist_ok=True)
        logfile.write_bytes(result.output)
        if result.exit_code != 0:
            raise RuntimeError(f"installing {packages} failed (see {logfile}): {result.output.decode()[-2000:]}")
        container.commit(repository=image.split(":")[0], tag=image.split(":")[1], changes=['CMD ["/bin/sh"]'])
    finally:
        container.remove(force=True)
    return image


# ------------------------------------------------------------------ network, keys

@serialized
def ensure_network(c: docker.DockerClient):
    try:
        return c.networks.get(NETWORK)
    except docker.errors.NotFound:
        return c.networks.create(NETWORK, driver="bridge", labels=LABEL)


@serialized
def ensure_ssh_key(key: Path | None = None, comment: str = "mmdeploy-test") -> Path:
    key = key or LOCAL / "ssh" / "id_ed25519"
    if key.exists():
        return key
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key.parent.mkdir(parents=True, exist_ok=True)
    private = Ed25519PrivateKey.generate()
    key.write_bytes(private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()))
    os.chmod(key, 0o600)
    public = private.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    key.with_suffix(".pub").write_text(public.decode() + f" {comment}\n")
    return key


def _put_file(container, path: str, data: bytes, mode: int = 0o644) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(os.path.basename(path))
        info.size, info.mode = len(data), mode
        tar.addfile(info, io.BytesIO(data))
    container.exec_run(["mkdir", "-p", os.path.dirname(path)])
    container.put_archive(os.path.dirname(path), buf.getvalue())


# ------------------------------------------------------------------ stand-in upstream

FINGERPRINT = "org.mmdeploy.fingerprint"


def mount_fingerprint(folder: Path) -> str:
    """A folder a helper container mounts, by path AND inode: a checkout deleted and cloned
    again at the same path must not reuse a container whose mount points at the deleted
    folder (it answered 404 for every file)."""
    return hashlib.sha256(f"{folder}:{folder.stat().st_ino}".encode()).hexdigest()[:16]


def running_container(c: docker.DockerClient, name: str, fingerprint: str):
    """The named helper container if it was made with this fingerprint (started when
    stopped); None when it is missing or was made by another checkout or configuration,
    in which case it is removed."""
    try:
        container = c.containers.get(name)
    except docker.errors.NotFound:
        return None
    if container.labels.get(FINGERPRINT) != fingerprint:
        log(f"{name} was made for another checkout or configuration: replacing it")
        container.remove(force=True)
        return None
    if container.status != "running":
        container.start()
    return container


@serialized
def ensure_upstream(c: docker.DockerClient, only_default: bool = False) -> dict:
    """Start the stand-in upstream and build the releases it serves (only_default: just the
    one the default policy installs, for `make demo`)."""
    from tests.standin import build

    info = build.ensure_default_releases(UPSTREAM_ROOT, only_default=only_default)
    ensure_network(c)
    fingerprint = mount_fingerprint(UPSTREAM_ROOT)  # this checkout's files
    if running_container(c, UPSTREAM, fingerprint) is None:
        log("starting the stand-in upstream")
        c.containers.run(
            ensure_base_image(c),
            ["python3", "/opt/standin/upstream.py", "/srv/upstream"],
            name=UPSTREAM, hostname=UPSTREAM, network=NETWORK, detach=True,
            labels={**LABEL, FINGERPRINT: fingerprint},
            restart_policy={"Name": "unless-stopped"},
            ports={"8080/tcp": ("127.0.0.1", UPSTREAM_PORT)},
            volumes={
                str(UPSTREAM_ROOT): {"bind": "/srv/upstream", "mode": "ro"},
                str(ROOT / "tests" / "standin"): {"bind": "/opt/standin", "mode": "ro"},
            },
        )
    _wait_http(f"http://127.0.0.1:{UPSTREAM_PORT}/pubkey.gpg")
    return info


@serialized
def ensure_pebble(c: docker.DockerClient) -> dict:
    """Let's Encrypt's test ACME server (Debian's pebble) on the test network, validating
    http-01 challenges for real against the test servers (names from Docker's DNS)."""
    from tests.standin import acme

    files = acme.ensure_pebble_files(CACHE / "standin" / "pebble")
    # Recreate pebble when its files change or another checkout made them (another test CA).
    digest = hashlib.sha256(str(files["dir"]).encode())
    for name in ("config.json", "cert.pem", "key.pem"):
        digest.update((files["dir"] / name).read_bytes())
    ensure_network(c)
    container = running_container(c, PEBBLE, digest.hexdigest()[:16])
    if container is None:
        log("starting pebble, the stand-in ACME server")
        container = c.containers.run(
            ensure_image_with(c, "pebble:test", ["pebble"]),
            ["pebble", "-config", "/srv/pebble/config.json", "-dnsserver", "127.0.0.11:53", "-strict"],
            name=PEBBLE, hostname=PEBBLE, network=NETWORK, detach=True,
            labels={**LABEL, FINGERPRINT: digest.hexdigest()[:16]},
            environment={"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"},
            volumes={str(files["dir"]): {"bind": "/srv/pebble", "mode": "ro"}},
        )
    for _ in range(60):
        code, out = exec_on_container(UPSTREAM, f"python3 -c \"import socket; socket.create_connection(('{PEBBLE}', 14000), 2)\"")
        if code == 0:
            break
        time.sleep(0.5)
    else:
        raise RuntimeError(f"pebble does not answer: {container.logs()[-1000:]}")
    return {"directory": f"https://{PEBBLE}:14000/dir", "management": f"https://{PEBBLE}:15000",
            "server_ca": files["ca"].read_text()}


# The test relay's login on port 587 (test-only credentials, never a real secret).
SMTP_AUTH_USER, SMTP_AUTH_PASSWORD = "mailer", "relay-test-password-4711"
SMTP_SERVER_SCRIPT = f"""
import asyncio, ssl
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
box = Mailbox("/srv/Maildir")
tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
tls.load_cert_chain("/srv/tls/cert.pem", "/srv/tls/key.pem")
def login(server, session, envelope, mechanism, data):
    ok = isinstance(data, LoginPassword) and data.login == b"{SMTP_AUTH_USER}" and data.password == b"{SMTP_AUTH_PASSWORD}"
    return AuthResult(success=ok, handled=False)
loop = asyncio.new_event_loop()
loop.run_until_complete(loop.create_server(lambda: SMTP(box), "0.0.0.0", 25))
loop.run_until_complete(loop.create_server(lambda: SMTP(box, tls_context=tls, require_starttls=True,
    authenticator=login, auth_require_tls=True, auth_required=True), "0.0.0.0", 587))
loop.run_forever()
"""


@serialized
def ensure_smtp(c: docker.DockerClient) -> dict:
    """A real SMTP server on the test network (Debian's python3-aiosmtpd, a standards-
    compliant asyncio SMTP server) that keeps every message it receives in a Maildir on this
    workstation, for the tests to read. Port 25: plain, no login (a trusted relay); port
    587: STARTTLS (a self-signed certificate made here) and a required login, as a
    provider's relay is."""
    MAILDIR.mkdir(parents=True, exist_ok=True)
    for sub in ("cur", "new", "tmp"):
        (MAILDIR / sub).mkdir(exist_ok=True)
    tls = LOCAL / "smtp-tls"
    if not (tls / "cert.pem").exists():
        tls.mkdir(parents=True, exist_ok=True)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
                        "-subj", f"/CN={SMTP}", "-keyout", tls / "key.pem", "-out", tls / "cert.pem"],
                       check=True, capture_output=True)
        (tls / "key.pem").chmod(0o644)  # read by the container's user; a test-only key
    ensure_network(c)
    fingerprint = hashlib.sha256(mount_fingerprint(MAILDIR).encode() + SMTP_SERVER_SCRIPT.encode() +
                                 (tls / "cert.pem").read_bytes()).hexdigest()[:16]
    if running_container(c, SMTP, fingerprint) is None:
        log("starting the test SMTP server (aiosmtpd: 25 plain, 587 STARTTLS + login)")
        c.containers.run(
            ensure_image_with(c, "smtp:test", ["python3-aiosmtpd"]),
            ["python3", "-c", SMTP_SERVER_SCRIPT],
            name=SMTP, hostname=SMTP, network=NETWORK, detach=True,
            labels={**LABEL, FINGERPRINT: fingerprint}, restart_policy={"Name": "unless-stopped"},
            volumes={str(MAILDIR): {"bind": "/srv/Maildir", "mode": "rw"},
                     str(tls): {"bind": "/srv/tls", "mode": "ro"}},
        )
    for _ in range(60):
        # asked from the relay itself, by its name on the test network (the upstream may not run yet)
        try:
            code, _ = exec_on_container(SMTP, "python3 -c \"import socket; [socket.create_connection(('"
                                              f"{SMTP}', p), 2) for p in (25, 587)]\"")
        except docker.errors.APIError:  # still starting
            code = 1
        if code == 0:
            break
        time.sleep(0.5)
    else:
        raise RuntimeError("the test SMTP server does not answer")
    return {"host": SMTP, "port": 25, "maildir": MAILDIR, "auth_port": 587}


@serialized
def ensure_sftp(c: docker.DockerClient, name: str = SFTP) -> dict:
    """An SFTP server on the test network, as a storage box is one: OpenSSH (Debian's), a
    storage-box-like user that logs in with a key made here, a folder for restic repositories.
    Returns the private key's path and the host key line to pin. A story that stops its SFTP
    server on purpose has one of its own (`name`), so the others' copies go on."""
    key = ensure_ssh_key(LOCAL / "offsite" / "id_ed25519", "mmdeploy-offsite-test")
    ensure_network(c)
    user = "u12345"  # a storage box's kind of account name (Debian has a system user "backup" already)
    command = ["sh", "-c", f"ssh-keygen -A -q && mkdir -p /run/sshd /srv/restic && (id {user} >/dev/null 2>&1 || "
               f"useradd -m -d /home/{user} -s /bin/sh {user}) && install -d -o {user} -m 700 /home/{user}/.ssh && "
               f"install -o {user} -m 600 /keys/authorized_keys /home/{user}/.ssh/authorized_keys && "
               f"chown {user} /srv/restic && exec /usr/sbin/sshd -D -e"]
    fingerprint = hashlib.sha256(key.with_suffix(".pub").read_bytes() + json.dumps(command).encode()).hexdigest()[:16]
    if running_container(c, name, fingerprint) is None:
        log(f"starting the test SFTP server {name} (OpenSSH)")
        c.containers.run(
            ensure_base_image(c), command,
            name=name, hostname=name, network=NETWORK, detach=True,
            labels={**LABEL, FINGERPRINT: fingerprint}, restart_policy={"Name": "unless-stopped"},
            volumes={str(key.with_suffix(".pub")): {"bind": "/keys/authorized_keys", "mode": "ro"}},
        )
    for _ in range(60):
        code, host_key = exec_on_container(name, "cat /etc/ssh/ssh_host_ed25519_key.pub")
        if code == 0 and host_key.startswith("ssh-ed25519") and exec_on_container(
                UPSTREAM, f"python3 -c \"import socket; socket.create_connection(('{name}', 22), 2)\"")[0] == 0:
            break
        time.sleep(0.5)
    else:
        raise RuntimeError("the test SFTP server does not answer")
    return {"key": key, "known_hosts": f"{name} {' '.join(host_key.split()[:2])}", "user": user, "host": name,
            "root": "/srv/restic"}


def clear_mail(to: str) -> None:
    """Forget what the test SMTP server received for `to` (stories that run at the same time
    write to their own addresses)."""
    import email
    import email.policy

    for sub in ("new", "cur"):
        for path in (MAILDIR / sub).glob("*"):
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            if to.lower() in str(message.get("To", "")).lower():
                path.unlink(missing_ok=True)


def received_mail(to: str) -> list:
    """Messages the test SMTP server received for `to`, oldest first."""
    import email
    import email.policy

    found = []
    for path in sorted((p for sub in ("new", "cur") for p in (MAILDIR / sub).glob("*")), key=lambda p: p.stat().st_mtime):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if to.lower() in str(message.get("To", "")).lower():
            found.append(message)
    return found


def _wait_http(url: str, timeout: float = 30) -> None:
    import urllib.request

    deadline = time.time() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.3)


# ------------------------------------------------------------------ servers

def container_name(name: str) -> str:
    return f"{PREFIX}-{name}"


def official_release_reachable(timeout: float = 5) -> bool:
    """Whether this workstation reaches Mattermost's release server and GitHub's API (then
    `make demo` installs the official release, its real signature checked)."""
    import urllib.error
    import urllib.request

    for url in ("https://releases.mattermost.com/", "https://api.github.com/repos/mattermost/mattermost/releases?per_page=1"):
        try:
            urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
        except urllib.error.HTTPError:
            continue  # it answered
        except OSError:
            return False
    return True


def start_server(name: str, ssh_port: int, https_port: int | None = None, http_port: int | None = None,
                 extra_data: dict | None = None, official: bool = False, only_default: bool = False,
                 distro: str | None = None) -> dict:
    """Start (or reuse) a Debian test server (distro: trixie by default, or MMDEPLOY_DISTRO);
    describe it in .local/hosts/NAME.json.
    official: install Mattermost's official releases (production settings: releases.mattermost.com,
    the real signing key, GitHub's API) instead of the stand-in upstream's builds from source."""
    c = client()
    upstream = {"data": {}} if official else ensure_upstream(c, only_default)
    distro = distro or DEFAULT_DISTRO
    image = ensure_base_image(c, distro)
    key = ensure_ssh_key()
    # Downloaded packages kept between runs of the same server; one folder per server, as
    # apt locks its cache folder and servers may install at the same time.
    apt_cache = CACHE / "apt-archives" / f"{name}-{distro}"
    (apt_cache / "partial").mkdir(parents=True, exist_ok=True)
    cname = container_name(name)
    try:
        container = c.containers.get(cname)
        if container.status != "running":
            container.start()
    except docker.errors.NotFound:
        log(f"starting test server {cname} (Debian {DISTROS[distro]['version']} {distro}, ssh on 127.0.0.1:{ssh_port})")
        ports = {"22/tcp": ("127.0.0.1", ssh_port)}
        if https_port:
            ports["443/tcp"] = ("127.0.0.1", https_port)
        if http_port:
            ports["80/tcp"] = ("127.0.0.1", http_port)
        container = c.containers.run(
            image, name=cname, hostname=name, network=NETWORK, detach=True, labels=LABEL,
            cap_add=["SYS_ADMIN", "NET_ADMIN"],
            security_opt=["seccomp=unconfined", "apparmor=unconfined"],
            tmpfs={"/run": "", "/run/lock": "", "/tmp": ""},
            volumes={
                "/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"},
                # Download cache only: each server still installs its packages itself.
                str(apt_cache): {"bind": "/var/cache/apt/archives", "mode": "rw"},
            },
            ports=ports, stop_signal="SIGRTMIN+3",
            restart_policy={"Name": "unless-stopped"},
        )
    _put_file(container, "/root/.ssh/authorized_keys", key.with_suffix(".pub").read_bytes(), 0o600)
    _wait_systemd(container)
    _wait_apt_daily(container)
    _wait_ssh(ssh_port)
    known_hosts = pin_host_keys(container, name, ssh_port)
    site_port = f":{https_port}" if https_port and https_port != 443 else ""
    description = {
        "name": name,
        "container": cname,
        "ssh_port": ssh_port,
        "ssh_key": str(key),
        "https_port": https_port,
        "known_hosts": str(known_hosts),
        "source": "official" if official else "source",
        "distro": distro,
        "data": {
            # Only data differs from production: the stand-in upstream and its test key.
            "mattermost_domain": "127.0.0.1",
            "mattermost_site_url": f"https://127.0.0.1{site_port}",
            # The workstation side asks the stand-in's GitHub-shaped API on loopback.
            **({} if official else {"github_api_url": f"http://127.0.0.1:{UPSTREAM_PORT}/api"}),
            **upstream["data"],
            **(extra_data or {}),
        },
    }
    host_file(name).parent.mkdir(parents=True, exist_ok=True)
    host_file(name).write_text(json.dumps(description, indent=2) + "\n")
    return description


def container_ip(name: str) -> str:
    """A test server's address on the test network (what another server reaches it by)."""
    container = client().containers.get(container_name(name))
    return container.attrs["NetworkSettings"]["Networks"][NETWORK]["IPAddress"]


def pin_host_keys(container, name: str, ssh_port: int) -> Path:
    """The server's own SSH host keys, pinned for this workstation's runs (as an operator
    pins a VPS's key on first contact): no "No host key ... found" warning on every command,
    and a server that is not this one is refused."""
    out = container.exec_run(["sh", "-c", "cat /etc/ssh/ssh_host_*_key.pub"]).output.decode()
    lines = [f"[127.0.0.1]:{ssh_port} {' '.join(line.split()[:2])}" for line in out.splitlines() if line.strip()]
    path = LOCAL / "hosts" / f"{name}.known_hosts"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def host_file(name: str) -> Path:
    return LOCAL / "hosts" / f"{name}.json"


def _wait_systemd(container, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while True:
        out = container.exec_run(["systemctl", "is-system-running"]).output.decode().strip()
        if out in ("running", "degraded"):
            return
        if time.time() > deadline:
            raise RuntimeError(f"systemd in {container.name} did not come up: {out}")
        time.sleep(0.5)


def _wait_apt_daily(container, timeout: float = 300) -> None:
    """Debian's apt-daily timers are persistent: on a server's first boot they run at once
    (`apt-get update`, unattended-upgrade), holding apt's locks for a while - as on a new VPS.
    The tests start when that first run is over, as an operator who waits a minute would."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        states = container.exec_run(["systemctl", "is-active", "apt-daily.service", "apt-daily-upgrade.service"]
                                    ).output.decode().split()
        if not {"active", "activating", "reloading"} & set(states):
            return
        time.sleep(1)


def _wait_ssh(port: int, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                if s.recv(8).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        if time.time() > deadline:
            raise RuntimeError(f"sshd on 127.0.0.1:{port} did not answer")
        time.sleep(0.3)


def stop_server(name: str) -> None:
    c = client()
    try:
        c.containers.get(container_name(name)).remove(force=True)
    except docker.errors.NotFound:
        pass
    host_file(name).unlink(missing_ok=True)
    (LOCAL / "hosts" / f"{name}.known_hosts").unlink(missing_ok=True)


def clean(images: bool = False) -> None:
    c = client()
    for container in c.containers.list(all=True, filters={"label": "org.mmdeploy.test=1"}):
        log(f"removing {container.name}")
        container.remove(force=True)
    try:
        c.networks.get(NETWORK).remove()
    except docker.errors.NotFound:
        pass
    if images:
        for distro in DISTROS:
            try:
                c.images.remove(base_image(distro), force=True)
            except docker.errors.ImageNotFound:
                pass
    shutil.rmtree(LOCAL / "hosts", ignore_errors=True)


def exec_on(name: str, command: str, user: str = "root") -> tuple[int, str]:
    """Run a shell command inside a test server (test assertions, not the deploy)."""
    return exec_on_container(container_name(name), command, user)


def exec_on_container(cname: str, command: str, user: str = "root") -> tuple[int, str]:
    result = client().containers.get(cname).exec_run(["sh", "-c", command], user=user)
    return result.exit_code, result.output.decode(errors="replace")


def report(name: str) -> int:
    """What `make demo` ends with: the URL, the installed release and what the server says."""
    import ssl
    import urllib.request

    desc = json.loads(host_file(name).read_text())
    url = f"https://127.0.0.1:{desc['https_port']}"
    _, installed = exec_on(name, "basename \"$(readlink -f /opt/mattermost)\"")
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # the demo's self-signed certificate
    try:
        with urllib.request.urlopen(f"{url}/api/v4/system/ping?get_server_status=true", context=context, timeout=10) as r:
            body, header = json.loads(r.read()), r.headers.get("X-Version-Id", "")
    except OSError as e:
        print(f"Mattermost does not answer at {url}: {e}")
        return 1
    running = ".".join(header.split(".")[:3])
    if desc.get("source") == "official":
        origin = "the official release from releases.mattermost.com (its signature checked against Mattermost's key)"
    else:
        from tests.realmm import build

        pins = build.pins(installed.strip()) if installed.strip() in build.versions() else {}
        origin = (f"real Mattermost built from source here (no internet): {build.SERVER}@{pins.get('server', '?')}, "
                  "web app not included - the API serves, a browser shows an empty page")
    print(f"Mattermost {running} is up at {url}  (self-signed certificate)")
    print(f"  what runs: {origin}")
    print(f"  installed release: {installed.strip()}")
    print(f"  ping: status {body.get('status')}, database {body.get('database_status')}, "
          f"X-Version-Id {header} -> version {running}")
    return 0 if body.get("status") == "OK" and running == installed.strip() else 1


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.testhost")
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start a test server (and the stand-in upstream)")
    up.add_argument("name")
    up.add_argument("--ssh-port", type=int, default=2222)
    up.add_argument("--https-port", type=int, default=8443)
    up.add_argument("--distro", choices=sorted(DISTROS), default=None,
                    help=f"the Debian release of the server (default {DEFAULT_DISTRO}; MMDEPLOY_DISTRO)")
    up.add_argument("--official", choices=("auto", "yes", "no"), default="no",
                    help="install the official release (auto: when releases.mattermost.com and GitHub answer)")
    down = sub.add_parser("down", help="remove a test server")
    down.add_argument("name")
    rep = sub.add_parser("report", help="print the URL and versions of a deployed test server")
    rep.add_argument("name")
    cl = sub.add_parser("clean", help="remove every test container and the network")
    cl.add_argument("--images", action="store_true", help="also remove the base image")
    args = parser.parse_args(argv)
    if args.cmd == "up":
        official = args.official == "yes" or (args.official == "auto" and official_release_reachable())
        log("the internet is reachable: installing the official release" if official else
            "no internet (or --official no): installing real Mattermost built from source by the stand-in upstream")
        desc = start_server(args.name, args.ssh_port, args.https_port, official=official, only_default=True,
                            distro=args.distro)
        print(host_file(desc["name"]))
    elif args.cmd == "report":
        return report(args.name)
    elif args.cmd == "down":
        stop_server(args.name)
    else:
        clean(args.images)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
