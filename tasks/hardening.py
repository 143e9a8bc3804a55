"""The operating system hardened as lynis measures it (security_hardening, README "Hardening
(lynis)"): only what was measured not to break the deploy, a second run, key logins, backups, apt
and unattended-upgrades - lynis' index from about 65 to 77 (Debian 13) and 78 (Debian 12).

- sshd: no forwarding of any kind, a verbose log (key fingerprints), dead sessions dropped.
  Written, checked by `sshd -t` (the previous file put back when it fails), reloaded, and kept
  only when a NEW SSH login works - as the firewall proves itself.
- login.defs: hashing rounds and a day between password changes, edited line by line (a conffile:
  Debian keeps the local version on upgrades).
- a legal banner, kernel modules a VPS never needs refused, no core dumps, fail2ban's
  jail.local (a comment: the deploy's jails are in jail.d), kernel settings (sysctl; applied
  where the kernel lets them - a container's read-only /proc/sys is named, never a failure).
- debsums, apt-listchanges and libpam-passwdqc (installed with the deploy's
  packages, tasks/common.py).

The way back (security_hardening = False): the deploy's drop-ins are removed (sshd checked and
reloaded); the packages, login.defs' lines, the banner and jail.local stay.
"""

from __future__ import annotations

import ipaddress
from io import StringIO

from pyinfra import host, logger
from pyinfra.api import FileUploadCommand, FunctionCommand, QuoteString, StringCommand, operation

from tasks import security
from tasks.common import (
    as_template,
    current,
    file_matches,
    managed_file,
    new_ssh_login_works,
    path_info,
    render,
    run_on,
    settings,
)

SSHD_DIR = "/etc/ssh/sshd_config.d"
# 10- sorts before ssh_access's 50-mattermost-deploy.conf and cloud images' 50-cloud-init.conf:
# sshd keeps the first value it reads of each setting.
SSHD_DROPIN = f"{SSHD_DIR}/10-mattermost-hardening.conf"
SSHD_PREVIOUS = "/etc/ssh/10-mattermost-hardening.conf.previous"  # outside sshd_config.d: never read by sshd
MODPROBE = "/etc/modprobe.d/mattermost-hardening.conf"
COREDUMP = "/etc/systemd/coredump.conf.d/mattermost-hardening.conf"
LIMITS = "/etc/security/limits.d/mattermost-hardening.conf"
PROFILE = "/etc/profile.d/mattermost-hardening.sh"
SYSCTL_FILE = "/etc/sysctl.d/60-mattermost-hardening.conf"
LOGIN_DEFS = "/etc/login.defs"
ISSUE, ISSUE_NET = "/etc/issue", "/etc/issue.net"
JAIL_LOCAL = "/etc/fail2ban/jail.local"
# The deploy's own files: removed on the way back.
DROPINS = [SSHD_DROPIN, MODPROBE, COREDUMP, LIMITS, PROFILE, SYSCTL_FILE]
PATHS = [*DROPINS, LOGIN_DEFS, ISSUE, ISSUE_NET, JAIL_LOCAL]

SSHD = {
    "AllowTcpForwarding": "no",
    "AllowAgentForwarding": "no",
    "X11Forwarding": "no",
    "ClientAliveInterval": "300",
    "ClientAliveCountMax": "2",
    "TCPKeepAlive": "no",
    "LogLevel": "VERBOSE",
    "Compression": "no",
}
# Not PASS_MAX_DAYS: useradd copies it into the admin user's account, which then expires and
# refuses key logins ("Password change required but no TTY available").
LOGIN_DEFS_KEYS = {"SHA_CRYPT_MIN_ROUNDS": "5000", "SHA_CRYPT_MAX_ROUNDS": "5000", "PASS_MIN_DAYS": "1"}
# lynis needs more than four of its words (authorized, monitor, law, prohibited, ...) to count it.
BANNER = ("Authorized access only. This system is private: activity is monitored and logged, and unauthorized use "
          "is prohibited and may be reported to law enforcement.")
DISABLED_MODULES = ("usb-storage", "firewire-core", "firewire-ohci", "dccp", "sctp", "rds", "tipc")
BLACKLISTED_MODULES = ("usb-storage", "firewire-core", "firewire-ohci")
# Never ip_forward: left to whoever routes (a VPN, containers).
SYSCTL = {
    "dev.tty.ldisc_autoload": "0",
    "fs.protected_fifos": "2",
    "fs.protected_regular": "2",
    "fs.protected_symlinks": "1",
    "kernel.core_uses_pid": "1",
    "kernel.ctrl-alt-del": "0",
    "kernel.kptr_restrict": "2",
    "kernel.unprivileged_bpf_disabled": "1",
    "kernel.perf_event_paranoid": "3",
    "net.ipv4.conf.all.log_martians": "1",
    "net.ipv4.conf.all.rp_filter": "1",
    "net.ipv4.conf.all.send_redirects": "0",
    "net.ipv4.conf.default.accept_redirects": "0",
    "net.ipv4.conf.default.accept_source_route": "0",
    "net.ipv4.conf.default.log_martians": "1",
    "net.ipv6.conf.all.accept_redirects": "0",
    "net.ipv6.conf.default.accept_redirects": "0",
}


def query_keys() -> dict[str, list[str]]:
    """What the state read reports of the files the deploy edits but does not own."""
    return {LOGIN_DEFS: list(LOGIN_DEFS_KEYS)}


# OpenSSH 9.8 and later (Debian 13) penalise an address after failed logins by refusing its
# connections (PerSourcePenalties, on by default) - the workstation's too: seven tries with the
# wrong key and the next deploy got "Error reading SSH protocol banner". Earlier sshd refuses the key.
NO_PENALTIES_BEFORE = ("buster", "bullseye", "bookworm")


def penalty_exempt(never_ban: list[str]) -> str:
    """sshd's form of the never-banned addresses: networks with their host bits zero."""
    return ",".join(dict.fromkeys(str(ipaddress.ip_network(a, strict=False)).removesuffix("/32").removesuffix("/128")
                                  for a in never_ban))


def sshd_options(exempt: list[str] | None = None) -> dict[str, str]:
    """The drop-in's settings; `exempt`: the never-banned addresses where sshd penalises addresses."""
    return {**SSHD, "PerSourcePenaltyExemptList": penalty_exempt(exempt)} if exempt else dict(SSHD)


def files(fail2ban: bool = True, exempt: list[str] | None = None) -> dict[str, str]:
    """Every file the hardening writes whole, as it lands: {path: content}."""
    out = {
        SSHD_DROPIN: render("etc/ssh/sshd_config.d/10-mattermost-hardening.conf.j2", options=sshd_options(exempt)),
        ISSUE: BANNER + "\n",
        ISSUE_NET: BANNER + "\n",
        MODPROBE: render("etc/modprobe.d/mattermost-hardening.conf.j2", disabled=DISABLED_MODULES,
                         blacklisted=BLACKLISTED_MODULES),
        COREDUMP: render("etc/systemd/coredump.conf.d/mattermost-hardening.conf.j2"),
        LIMITS: render("etc/security/limits.d/mattermost-hardening.conf.j2"),
        PROFILE: render("etc/profile.d/mattermost-hardening.sh.j2"),
        SYSCTL_FILE: render("etc/sysctl.d/60-mattermost-hardening.conf.j2", settings=SYSCTL),
    }
    if fail2ban:
        out[JAIL_LOCAL] = render("etc/fail2ban/jail.local.j2")
    return out


# ---- sshd

RESTORE_SSHD = f"if [ -e {SSHD_PREVIOUS} ]; then mv -f {SSHD_PREVIOUS} {SSHD_DROPIN}; else rm -f {SSHD_DROPIN}; fi"


def not_in_effect(effective: str) -> list[str]:
    """The hardening settings sshd does not run with, from `sshd -T` (lower-case keys): another
    file read before ours sets them."""
    running = {}
    for line in effective.splitlines():
        key, _, value = line.strip().partition(" ")
        running[key.lower()] = value.strip()
    return [f"{key} {value}" for key, value in SSHD.items() if running.get(key.lower(), "").lower() != value.lower()]


def sshd_kept_if_login_works(state, host) -> bool:
    if new_ssh_login_works(host):
        return True
    run_on(host, StringCommand(RESTORE_SSHD, "&&", "systemctl", "reload", "ssh"))
    logger.error(f"    [{host.name}] ERROR: with the sshd hardening a new SSH login failed; the previous {SSHD_DROPIN} "
                 "is back and sshd reloaded (security_hardening = False leaves sshd as it was)")
    return False


def sshd_settings_said(state, host) -> bool:
    """Say which settings another drop-in (or sshd_config before its Include) overrides."""
    ok, output = run_on(host, StringCommand("sshd", "-T"))
    missing = not_in_effect(output.stdout) if ok else []
    if not ok:
        logger.warning(f"    [{host.name}] `sshd -T` did not answer: the hardening's settings in effect are unchecked")
    elif missing:
        logger.warning(f"    [{host.name}] sshd does not run with {', '.join(missing)}: a file read before "
                       f"{SSHD_DROPIN} sets it (or sshd_config has no Include of sshd_config.d)")
    return True


@operation()
def sshd_hardened(content: str):
    """sshd's hardening drop-in: written, checked by `sshd -t` (the previous file put back when
    it fails), sshd reloaded, kept only if a new SSH login works.

    + content: the drop-in as it lands

    Example: sshd_hardened(name="Harden sshd", content=files()[SSHD_DROPIN])
    """
    if all(file_matches(path_info(SSHD_DROPIN), content)):
        host.noop("sshd runs with the hardening drop-in")
        return
    yield (f"install -d -m 0755 {SSHD_DIR} && rm -f {SSHD_PREVIOUS} && "
           f"if [ -e {SSHD_DROPIN} ]; then cp -p {SSHD_DROPIN} {SSHD_PREVIOUS}; fi")
    yield FileUploadCommand(StringIO(content), SSHD_DROPIN)
    yield StringCommand("chown", "root:root", SSHD_DROPIN, "&&", "chmod", "644", SSHD_DROPIN)
    yield (f"sshd -t || {{ {RESTORE_SSHD}; echo 'ERROR: sshd -t refused the configuration with {SSHD_DROPIN} "
           "(its message above): the previous file is back, sshd was not reloaded' >&2; exit 1; }")
    yield "systemctl reload ssh"
    yield FunctionCommand(sshd_kept_if_login_works, (), {})
    yield StringCommand("rm", "-f", SSHD_PREVIOUS)
    yield FunctionCommand(sshd_settings_said, (), {})


# ---- login.defs

def login_defs_changes(now: dict | None) -> dict[str, str]:
    """The login.defs keys to write: absent, or with another value (`now`: the file's values,
    None for a key it does not set; None for no file)."""
    now = now or {}
    return {key: value for key, value in LOGIN_DEFS_KEYS.items() if now.get(key) != value}


def login_defs_line(key: str, value: str, path: str = LOGIN_DEFS) -> str:
    """The shell that sets `KEY<tab>value` in place: the key's lines replaced, else one appended."""
    return (f"if grep -qE '^{key}([[:space:]]|$)' {path}; then "
            f"sed -i -E 's/^{key}([[:space:]].*)?$/{key}\\t{value}/' {path}; "
            f"else {{ [ ! -s {path} ] || [ -z \"$(tail -c 1 {path})\" ] || echo >> {path}; }}; "
            f"printf '%s\\t%s\\n' {key} {value} >> {path}; fi")


@operation()
def login_defs_set():
    """Password hashing rounds and the minimum password age in /etc/login.defs, line by line."""
    changes = login_defs_changes((current().get("file_keys") or {}).get(LOGIN_DEFS))
    if not changes:
        host.noop(f"{LOGIN_DEFS} has the hardening's values")
        return
    for key, value in changes.items():
        yield login_defs_line(key, value)


# ---- fail2ban's jail.local

@operation()
def jail_local_created(content: str):
    """jail.local as lynis wants one: created when absent, never changed after (the operator's)."""
    if path_info(JAIL_LOCAL):
        host.noop(f"{JAIL_LOCAL} is there (kept as it is)")
        return
    yield "install -d -m 0755 /etc/fail2ban"
    yield FileUploadCommand(StringIO(content), JAIL_LOCAL)
    yield StringCommand("chown", "root:root", JAIL_LOCAL, "&&", "chmod", "644", JAIL_LOCAL)


# ---- sysctl

def sysctl_check_script() -> str:
    """Apply the file, then print each key this kernel does not run with; always exit 0."""
    checks = [f'[ "$(sysctl -n {key} 2>/dev/null)" = "{value}" ] || echo {key}' for key, value in SYSCTL.items()]
    return f"sysctl -p {SYSCTL_FILE} >/dev/null 2>&1; " + "; ".join(checks) + "; true"


def sysctl_report(state, host) -> bool:
    ok, output = run_on(host, StringCommand("sh", "-c", QuoteString(sysctl_check_script())))
    refused = [line.strip() for line in output.stdout_lines if line.strip()] if ok else list(SYSCTL)
    if refused:
        logger.warning(f"    [{host.name}] kernel settings not applied ({len(refused)} of {len(SYSCTL)}: "
                       f"{', '.join(refused)}): this kernel refused them (/proc/sys is read-only in a container); "
                       f"{SYSCTL_FILE} is read again at each boot")
    return True


@operation()
def sysctl_applied(changed: bool):
    """Apply the kernel settings when their file changed; keys the kernel refuses are named, not failed."""
    if not changed:
        host.noop("the kernel settings are as written (applied when the file changed, and at each boot)")
        return
    yield FunctionCommand(sysctl_report, (), {})


# ---- the way back

def remove_sshd_dropin() -> str:
    return (f"mv -f {SSHD_DROPIN} {SSHD_PREVIOUS} && if sshd -t; then rm -f {SSHD_PREVIOUS} && systemctl reload ssh; "
            f"else mv -f {SSHD_PREVIOUS} {SSHD_DROPIN}; echo 'ERROR: sshd -t refused the configuration without "
            f"{SSHD_DROPIN} (its message above): the file is back, sshd was not reloaded' >&2; exit 1; fi")


@operation()
def dropins_removed():
    """The way back: the deploy's hardening drop-ins removed, sshd checked and reloaded without its own."""
    present = [path for path in DROPINS if path_info(path)]
    if not present:
        host.noop("no hardening drop-ins of the deploy here")
        return
    others = [path for path in present if path != SSHD_DROPIN]
    if others:
        yield StringCommand("rm", "-f", *others)
    if SSHD_DROPIN in present:
        yield remove_sshd_dropin()


def configure():
    s = settings()
    if not s.security.hardening:
        dropins_removed(name="No hardening (security_hardening = False): remove the deploy's drop-ins (sshd checked, "
                             "reloaded)")
        return
    codename = (current().get("os") or {}).get("codename")
    exempt = security.never_ban(s, current()) if codename not in NO_PENALTIES_BEFORE else None
    wanted = files(fail2ban=s.security.fail2ban, exempt=exempt)
    sshd_hardened(name="Harden sshd: no forwarding, verbose log (sshd -t, then a new login proven)", content=wanted[SSHD_DROPIN])
    login_defs_set(name="login.defs: 5000 password hashing rounds, a day between password changes")
    for path in (ISSUE, ISSUE_NET):
        managed_file(name=f"Show a legal banner before login ({path})", path=path, content=wanted[path])
    managed_file(name="Never load USB storage, FireWire, dccp, sctp, rds or tipc", path=MODPROBE,
                 content=wanted[MODPROBE], summary=as_template(MODPROBE))
    managed_file(name="No core dumps: systemd-coredump keeps none", path=COREDUMP, content=wanted[COREDUMP],
                 summary=as_template(COREDUMP))
    managed_file(name="No core dumps: login sessions' limit", path=LIMITS, content=wanted[LIMITS],
                 summary=as_template(LIMITS))
    managed_file(name="No core dumps: login shells' ulimit", path=PROFILE, content=wanted[PROFILE],
                 summary=as_template(PROFILE))
    if s.security.fail2ban:
        jail_local_created(name="Give fail2ban a jail.local (one that exists is kept)", content=wanted[JAIL_LOCAL])
    kernel = managed_file(name="Write the kernel's hardening settings (sysctl; forwarding left as it is)",
                          path=SYSCTL_FILE, content=wanted[SYSCTL_FILE], summary=as_template(SYSCTL_FILE))
    sysctl_applied(name="Apply them (keys the kernel refuses are named, not failed)",
                   changed=kernel.will_change)
