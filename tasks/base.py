"""The base of the server: packages, the service user, the folders that survive every
upgrade, and the server-side helper."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import StringCommand, operation

from mmhelper.bundle import build as helper_bundle
from tasks.common import HELPER, MYSQL_MIGRATION_PACKAGES, current, managed_file, on_mysql, packages, path_info, render, settings

PROFILE = "/etc/profile.d/mattermost.sh"


@operation()
def packages_installed(wanted: list[str]):
    """Install the Debian packages the deploy needs (PostgreSQL, nginx, gpg, openssl, needrestart)."""
    missing = [p for p in wanted if p in current()["packages_missing"]]
    if not missing:
        host.noop("all packages are installed")
        return
    # NEEDRESTART_MODE=l: needrestart lists, never restarts services behind the operator's back.
    env = ["DEBIAN_FRONTEND=noninteractive", "NEEDRESTART_MODE=l"]
    yield StringCommand(
        *env, "apt-get", "update", "-q", "&&",
        *env, "apt-get", "install", "-y", "-q", "--no-install-recommends",
        "-o", "Dpkg::Options::=--force-confold", *missing)


@operation()
def service_user(user: str, home: str):
    """The system user Mattermost runs as: no login shell, no password."""
    if current()["user_exists"]:
        host.noop(f"user {user} exists")
        return
    yield StringCommand("useradd", "--system", "--user-group", "--home-dir", home,
                        "--no-create-home", "--shell", "/usr/sbin/nologin", user)


def wanted_folders(s) -> list[tuple[str, str, str, int]]:
    """(path, owner, group, mode) of every folder the deploy keeps, outside any release."""
    return [
        ("/etc/mattermost", "root", "root", 0o755),
        (s.deploy_state_dir, "root", "root", 0o700),
        (s.private_dir, "root", "root", 0o700),
        (s.releases_dir, "root", "root", 0o755),
        (s.state_dir, s.user, s.user, 0o750),
        (f"{s.state_dir}/config", s.user, s.user, 0o750),
        (f"{s.state_dir}/data", s.user, s.user, 0o750),
        (f"{s.state_dir}/plugins", s.user, s.user, 0o750),
        (f"{s.state_dir}/client-plugins", s.user, s.user, 0o750),
        (f"{s.state_dir}/tmp", s.user, s.user, 0o750),
        (s.log_dir, s.user, s.user, 0o750),
    ]


def folder_differs(info: dict | None, owner: str, group: str, mode: int) -> bool:
    return not info or info["type"] != "dir" or (info["owner"], info["group"], info["mode"]) != (owner, group, mode)


@operation()
def folders(wanted: list[tuple[str, str, str, int]]):
    """Create the state, log and release folders with their owners and modes."""
    todo = [w for w in wanted if folder_differs(path_info(w[0]), *w[1:])]
    if not todo:
        host.noop("all folders are in place")
        return
    for path, owner, group, mode in todo:
        yield StringCommand("install", "-d", "-o", owner, "-g", group, "-m", f"{mode:04o}", path)


def configure():
    s = settings()
    if on_mysql(current()):
        packages_installed(name="Install PostgreSQL, nginx, gpg, openssl, needrestart, and pgloader and the MySQL "
                                "client for the move to PostgreSQL", wanted=packages(s) + MYSQL_MIGRATION_PACKAGES)
    else:
        packages_installed(name="Install PostgreSQL, nginx, gpg, openssl and needrestart", wanted=packages(s))
    service_user(name=f"Create the system user {s.user}", user=s.user, home=s.state_dir)
    folders(name="Create the folders that survive upgrades (state, logs, releases)", wanted=wanted_folders(s))
    bundle = helper_bundle()
    managed_file(name="Install the deploy's server-side helper", path=HELPER, content=bundle, mode=0o755,
                 summary=f"the deploy's server-side helper, built from mmhelper/ ({len(bundle.encode())} bytes)")
    managed_file(name="Point mmctl at the local-mode socket for login shells",
                 path=PROFILE,
                 content=render("etc/profile.d/mattermost.sh.j2", s=s))
