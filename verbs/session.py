"""Connect to the inventory's servers from a workstation script, the way the pyinfra CLI
does, so a verb can read facts per host (status) or stream a file (fetch-backup)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

from pyinfra.api import Config, State
from pyinfra.api.connect import connect_all
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.state import BaseStateCallback
from pyinfra.context import ctx_config, ctx_host, ctx_inventory, ctx_state
from pyinfra_cli.inventory import make_inventory
from pyinfra_cli.util import parse_cli_arg

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def connected(argv: list[str] | None = None) -> Iterator[tuple[State, list]]:
    """(state, [(host, error or None)]) for every host in inventory.py; `--data key=value`
    in argv overrides host data as with the pyinfra CLI."""
    logging.getLogger("pyinfra").setLevel(logging.WARNING)
    state = State(check_for_changes=False)
    state.cwd = str(ROOT)
    ctx_state.set(state)
    config = Config()
    ctx_config.set(config)
    inventory = make_inventory(str(ROOT / "inventory.py"), cwd=str(ROOT), override_data=override_data(argv or []))
    ctx_inventory.set(inventory)
    state.init(inventory, config)
    errors = ConnectErrors()
    state.add_callback_handler(errors)
    logging.getLogger("pyinfra").setLevel(logging.CRITICAL)  # its own lines about the failure: ours say it once
    try:
        connect_all(state)
    except PyinfraError:
        pass  # no host could be reached: each one is reported below
    finally:
        logging.getLogger("pyinfra").setLevel(logging.WARNING)
    hosts = [(h, None if h in state.activated_hosts else errors.text(h)) for h in inventory]
    try:
        yield state, hosts
    finally:
        for h, error in hosts:
            if error is None:
                with contextlib.suppress(Exception):
                    h.disconnect()


class ConnectErrors(BaseStateCallback):
    """Why each host could not be reached, as pyinfra's connector said it."""

    def __init__(self):
        self.by_host = {}

    def host_connect_error(self, state, host, error):  # noqa: ARG002 (pyinfra's callback signature)
        self.by_host[host.name] = str(error.args[0] if getattr(error, "args", None) else error)

    def text(self, host) -> str:
        """The reason without the host's name (callers print `FAILED: host: ...`)."""
        from tasks.run import ssh_failure

        return ssh_failure(host.name, self.by_host.get(host.name, "no answer")).split(": ", 1)[1]


def each_host(argv: list[str], read, database_servers: bool = False) -> list[tuple[str, object, str | None]]:
    """(host name, read(host), None) for every Mattermost server of the inventory, or
    (name, None, why) when it cannot be reached or the read fails with the operator's reason.
    Database servers of other machines (mattermost_role "database") have no Mattermost to
    read and are left out, unless the verb has their part too (`database_servers`)."""
    from tasks.common import settings

    out = []
    with connected(argv) as (_, hosts):
        for host, error in hosts:
            if error:
                out.append((host.name, None, error))
                continue
            try:
                with on(host):
                    if settings().place.role == "database" and not database_servers:
                        continue
                    out.append((host.name, read(host), None))
            except PyinfraError as e:
                out.append((host.name, None, str(e)))
    return out


def read_plans(argv: list[str], read, database_servers: bool = False) -> tuple[dict, bool]:
    """({host name: read(host)} of the hosts that could be read, whether any could not); one
    FAILED line on stderr for each that could not."""
    import sys

    results = each_host(argv, read, database_servers)
    for name, _, error in results:
        if error:
            print(f"FAILED: {name}: {error}", file=sys.stderr)
    return {name: plan for name, plan, error in results if not error}, any(error for *_, error in results)


def report_plans(argv: list[str], read, text) -> int:
    """A plan verb's whole run: read(host) per host, printed as text(host name, plan) (or all
    as JSON with --json), one FAILED line per host that could not be read; the exit status."""
    import json

    plans, failed = read_plans(argv, read)
    if plans or "--json" in argv:
        print(json.dumps(plans, indent=1, sort_keys=True) if "--json" in argv else
              "\n".join(text(name, plan) for name, plan in plans.items()))
    return 1 if failed else 0


def override_data(argv: list[str]) -> dict:
    data = {}
    for i, arg in enumerate(argv):
        if arg == "--data" and i + 1 < len(argv) and "=" in argv[i + 1]:
            key, value = argv[i + 1].split("=", 1)
            data[key] = parse_cli_arg(value)
    return data


def positional(argv: list[str]) -> list[str]:
    """Arguments that are not `--data key=value`."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--data":
            skip = True
        elif not arg.startswith("--"):
            out.append(arg)
    return out


@contextlib.contextmanager
def on(host):
    with ctx_host.use(host):
        yield host


def stream_to(host, command: str, dest, label: str) -> tuple[bool, int, str]:
    """Run `command` on the host (as root through sudo when the inventory says so) and
    write what it prints to `dest` (0600; atomically renamed by the caller). Returns
    (success, bytes, error text)."""
    import os

    if host.data.get("_sudo"):
        command = "sudo -n " + command
    _, stdout, stderr = host.connector.client.exec_command(command)
    done, shown = 0, 0
    with open(dest, "wb") as f:
        os.chmod(dest, 0o600)  # backups and exports hold every message
        while chunk := stdout.read(1 << 20):
            f.write(chunk)
            done += len(chunk)
            if done - shown >= 64 << 20:
                print(f"  {label}: {done >> 20} MB", flush=True)
                shown = done
    ok = stdout.channel.recv_exit_status() == 0
    return ok, done, "" if ok else stderr.read().decode(errors="replace").strip()[-300:]
