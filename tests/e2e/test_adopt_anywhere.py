"""A server that exists is never replaced: Mattermost 5.39 installed by hand on Debian 12
with MariaDB, filled through its old command line and API, each with one variation real
admins make - installed in /srv/mattermost; its unit called mattermost-server.service; its
config outside the install (`-c /etc/mattermost/config.json`). For each: `make diff` names
the adoption with the real paths and unit and changes nothing; `make deploy` adopts it;
exactly one unit runs Mattermost afterwards (the old one stopped and disabled, its file
kept); the PyPI client reads every piece of content back through nginx; the server
rebooted, Mattermost comes back with the content; a second `make deploy` changes nothing.

And what cannot be adopted is refused before any change, one line each: a Mattermost
database in MariaDB whose install is gone, and an unknown process on port 8065.

The servers of the story are prepared, adopted and rebooted side by side (threads: most of
the time is waiting on apt, MariaDB and Mattermost), each on its own container and ports.
Everything real: Mattermost 5.39 built from its Go module, Debian's MariaDB 10.11,
PostgreSQL, nginx, systemd."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests import oldserver, testhost
from tests.e2e.conftest import KEEP, Run, deploy, https_get, planned_changes, sh
from tests.e2e.oldstory import OLD, everything_is_there
from tests.oldserver import Layout

DB_PASSWORD = "hand-made-mysql-4711"  # the hand installs' own, test only
# name -> (layout, ssh port, https port)
VARIANTS = {
    "e2e-adopt-srv": (Layout(install_dir="/srv/mattermost"), 22351, 24471),
    "e2e-adopt-unit": (Layout(unit="mattermost-server"), 22352, 24472),
    "e2e-adopt-conf": (Layout(config="/etc/mattermost/config.json"), 22353, 24473),
}
ORPHAN_DB, STRANGER = ("e2e-refuse-db", 22354), ("e2e-refuse-port", 22355)
MADE: dict = {}
RUNS: dict = {}
OLD_DATA = {"mattermost_allow_below_7_1": True}  # 7.1 cannot be built here (README)


def side_by_side(fn, names):
    """fn(name) for each name at once; the first failure is raised."""
    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        return dict(zip(names, pool.map(fn, names), strict=True))


def prepare(name: str) -> dict:
    testhost.stop_server(name)
    if name in VARIANTS:
        layout, ssh_port, https_port = VARIANTS[name]
        testhost.start_server(name, ssh_port=ssh_port, https_port=https_port, distro="bookworm", extra_data=OLD_DATA)
        oldserver.install(name, OLD, "mysql", DB_PASSWORD, f"https://127.0.0.1:{https_port}", layout)
        return oldserver.seed(name, layout)
    if name == ORPHAN_DB[0]:
        # The install is gone (deleted by hand, a disk restored partly): its MariaDB database remains.
        testhost.start_server(name, ssh_port=ORPHAN_DB[1], distro="bookworm", extra_data=OLD_DATA)
        oldserver.install(name, OLD, "mysql", DB_PASSWORD, "https://127.0.0.1")
        oldserver.seed(name)
        sh(name, "systemctl disable --now mattermost && rm -rf /opt/mattermost /etc/systemd/system/mattermost.service "
                 "&& systemctl daemon-reload")
        return {}
    # Something that is not Mattermost listens on Mattermost's port (another service of the admin's).
    testhost.start_server(name, ssh_port=STRANGER[1], distro="bookworm")
    sh(name, "systemd-run --unit=team-wiki.service -p WorkingDirectory=/tmp python3 -m http.server 8065 "
             "&& for i in $(seq 1 50); do ss -ltn | grep -q ':8065 ' && exit 0; sleep 0.2; done; exit 1")
    return {}


@pytest.fixture(scope="module")
def servers():
    names = [*VARIANTS, ORPHAN_DB[0], STRANGER[0]]
    MADE.update(side_by_side(prepare, names))
    yield names
    if not KEEP:
        for name in names:
            testhost.stop_server(name)


def fingerprint(name: str) -> str:
    """What a refused run must not change: files under the system's folders (but what the
    running Mattermost writes on its own time: its logs, data and plugin folders), units,
    packages, services running, MariaDB's databases. Files are listed, not hashed, so a
    failure names them."""
    return sh(name, r"""
        find /etc /opt /srv /usr/local /var/lib/mattermost* -xdev -not -type d -not -path '*/logs/*' \
            -not -path '*/data/*' -not -path '*/plugins/*' -printf '%p %s %T@ %m %u\n' 2>/dev/null | sort
        systemctl list-unit-files --no-legend | sort | sha256sum
        systemctl list-units --state=active --no-legend | sort | sha256sum
        dpkg -l | sha256sum
        (mysql -N -B -e 'SHOW DATABASES' 2>/dev/null || true) | sha256sum""")


@pytest.mark.parametrize("name", list(VARIANTS))
def test_diff_names_the_adoption_with_the_real_paths_and_changes_nothing(servers, name):
    layout = VARIANTS[name][0]
    before = fingerprint(name)
    changes = planned_changes(name)
    assert f"Adopt the hand-installed Mattermost {OLD} in {layout.install_dir}" in changes, changes
    dry = deploy(name, "--dry")
    assert dry.ok, dry.output[-3000:]
    assert (f"the hand install in {layout.install_dir}: unit {layout.unit}.service; config {layout.config_file}; "
            "MySQL/MariaDB database mattermost") in dry.output
    assert fingerprint(name) == before


@pytest.fixture(scope="module")
def adopted(servers):
    RUNS.update(side_by_side(lambda name: deploy(name, timeout=1800), list(VARIANTS)))
    return RUNS


def mattermost_units(name: str) -> dict[str, str]:
    """Every unit file on the server that runs a Mattermost binary -> its enablement."""
    out = sh(name, "grep -l '^ExecStart=.*bin/mattermost' /etc/systemd/system/*.service /lib/systemd/system/*.service "
                   "2>/dev/null | xargs -n1 basename | while read u; do echo \"$u $(systemctl is-enabled $u)\"; done")
    return dict(line.split() for line in out.splitlines() if line.strip())


@pytest.mark.parametrize("name", list(VARIANTS))
def test_deploy_adopts_and_exactly_one_unit_runs_mattermost(adopted, name):
    layout, _, port = VARIANTS[name]
    run: Run = adopted[name]
    assert run.ok, run.output[-5000:]
    assert DB_PASSWORD not in run.output
    units = mattermost_units(name)
    enabled = [u for u, state in units.items() if state == "enabled"]
    assert enabled == ["mattermost.service"], units
    if layout.unit != "mattermost":
        assert units[f"{layout.unit}.service"] == "disabled"  # its file kept, for the way back
        assert sh(name, f"systemctl is-active {layout.unit} || true").strip() == "inactive"
    kept = sh(name, f"ls -d {layout.install_dir}.adopted-*").split()
    assert len(kept) == 1 and sh(name, f"test -x {kept[0]}/bin/mattermost && echo ok").strip() == "ok"
    assert sh(name, "readlink /opt/mattermost").strip() == f"/opt/mattermost-releases/{OLD}"
    assert sh(name, "systemctl show -p MainPID --value mattermost").strip() != "0"
    config = sh(name, "cat /var/lib/mattermost/config/config.json")
    assert '"SiteName": "Old Hand Installed Chat"' in config and "@tcp(localhost:3306)/mattermost" in config
    status, _, _ = https_get(port)
    assert status == 200
    everything_is_there(port, MADE[name])


def wait_healthy(port: int, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            status, _, body = https_get(port)
            if status == 200 and b'"database_status":"OK"' in body:
                return
        except OSError:
            pass
        time.sleep(2)
    raise AssertionError(f"Mattermost behind 127.0.0.1:{port} did not come back after the reboot")


def reboot(name: str) -> str:
    container = testhost.client().containers.get(testhost.container_name(name))
    started = container.attrs["State"]["StartedAt"]
    testhost.exec_on(name, "systemctl reboot")
    deadline = time.time() + 180
    while time.time() < deadline:
        container.reload()
        if container.attrs["State"]["StartedAt"] != started and container.status == "running":
            break
        time.sleep(1)
    wait_healthy(VARIANTS[name][2])
    return container.attrs["State"]["StartedAt"]


def test_after_a_reboot_mattermost_comes_back_with_the_content(adopted):
    assert all(run.ok for run in adopted.values())
    side_by_side(reboot, list(VARIANTS))
    for name, (_, _, port) in VARIANTS.items():
        assert list(mattermost_units(name).values()).count("enabled") == 1
        assert sh(name, "systemctl is-active mattermost").strip() == "active"
        everything_is_there(port, MADE[name])


@pytest.mark.parametrize("name", list(VARIANTS))
def test_a_second_deploy_changes_nothing(adopted, name):
    assert planned_changes(name) == []


def refused_before_any_change(name: str, *words: str) -> str:
    before = fingerprint(name)
    run = deploy(name)
    assert not run.ok
    failed = [line for line in run.output.splitlines() if line.startswith("FAILED:")]
    assert len(failed) == 1, run.output[-3000:]
    for word in words:
        assert word in failed[0], failed[0]
    assert fingerprint(name) == before
    return failed[0]


def test_a_mattermost_database_without_its_install_is_refused(servers):
    line = refused_before_any_change(ORPHAN_DB[0], "a Mattermost database 'mattermost' in MariaDB/MySQL with",
                                     "no install that uses it", "mattermost_adopt_path")
    assert "(nothing was changed)" in line


def test_an_unknown_process_on_8065_is_refused(servers):
    refused_before_any_change(STRANGER[0], "port 8065 is held by pid", "-m http.server 8065",
                              "unit team-wiki.service", "not a Mattermost this deploy can see")
