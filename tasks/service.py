"""The mattermost systemd service: the official unit plus the sandboxing Mattermost
tolerates, /opt/mattermost pointed at the wanted release, and a run that only reports
success once the server answers a healthy ping with the wanted version."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import StringCommand, operation

from tasks.common import current, helper, managed_file, render, settings, streamed

UNIT = "/etc/systemd/system/mattermost.service"


def release_in_use(now: dict) -> str | None:
    install = now["install"]
    return install.get("version") if install["kind"] == "link" else None


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


@operation()
def running_and_healthy(version: str, changed: bool, reload_units: bool):
    """Enable the service, (re)start it when needed and wait for a healthy ping."""
    s, now = settings(), current()
    if reload_units or now["service"]["need_reload"]:
        yield "systemctl daemon-reload"
    if now["service"]["enabled"] != "enabled":
        yield "systemctl enable mattermost"
    reason = restart_reason(now, version, changed)
    if reason is None:
        host.noop(f"Mattermost {version} is running and healthy")
        return
    host.log(f"restarting Mattermost: {reason}")
    yield StringCommand("systemctl", "restart", "mattermost")
    yield streamed(helper("wait-healthy", {"url": s.ping_url, "version": version,
                                           "timeout": s.health_timeout, "service": "mattermost"}))


def configure(config_op, password_op):
    s = settings()
    unit = managed_file(name="Install the sandboxed mattermost.service unit", path=UNIT,
                        content=render("etc/systemd/system/mattermost.service.j2", s=s))
    link = install_dir_points_at(name=f"Point {s.install_dir} at release {s.version}", version=s.version)
    changed = any(op.will_change for op in (unit, link, config_op, password_op))
    running_and_healthy(name=f"Run Mattermost {s.version} and wait for a healthy ping",
                        version=s.version, changed=changed, reload_units=unit.will_change)
