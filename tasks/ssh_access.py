"""SSH access: optionally move the operator from root to a named sudo user with key-only
login, in an order that cannot lock them out.

1. `ssh_admin_user` + `ssh_admin_keys`: the user is created with the keys and a sudoers
   entry (checked with `visudo -c` before it is installed); a NEW SSH connection as that
   user must then run `sudo -n true`, or the run stops.
2. Password logins are turned off (`sshd -t` checks the configuration first) and another
   new connection must still work, or the change is taken back at once.
3. `ssh_disable_root = True` is only accepted once the deploy itself connects as the
   admin user (inventory: `"ssh_user": "<user>", "_sudo": True`): the session that turns
   root off is already the one that will be used from then on.
"""

from __future__ import annotations

import hashlib
from io import StringIO

from pyinfra import host, logger
from pyinfra.api import FileUploadCommand, FunctionCommand, StringCommand, operation
from pyinfra.api.exceptions import DeployError

from tasks.common import current, new_ssh_login_works, path_info, run_on, settings

SUDOERS = "/etc/sudoers.d/90-mattermost-deploy"
SSHD_DROPIN = "/etc/ssh/sshd_config.d/50-mattermost-deploy.conf"


def check_admin_login(state, host, user: str) -> bool:
    if new_ssh_login_works(host, user, "sudo -n true"):
        return True
    logger.error(f"    [{host.name}] ERROR: {user} cannot log in with your key and use sudo: check ssh_admin_keys; "
                 "nothing else was changed")
    return False


@operation()
def admin_user(user: str, keys: list[str]):
    """The admin user with its keys and passwordless sudo, proven by a new login."""
    now = current()
    home = f"/home/{user}"
    keys_file = f"{home}/.ssh/authorized_keys"
    wanted = "".join(k.strip() + "\n" for k in keys)
    info = now["ssh"]
    if info["admin_exists"] and info["admin_keys"] == wanted and path_info(SUDOERS):
        host.noop(f"{user} logs in with its keys and may use sudo")
        return
    if not info["admin_exists"]:
        yield StringCommand("useradd", "--create-home", "--shell", "/bin/bash", user)
    yield StringCommand("install", "-d", "-m", "0700", "-o", user, "-g", user, f"{home}/.ssh")
    yield FileUploadCommand(StringIO(wanted), keys_file)
    yield StringCommand("chown", f"{user}:{user}", keys_file, "&&", "chmod", "600", keys_file)
    rule = f"{user} ALL=(ALL:ALL) NOPASSWD: ALL\n"
    yield FileUploadCommand(StringIO(rule), f"{SUDOERS}.new")
    yield StringCommand("chmod", "440", f"{SUDOERS}.new", "&&", "visudo", "-c", "-q", "-f", f"{SUDOERS}.new",
                        "&&", "mv", f"{SUDOERS}.new", SUDOERS)
    yield FunctionCommand(check_admin_login, (), {"user": user})


def keep_or_undo(state, host, user: str) -> bool:
    if new_ssh_login_works(host, user, "sudo -n true"):
        return True
    run_on(host, StringCommand("rm", "-f", SSHD_DROPIN, "&&", "systemctl", "reload", "ssh"))
    logger.error(f"    [{host.name}] ERROR: after the SSH change a new login as {user} failed; the change was taken "
                 "back (sshd reloaded without it)")
    return False


@operation()
def sshd_hardened(content: str, login_user: str, changed: bool):
    """Key-only SSH (and root off when asked): checked by sshd -t, kept only if a new login works."""
    if not changed:
        host.noop("sshd allows keys only, as configured")
        return
    yield StringCommand("install", "-d", "-m", "0755", "/etc/ssh/sshd_config.d")
    yield FileUploadCommand(StringIO(content), SSHD_DROPIN)
    yield StringCommand("sshd", "-t", "||", "{", "rm", "-f", SSHD_DROPIN, ";", "exit", "1;", "}")
    yield "systemctl reload ssh"
    yield FunctionCommand(keep_or_undo, (), {"user": login_user})


def sshd_dropin(s) -> str:
    lines = ["# Managed by the Mattermost deploy: key-only SSH logins.",
             "PasswordAuthentication no", "KbdInteractiveAuthentication no"]
    if s.ssh.disable_root:
        lines.append("PermitRootLogin no")
    return "\n".join(lines) + "\n"


def configure():
    s = settings()
    if not s.ssh.admin_user:
        return
    login_user = host.data.get("ssh_user") or "root"
    if s.ssh.disable_root and login_user == "root":
        raise DeployError(
            f"{s.host}: ssh_disable_root needs the deploy to connect as {s.ssh.admin_user} first: run once with "
            f"ssh_admin_user set, then set \"ssh_user\": \"{s.ssh.admin_user}\", \"_sudo\": True in inventory.py "
            "(nothing was changed)")
    admin_user(name=f"Create the admin user {s.ssh.admin_user} (SSH keys, sudo), proven by a new login",
               user=s.ssh.admin_user, keys=s.ssh.admin_keys)
    content = sshd_dropin(s)
    info = path_info(SSHD_DROPIN)
    changed = not info or info.get("sha256") != hashlib.sha256(content.encode()).hexdigest()
    managed = "key-only logins" + (", no root login" if s.ssh.disable_root else "")
    sshd_hardened(name=f"Harden sshd ({managed}), kept only if a new login works", content=content,
                  login_user=s.ssh.admin_user, changed=changed)
