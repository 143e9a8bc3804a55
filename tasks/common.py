"""Shared pieces of the deploy: settings and server state per host (each read once per
run), the server-side helper command, and a managed-file operation that costs no round
trip when the file is already right."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from io import StringIO
from pathlib import Path

import paramiko
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from pyinfra import host, logger, state
from pyinfra.api import FileUploadCommand, FunctionCommand, QuoteString, StringCommand, operation
from pyinfra.api.arguments import CONNECTOR_ARGUMENT_KEYS
from pyinfra.api.exceptions import DeployError
from pyinfra.facts.files import FileContents
from pyinfra.operations.util.files import generate_color_diff

from facts.mattermost import MattermostServer
from tasks import os_support
from tasks.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"
HELPER = "/usr/local/lib/mattermost-deploy/mmhelper.py"

PACKAGES = ["postgresql", "nginx", "gpg", "openssl", "ca-certificates", "python3", "needrestart"]
# A database server of other machines (mattermost_role "database"): PostgreSQL and no more.
DATABASE_SERVER_PACKAGES = ["postgresql", "ca-certificates", "python3", "needrestart"]


# What `make db-migrate` needs on a server still on MySQL/MariaDB: Debian's pgloader and the
# MySQL client (mysqldump, the digests). Installed only there (see base.configure).
MYSQL_MIGRATION_PACKAGES = ["pgloader", "mariadb-client"]


def on_mysql(now: dict) -> bool:
    """Mattermost's database is MySQL/MariaDB (an old hand install, before `make db-migrate`)."""
    return (now.get("database_engine") or {}).get("engine") == "mysql"


# security_hardening (tasks/hardening.py): what lynis counts and the server takes - package
# checksums, the packages' NEWS shown before an upgrade, a private temporary folder per login, a
# password strength check. Never apt-listbugs: it makes apt fail (exit 100) whenever bugs.debian.org cannot be asked.
HARDENING_PACKAGES = ["debsums", "apt-listchanges", "libpam-passwdqc"]


def packages(s: Settings) -> list[str]:
    # fail2ban reads SSH's failures from the journal (python3-systemd) and bans in nftables;
    # lynis is what `make security-report` measures the hardening with.
    security = ["lynis"] + (["fail2ban", "python3-systemd"] if s.security.fail2ban else []) + \
        (HARDENING_PACKAGES if s.security.hardening else [])
    nft = ["nftables"] if s.firewall or s.security.fail2ban else []
    if s.place.role == "database":
        return DATABASE_SERVER_PACKAGES + (["unattended-upgrades"] if s.updates.unattended else []) + \
            nft + security + (["sudo"] if s.ssh.admin_user else [])
    base = [("postgresql-client" if p == "postgresql" else p) for p in PACKAGES] if s.place.remote else PACKAGES
    return (base + (["unattended-upgrades"] if s.updates.unattended else []) + nft + security
            + (["certbot"] if s.acme_email else []) + (["sudo"] if s.ssh.admin_user else [])
            + (["restic", "openssh-client"] if s.offsite.repository else [])
            + (["rclone"] if s.files.bucket_configured else []))


def settings() -> Settings:
    """This host's settings, validated once per run."""
    cached = getattr(host, "_mm_settings", None)
    if cached is None:
        cached = load_settings(host.data, host.name)
        host._mm_settings = cached
    return cached


def current() -> dict:
    """What the server is now: the run's one snapshot, read once (tasks/state.py reads it,
    before the first operation). Operations decide from it."""
    cached = getattr(host, "_mm_state", None)
    if cached is None:
        raise DeployError(f"{host.name}: the server's state was not read: deploy.py and the verbs call "
                          "tasks.state.read() before anything else")
    return cached


def read_state(query: str) -> dict:
    """One fact, one round trip per run (pyinfra caches no fact): the helper's answer to
    `query`, checked, kept for the run."""
    cached = getattr(host, "_mm_state", None)
    if cached is None:
        cached = host.get_fact(MattermostServer, query=query)
        if cached is None:
            raise DeployError(f"{host.name}: python3 is missing on the server; install it "
                              "(apt-get install python3) and re-run")
        refused, warning = os_support.support(cached.get("os") or {}, bool(host.data.get("allow_untested_os")))
        if refused:
            raise DeployError(f"{host.name}: {refused} (nothing was changed)")
        if warning:
            logger.warning(f"    [{host.name}] {warning}")
        if (cached.get("os_updates") or {}).get("error"):
            raise DeployError(f"{host.name}: {cached['os_updates']['error']}")
        host._mm_state = cached
    return cached


def helper(subcommand: str, spec) -> StringCommand:
    """A call of the server-side helper; its arguments never hold a secret."""
    arg = spec if isinstance(spec, str) else json.dumps(spec, sort_keys=True)
    return StringCommand("python3", HELPER, subcommand, QuoteString(arg))


def streamed(command: StringCommand) -> FunctionCommand:
    """Run a long command with its output shown live (downloads, health waits), where
    pyinfra would otherwise stay silent until it ends."""
    return FunctionCommand(_run_streamed, [command], {})


def connector_arguments(host) -> dict:
    """Connection arguments (_sudo and friends) for commands run outside pyinfra's own
    command loop: inside an operation (a FunctionCommand - the yielding generator is
    suspended there) that operation's; outside one (the verbs' scripts) the host's data."""
    if host.current_op_global_arguments:
        return {k: v for k, v in host.current_op_global_arguments.items() if k in CONNECTOR_ARGUMENT_KEYS}
    return {k: host.data.get(k) for k in CONNECTOR_ARGUMENT_KEYS if host.data.get(k)}


def run_on(host, command, print_output: bool = False):
    """Run a command on the host with those arguments: (success, pyinfra's CommandOutput)."""
    command = command if isinstance(command, StringCommand) else StringCommand(command)
    return host.run_shell_command(command, print_output=print_output, **connector_arguments(host))


def _run_streamed(state, host, command):
    return run_on(host, command, print_output=True)[0]


def new_ssh_login_works(host, user: str | None = None, command: str = "true", attempts: int = 5) -> bool:
    """A FRESH SSH login with the operator's key, running `command` - what the next run
    (or the operator) will need. Retried for a few seconds: sshd re-executes on reload."""


    data = host.data
    last = None
    for attempt in range(attempts):
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())  # reachability, not identity
        try:
            client.connect(data.get("ssh_hostname") or host.name, port=int(data.get("ssh_port") or 22),
                           username=user or data.get("ssh_user") or "root", key_filename=data.get("ssh_key"),
                           timeout=15, banner_timeout=15, auth_timeout=15)
            _, stdout, _ = client.exec_command(command)
            if stdout.channel.recv_exit_status() == 0:
                return True
            last = f"`{command}` failed"
        except Exception as e:  # any failure means: not proven
            last = str(e) or type(e).__name__
        finally:
            client.close()
        if attempt + 1 < attempts:
            time.sleep(2)
    logger.error(f"    [{host.name}] a new SSH login as {user or data.get('ssh_user') or 'root'} failed: {last}")
    return False


def render(template: str, **context) -> str:
    env = Environment(loader=FileSystemLoader(TEMPLATES), undefined=StrictUndefined,
                      keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    return env.get_template(template).render(**context)


def path_info(path: str) -> dict | None:
    """Type, owner, mode and SHA-256 of a path as the state snapshot saw it (None: absent)."""
    paths = current()["paths"]
    if path not in paths:  # a path the state query does not ask about would always look absent
        raise KeyError(f"{path} is missing from tasks.state.managed_paths")
    return paths[path]


@operation()
def after_database_servers():
    """A meeting point, called from one line for every server of a run: pyinfra runs an
    operation shared by several servers after each one's operations before it, so the
    Mattermost servers' steps after it wait for the database servers' before it."""
    host.noop("the database servers of this run are done with their part")
    return
    yield


def file_matches(info: dict | None, content: str, user: str = "root", group: str = "root",
                 mode: int = 0o644) -> tuple[bool, bool]:
    """(same content, same owner and mode) of a file as the state read saw it (`info`: None
    when absent) against what the deploy wants there."""
    same_content = bool(info and info.get("sha256") == hashlib.sha256(content.encode()).hexdigest())
    same_meta = bool(info and (info["owner"], info["group"], info["mode"]) == (user, group, mode))
    return same_content, same_meta


@operation()
def managed_file(path: str, content: str, user: str = "root", group: str = "root", mode: int = 0o644,
                 summary: str | None = None):
    """Upload `content` to `path` unless the server already has exactly that (content,
    owner, mode) - decided from the run's state snapshot, without another round trip.

    + path: where the file lands
    + content: the whole file (never a secret: --diff prints it)
    + user, group, mode: ownership and permissions
    + summary: what --diff says instead of the whole diff (a program is reviewed by its digest)

    Example: managed_file(name="Install the unit", path="/etc/x", content="...")
    """
    info = path_info(path)
    same_content, same_meta = file_matches(info, content, user, group, mode)
    if same_content and same_meta:
        host.noop(f"{path} is up to date")
        return
    if not same_content:
        if state.config.DIFF and summary:
            digest = hashlib.sha256(content.encode()).hexdigest()
            host.log(f"Will {'update' if info else 'install'} {path}: {summary}, sha256 {digest}", logger.info)
        elif state.config.DIFF:
            _log_diff(path, info, content)
        if info is None:
            yield StringCommand("mkdir", "-p", path.rsplit("/", 1)[0])
        yield FileUploadCommand(StringIO(content), path)
    yield StringCommand("chown", f"{user}:{group}", path, "&&", "chmod", f"{mode:o}", path)


def _log_diff(path: str, info: dict | None, content: str) -> None:
    current_lines = []
    if info and info.get("type") == "file":
        current_lines = [line + "\n" for line in (host.get_fact(FileContents, path=path) or [])]
    host.log(f"Will {'modify' if info else 'create'} {path}", logger.info)
    for line in generate_color_diff(current_lines, content.splitlines(keepends=True)):
        logger.info("  %s", line)


def upload_secret(content: str, dest: str, private_dir: str):
    """Commands that place a secret file: the upload lands inside a root-only folder
    (or, under sudo, a 0700 folder of the SSH user), never world-readable, never printed."""
    yield StringCommand("install", "-d", "-m", "0700", "-o", "root", "-g", "root", private_dir)
    if host.data.get("_sudo"):
        tmp_dir = f"/tmp/mmdeploy-{secrets.token_hex(8)}"
        yield StringCommand("mkdir", "-m", "0700", tmp_dir, _sudo=False)
        yield FileUploadCommand(StringIO(content), dest, remote_temp_filename=f"{tmp_dir}/upload")
        yield StringCommand("rm", "-rf", tmp_dir, _sudo=False)
    else:
        yield FileUploadCommand(StringIO(content), dest)
    yield StringCommand("chown", "root:root", dest, "&&", "chmod", "600", dest)


def as_template(path: str) -> str:
    """What `make diff` says of a file the repository fixes (no setting changes it) instead of
    printing it: where to read it."""
    return f"as templates/{path.lstrip('/')}.j2 has it"


@operation()
def timer_on(timer: str, state_key: str, what: str, reload_units: bool):
    """Enable and start one of the deploy's timers (systemd's units reloaded first) unless it
    already runs as installed.

    + timer: the unit, e.g. mattermost-backup.timer
    + state_key: where the state read reports it ({"enabled": ..., "active": ...})
    + what: the timer in words, for the no-op line
    + reload_units: its unit files changed in this run

    Example: timer_on(name="Enable the backup", timer="mattermost-backup.timer", state_key="backup_timer",
                      what="the nightly backup timer", reload_units=True)
    """
    now = current().get(state_key) or {}
    if not reload_units and now.get("enabled") == "enabled" and now.get("active") == "active":
        host.noop(f"{what} is enabled")
        return
    yield f"systemctl daemon-reload && systemctl enable -q --now {timer}"


@operation()
def timer_off(timer: str, files: list[str], what: str):
    """The way back of timer_on: the timer stopped and disabled, its files (the first is the
    timer's unit) removed.

    Example: timer_off(name="Remove the backup timer", timer="mattermost-backup.timer",
                       files=[TIMER, SERVICE], what="nightly backup timer")
    """
    if not path_info(files[0]):
        host.noop(f"no {what}")
        return
    yield StringCommand("systemctl", "disable", "--now", timer, "2>/dev/null;",
                        "rm", "-f", *files, "&&", "systemctl", "daemon-reload")
