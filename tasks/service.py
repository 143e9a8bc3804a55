"""The mattermost systemd service: the official unit plus the sandboxing Mattermost
tolerates, /opt/mattermost pointed at the wanted release, and a run that only reports
success once the server answers a healthy ping with the wanted version. Upgrades go
through the helper's `upgrade`: backup, short outage, automatic rollback."""

from __future__ import annotations

from pyinfra import host, logger
from pyinfra.api import FunctionCommand, operation

from tasks.backup import offsite_spec
from tasks.common import current, helper, managed_file, on_mysql, path_info, render, settings, streamed
from tasks.files import bucket_spec
from tasks.release import decision, installed_version

UNIT = "/etc/systemd/system/mattermost.service"


def client_root_html(s) -> str:
    """A web app file Mattermost rewrites at every start (see mmhelper client_writable)."""
    return f"{s.install_dir}/client/root.html"


def release_in_use(now: dict) -> str | None:
    install = now["install"]
    return install.get("version") if install["kind"] == "link" else None


@operation()
def client_files_writable(version: str):
    """Releases unpacked by an older deploy kept client/ root's: Mattermost then fails to
    update root.html at every start (logged; a SiteURL with a path breaks the web app)."""
    s, now = settings(), current()
    info = path_info(client_root_html(s))
    if release_in_use(now) != version or not info or info["owner"] == s.user:
        host.noop("Mattermost may update its web app files")
        return
    yield helper("client-writable", {"release_dir": s.release_dir(version), "user": s.user})


@operation()
def install_dir_points_at(version: str):
    """Point /opt/mattermost at the release folder of `version` (an atomic link swap)."""
    s, now = settings(), current()
    if release_in_use(now) == version:
        host.noop(f"{s.install_dir} points at {version}")
        return
    yield helper("switch", {"install_dir": s.install_dir, "releases_dir": s.releases_dir, "version": version})


def restart_reason(now: dict, version: str, changed: bool) -> str | None:
    """Why the service must be (re)started now, or None when it serves as wanted."""
    if changed:
        return "its release, unit or settings changed"
    service, health = now["service"], now["health"]
    if service["active"] != "active":
        return f"it is {service['active']}"
    if not health["ok"]:
        return f"it is unhealthy ({health['error']})"
    if health["version"] != version:
        return f"it runs {health['version']}, not {version}"
    return None


def units_ready(now: dict, reload_units: bool):
    if reload_units or now["service"]["need_reload"]:
        yield "systemctl daemon-reload"
    if now["service"]["enabled"] != "enabled":
        yield "systemctl enable mattermost"


@operation()
def running_and_healthy(version: str, changed: bool, reload_units: bool):
    """Enable the service, (re)start it when needed and wait for a healthy ping."""
    s, now = settings(), current()
    yield from units_ready(now, reload_units)
    reason = restart_reason(now, version, changed)
    if reason is None:
        host.noop(f"Mattermost {version} is running and healthy")
        return
    host.log(f"restarting Mattermost: {reason}")
    yield streamed(helper("start", {"url": s.ping_url, "version": version, "timeout": s.health_timeout,
                                    "start_timeout": s.start_timeout, "service": "mattermost"}))


def upgrade_spec(s, old: str, new: str) -> dict:
    return {
        "from": old, "to": new,
        "releases_dir": s.releases_dir, "install_dir": s.install_dir,
        "config_file": s.config_file, "user": s.user, "service": "mattermost",
        "db": {"name": s.db_name, "owner": s.db_user},
        "backup": {"backup_dir": s.backup_dir, "keep": s.backup_keep, "data_dir": s.data_dir,
                   "offsite": offsite_spec(s), "files": bucket_spec(s)},
        "ping_url": s.ping_url, "timeout": s.health_timeout, "start_timeout": s.start_timeout,
        "keep_releases": s.release.keep, "hold_file": s.hold_file, "check": check_spec(s),
    }


def check_spec(s) -> dict:
    """What the check after an upgrade's start needs (mmhelper/jobs/upgrade_check.py): the local
    socket, the probe's root-only token, and the site as nginx serves it on the server."""
    return {"socket": s.socket_path, "probe_token_file": s.probe_token_file, "domain": s.domain,
            "site_path": s.site_path, "log_dir": s.log_dir, "https_port": 443, "listen_port": 8065,
            "config_file": s.config_file}


@operation()
def upgraded(old: str, new: str, reload_units: bool):
    """Upgrade with a backup, a short outage and automatic rollback (see mmhelper upgrade)."""
    s, now = settings(), current()
    yield from units_ready(now, reload_units)
    yield streamed(helper("upgrade", upgrade_spec(s, old, new)))


def _stopped(state, host, reason):
    logger.error(f"    [{host.name}] ERROR: {reason}")
    return False


@operation(is_idempotent=False)
def upgrade_stopped(reason: str):
    """`make upgrade` fails where the chain stops short of the policy's version (the hops
    before it ran), with what comes next."""
    yield FunctionCommand(_stopped, (reason,), {})


def upgrade_chain(d, reload_units: bool = False) -> None:
    """One hop after the other, each with its own backup, health check and rollback: a failed
    hop stops the run at the last healthy one, and the next run goes on from there."""
    for number, (start, stop) in enumerate(d.chain, 1):
        of = f" (hop {number} of {len(d.chain)})" if len(d.chain) > 1 else ""
        upgraded(name=f"Upgrade Mattermost {start} -> {stop}{of}", old=start, new=stop,
                 reload_units=reload_units and number == 1)
    if d.stops_before and host.data.get("mattermost_upgrade_required"):
        upgrade_stopped(name=f"The upgrade stops at {d.target}", reason=f"the upgrade stops at {d.target}: "
                                                                        f"{d.stops_before}")


def configure(changes: list):
    s, d, now = settings(), decision(), current()
    unit = managed_file(name="Install the sandboxed mattermost.service unit", path=UNIT,
                        content=render("etc/systemd/system/mattermost.service.j2", s=s, mysql=on_mysql(now)))
    old = installed_version(now)
    if d.upgrade and old:
        upgrade_chain(d, reload_units=unit.will_change)
        return
    link = install_dir_points_at(name=f"Point {s.install_dir} at release {d.target}", version=d.target)
    client = client_files_writable(name="Let Mattermost update its web app files at start", version=d.target)
    changed = any(op.will_change for op in [unit, link, client, *changes])
    running_and_healthy(name=f"Run Mattermost {d.target} and wait for a healthy ping",
                        version=d.target, changed=changed, reload_units=unit.will_change)
