"""The oldest servers still running, as one story: Mattermost 5.39 installed by hand years ago on
Debian 11 (bullseye) with MariaDB 10.5, which listens on its socket only, the database login's
password holding every printable special character; used since (the old command line and the
API: non-ASCII names, a long post, files, reactions, a custom emoji, a pin, an archived
channel, a deactivated user). Carried to Debian 13 and Mattermost 11.4 on one planned path:

`make diff` shows the adoption and `make upgrade-plan` the whole path -> `make deploy` adopts it
(the helper on Debian 11's Python 3.9) -> `make db-migrate` with Debian 11's pgloader 3.6.2 over
the socket, the password never on a command line (first against a broken source: pgloader's
ERROR fails the copy and Mattermost is back on MySQL) -> `make upgrade` runs the hops
PostgreSQL 13 allows and stops before 11.4 naming `make os-upgrade` -> `make os-upgrade`: 11 ->
12 (SIGKILLed in the middle and run again) -> 13, PostgreSQL 13 -> 15 -> 17 -> `make upgrade`
reaches 11.4 -> everything made years ago is read back through nginx, old passwords log in -> a
second `make deploy` changes nothing.

Everything real: Debian 11's archive (bullseye, bullseye-security), its MariaDB 10.5,
PostgreSQL 13 and pgloader 3.6.2, Debian's own release upgrades, Mattermost 5.39/6.3/10.3/11.4
built from their Go modules."""

from __future__ import annotations

import shlex
import subprocess
import sys

import pytest

from tests import oldserver, testhost
from tests.e2e import oldstory
from tests.e2e.conftest import KEEP, ROOT, deploy, killed_while, planned_changes, run_env, sh
from tests.e2e.oldstory import OLD, everything_is_there
from tests.standin.build import ESR_VERSION, OLD_RELEASES, OLDER_ESR

TARGET = "e2e-bullseye"
PORT = 24491
# Every printable special character of ASCII: Mattermost's DataSource carries them all (go-sql-driver:
# the last '@' ends the password), and so must everything that reads it.
DB_PASSWORD = "Old-5.39-" + "".join(chr(c) for c in range(33, 127) if not chr(c).isalnum())
STATE: dict = {}


def mysql(sql: str) -> str:
    return sh(TARGET, f"mysql -N -B -D mattermost -e {shlex.quote(sql)}").strip()


def verb(*args: str, timeout: int = 3600):
    return deploy(TARGET, *args, timeout=timeout)


def upgrade_plan() -> str:
    proc = subprocess.run([sys.executable, "-m", "verbs.upgrade_plan"], cwd=ROOT, env=run_env(TARGET, None),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="module", autouse=True)
def server():
    testhost.stop_server(TARGET)
    testhost.start_server(TARGET, ssh_port=22371, https_port=PORT, distro="bullseye",
                          extra_data={"mattermost_allow_below_7_1": True})  # 7.1 cannot be built here (README)
    oldserver.install(TARGET, OLD, "mysql", DB_PASSWORD, f"https://127.0.0.1:{PORT}", socket_only=True)
    STATE["made"] = oldserver.seed(TARGET)
    yield
    if not KEEP:
        testhost.stop_server(TARGET)


def test_a_debian_11_hand_install_on_mariadb_10_5_by_its_socket():
    assert sh(TARGET, "cat /etc/debian_version").startswith("11.")
    assert "10.5." in mysql("SELECT VERSION()")
    assert "skip-networking" in sh(TARGET, "cat /etc/mysql/mariadb.conf.d/99-socket-only.cnf")
    assert "@unix(/run/mysqld/mysqld.sock)/mattermost" in oldstory.config_at(TARGET, "/opt/mattermost")
    assert sh(TARGET, "python3 --version").startswith("Python 3.9")


def test_diff_shows_the_adoption_and_the_plan_the_whole_path():
    changes = planned_changes(TARGET)
    assert f"Adopt the hand-installed Mattermost {OLD} in /opt/mattermost" in changes, changes


def test_deploy_adopts_it_with_the_helper_on_python_3_9():
    run = verb()
    assert run.ok, run.output[-5000:]
    assert DB_PASSWORD not in run.output
    assert sh(TARGET, "readlink /opt/mattermost").strip() == f"/opt/mattermost-releases/{OLD}"
    assert sh(TARGET, "dpkg-query -W -f '${Version}' pgloader").startswith("3.6.2")
    assert sh(TARGET, "dpkg-query -W -f '${Version}' postgresql").startswith("13")
    plan = upgrade_plan()
    assert "make db-migrate" in plan and "needs PostgreSQL 14 or newer" in plan and "make os-upgrade" in plan, plan


def test_a_pgloader_error_fails_the_copy_and_mattermost_is_back_on_mysql():
    # a broken source: a value longer than the column Mattermost's PostgreSQL schema has, which
    # pgloader rejects with an ERROR line while it exits 0
    mysql("ALTER TABLE Systems MODIFY Name varchar(100) NOT NULL; INSERT INTO Systems VALUES (REPEAT('x', 80), 'v')")
    try:
        failed = verb("verbs/job.py", "--data", "job=db-migrate")
        assert not failed.ok
        line = [x for x in failed.output.splitlines() if x.startswith("FAILED:")][0]
        assert "pgloader failed (copy" in line and "ERROR" in line, line
        assert "runs on MySQL again" in line
        assert oldstory.config(TARGET)["SqlSettings"]["DriverName"] == "mysql"
        assert DB_PASSWORD not in failed.output
    finally:
        mysql("DELETE FROM Systems WHERE Name = REPEAT('x', 80); ALTER TABLE Systems MODIFY Name varchar(64) NOT NULL")
    everything_is_there(PORT, STATE["made"])


def test_db_migrate_with_debian_11s_pgloader_over_the_socket():
    run = verb("verbs/job.py", "--data", "job=db-migrate")
    assert run.ok, run.output[-5000:]
    assert "every table matches" in run.output and DB_PASSWORD not in run.output
    assert oldstory.config(TARGET)["SqlSettings"]["DriverName"] == "postgres"
    everything_is_there(PORT, STATE["made"])


def test_upgrade_runs_the_hops_postgresql_13_allows_and_stops_before_11_4():
    run = verb("--data", "mattermost_upgrade_required=true")
    chain = [OLD, *OLD_RELEASES[1:], OLDER_ESR]
    for a, b in zip(chain, chain[1:], strict=False):
        assert f"Upgrade Mattermost {a} -> {b}" in run.output, run.output[-4000:]
    assert f"-> {ESR_VERSION}" not in "".join(x for x in run.output.splitlines() if "Starting operation" in x)
    assert not run.ok and "make os-upgrade" in run.output and "needs PostgreSQL 14 or newer" in run.output
    assert sh(TARGET, "readlink /opt/mattermost").strip() == f"/opt/mattermost-releases/{OLDER_ESR}"


def test_os_upgrade_11_to_12_killed_and_run_again_then_13():
    killed_while(TARGET, ["verbs/os_upgrade.py", "-y"], "apt-get -y -q", 1200, "the package upgrade")
    first = verb("verbs/os_upgrade.py", timeout=3600)
    assert first.ok and "continuing the unfinished run" in first.output, first.output[-5000:]
    assert sh(TARGET, "cat /etc/debian_version").startswith("12.")
    second = verb("verbs/os_upgrade.py", timeout=3600)
    assert second.ok, second.output[-5000:]
    assert sh(TARGET, "cat /etc/debian_version").startswith("13.")
    clusters = sh(TARGET, "pg_lsclusters -h | awk '{print $1, $4}'").split("\n")
    assert "17 online" in clusters, clusters


def test_upgrade_reaches_11_4_and_everything_is_there():
    run = verb("--data", "mattermost_upgrade_required=true")
    assert run.ok, run.output[-5000:]
    assert f"Upgrade Mattermost {OLDER_ESR} -> {ESR_VERSION}" in run.output
    everything_is_there(PORT, STATE["made"])


def test_a_second_deploy_changes_nothing():
    assert planned_changes(TARGET) == []
