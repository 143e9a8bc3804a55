"""End-to-end harness: real Debian 12 containers (systemd, sshd, apt) reached over SSH,
the stand-in upstream on the same Docker network, and the deploy run exactly as the
operator runs it (`python -m tasks.run`, i.e. pyinfra inventory.py deploy.py)."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import testhost

ROOT = Path(__file__).resolve().parents[2]
KEEP = os.environ.get("MMDEPLOY_KEEP_TEST_SERVERS") == "1"  # leave containers up for debugging


@dataclass
class Run:
    returncode: int
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and "FAILED:" not in self.output


def run_env(target: str, env: dict | None) -> dict:
    """The operator's environment for a test server: only the test's own secrets."""
    environ = {k: v for k, v in os.environ.items() if k != "MATTERMOST_DB_PASSWORD"}
    environ.update(env or {}, MMDEPLOY_TARGET=target, PYINFRA_PROGRESS="off")
    return environ


def deploy(target: str, *args: str, env: dict | None = None, timeout: int = 1200) -> Run:
    """Run the deploy against a test server; returns exit code and the whole output."""
    environ = run_env(target, env)
    deploy_file = [args[0]] if args and args[0].endswith(".py") else []  # a verb instead of deploy.py
    args = args[len(deploy_file):]
    yes = [] if "--dry" in args else ["-y"]  # -y would skip the change detection a dry run shows
    proc = subprocess.run([sys.executable, "-m", "tasks.run", *deploy_file, *yes, *args], cwd=ROOT, env=environ,
                          capture_output=True, text=True, timeout=timeout)
    return Run(proc.returncode, proc.stdout + proc.stderr)


def killed_while(target: str, args: list[str], running: str, timeout: float, what: str) -> None:
    """Start a verb as the operator does (`python -m tasks.run ARGS`), wait until `running`
    shows in the server's process list, then SIGKILL the run and all it started on this
    workstation - a lost connection, a laptop closed in the middle."""
    import signal
    import time

    env = {k: v for k, v in os.environ.items() if k != "MATTERMOST_DB_PASSWORD"}
    env.update(MMDEPLOY_TARGET=target, PYINFRA_PROGRESS="off")
    proc = subprocess.Popen([sys.executable, "-m", "tasks.run", *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + timeout
        while running not in testhost.exec_on(target, "ps -eo args")[1]:
            assert time.time() < deadline, f"{what} never started"
            assert proc.poll() is None, f"the run ended before {what} could be killed"
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def planned_changes(target: str, *args: str, env: dict | None = None) -> list[str]:
    """Names of the operations a dry run says would change something (pyinfra --json)."""
    proc = subprocess.run([sys.executable, "-m", "tasks.run", "--dry", "--json", *args], cwd=ROOT,
                          env=run_env(target, env), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    plan = json.loads(proc.stdout)["plan"]
    return [op["name"] for op in plan if op["hosts_with_change"] or op["hosts_with_conditional_change"]]


def sh(target: str, command: str, user: str = "root") -> str:
    """A command inside the test server, for assertions; fails the test when it fails."""
    code, out = testhost.exec_on(target, command, user=user)
    assert code == 0, f"{command!r} failed ({code}): {out}"
    return out


def https_get(port: int, path: str = "/api/v4/system/ping?get_server_status=true"):
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # self-signed in tests
    try:
        with urllib.request.urlopen(f"https://127.0.0.1:{port}{path}", context=context, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def server_fingerprint(target: str) -> dict:
    """What must not change when the deploy refuses bad input."""
    out = sh(target, """
        echo link=$(readlink /opt/mattermost)
        echo releases=$(ls -A /opt/mattermost-releases | tr '\\n' ' ')
        echo pid=$(systemctl show -p MainPID --value mattermost)
        echo config=$(sha256sum /var/lib/mattermost/config/config.json | cut -c1-64)
        echo unit=$(sha256sum /etc/systemd/system/mattermost.service | cut -c1-64)
        echo nginx=$(sha256sum /etc/nginx/sites-available/mattermost.conf | cut -c1-64)
        echo active=$(systemctl is-active mattermost)
    """)
    return dict(line.split("=", 1) for line in out.split("\n") if "=" in line)


def _server(name: str, ssh_port: int, https_port: int):
    testhost.stop_server(name)  # always start from a fresh Debian 12
    desc = testhost.start_server(name, ssh_port=ssh_port, https_port=https_port)
    yield desc
    if not KEEP:
        testhost.stop_server(name)


# Stories that run side by side (`make test`: pytest-xdist, the scheduler in tests/conftest.py):
# longest first, so no long story starts last: minutes measured on this 2-core machine (pytest
# --durations), the rest count as short.
MINUTES = {
    "tests.e2e.test_bullseye": 20, "tests.e2e.test_security": 10,
    "tests.e2e.test_old_mysql": 6, "tests.e2e.test_os_upgrade": 6, "tests.e2e.test_remote_db": 6,
    "tests.e2e.test_adopt_anywhere": 6,
    "tests.e2e.test_upgrade_proven": 8, "tests.e2e.test_upgrade": 5, "tests.e2e.test_files_bucket": 5,
    "tests.e2e.test_move_database": 4, "tests.e2e.test_old_postgres": 4, "tests.e2e.test_offsite": 4,
    "tests.e2e.test_patch_night": 4, "tests.e2e.test_housekeeping": 3, "e2e-main": 3, "tests.e2e.test_notices": 3,
    "tests.e2e.test_managed_db": 3, "tests.e2e.test_site_path_and_calls": 3, "tests.e2e.test_tls": 2,
}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """The end-to-end stories longest first (each kept in its own order): the scheduler in
    tests/conftest.py hands them to the workers in this order."""
    from tests.conftest import story_of_nodeid

    stories = {item.nodeid: story_of_nodeid(item.nodeid).replace("/", ".").removesuffix(".py")
               for item in items if f"{os.sep}e2e{os.sep}" in str(item.path)}
    first = {}
    for index, item in enumerate(items):
        first.setdefault(stories.get(item.nodeid, item.nodeid), index)
    items.sort(key=lambda item: (-MINUTES.get(stories.get(item.nodeid), 0),
                                 first[stories.get(item.nodeid, item.nodeid)]))


@pytest.fixture(scope="session")
def main_server():
    yield from _server("e2e-main", 22301, 24431)


@pytest.fixture(scope="session")
def converged(main_server):
    """The main test server after its first converge from a fresh Debian 12."""
    run = deploy("e2e-main")
    assert run.ok, run.output[-5000:]
    return run
