"""OS updates between patch nights: needrestart lists (never restarts) what needs a
restart, and unattended-upgrades installs security updates only, rebooting only when the
operator set a window."""

from __future__ import annotations

from tasks.common import managed_file, render, settings

NEEDRESTART_CONF = "/etc/needrestart/conf.d/50-mattermost-deploy.conf"
AUTO_UPGRADES = "/etc/apt/apt.conf.d/20auto-upgrades"
UNATTENDED_CONF = "/etc/apt/apt.conf.d/52mattermost-deploy-unattended-upgrades"


def configure():
    s = settings()
    managed_file(name="Make needrestart list services, never restart them", path=NEEDRESTART_CONF,
                 content=render("etc/needrestart/conf.d/50-mattermost-deploy.conf.j2", s=s))
    state = "on, security updates only" if s.updates.unattended else "off"
    managed_file(name=f"Unattended upgrades: {state}", path=AUTO_UPGRADES,
                 content=render("etc/apt/apt.conf.d/20auto-upgrades.j2", s=s))
    if s.updates.unattended:
        reboot = f"reboot at {s.updates.unattended_reboot_time}" if s.updates.unattended_reboot_time else "no reboot"
        managed_file(name=f"Limit unattended upgrades to the security archive ({reboot})", path=UNATTENDED_CONF,
                     content=render("etc/apt/apt.conf.d/52mattermost-deploy-unattended-upgrades.j2", s=s))
