"""Patch night on a real Debian 12 container, as one story in order: a test package
upgrade is really pending (and Debian's own security updates, as on any server that
has not been patched for a while); the plan lists it and the reboot that will follow and
changes nothing; patch night upgrades, reboots the container, waits for Mattermost and
writes its report; a second run has nothing to do; another operator's lock refuses a
run; a run killed mid-upgrade is completed by running it again.

Debian packages do not declare that they need a reboot, so the plan predicts it from
patch_reboot_packages; the tests declare the stand-in package as one."""

import json
import os
import subprocess
import sys
import time

import pytest

from tests import testhost
from tests.e2e.conftest import KEEP, ROOT, deploy, https_get, killed_while, sh
from tests.standin import apt_repo
from tests.testhost import UPSTREAM_ROOT

APT = "apt-patch"  # this story's own stand-in apt repository
TARGET = "e2e-patch"
PORT = 24434
OPS = "ops-patch@example.org"  # its own address: the notices story mails ops@
# Notices by e-mail only (no channel): patch night's summary goes to the test SMTP server.
NOTICES = ["--data", f"smtp_server={testhost.SMTP}", "--data", "smtp_port=25", "--data", 'smtp_security=""',
           "--data", "smtp_sender=chat@example.org", "--data", f"notices_email={OPS}"]
REBOOT_PKGS = ["--data", 'patch_reboot_packages=["linux-image-*", "mmdeploy-testpkg"]', *NOTICES]


def deploy_state_files() -> list[str]:
    """The deploy's state on the server, without the notices timer's own file (it may run
    any time)."""
    return [f for f in sh(TARGET, "ls /var/lib/mattermost-deploy").split() if f != "notices.json"]


def offer(versions: dict) -> None:
    apt_repo.publish(UPSTREAM_ROOT, versions, APT)


def installed_version() -> str:
    return sh(TARGET, f"dpkg-query -W -f '${{Version}} ${{db:Status-Status}}' {apt_repo.PACKAGE}").strip()


def container_started_at() -> str:
    return testhost.client().containers.get(testhost.container_name(TARGET)).attrs["State"]["StartedAt"]


def patch_night(*args: str, env: dict | None = None):
    return deploy(TARGET, "verbs/patch_night.py", *REBOOT_PKGS, *args, env=env)


@pytest.fixture(scope="module", autouse=True)
def server():
    testhost.ensure_smtp(testhost.client())
    testhost.stop_server(TARGET)
    testhost.start_server(TARGET, ssh_port=22304, https_port=PORT)
    run = deploy(TARGET, *NOTICES)
    assert run.ok, run.output[-4000:]
    offer({"1.0": None})
    sh(TARGET, f"echo '{apt_repo.source_line(APT)}' > /etc/apt/sources.list.d/standin.list && apt-get update -q >/dev/null "
               f"&& DEBIAN_FRONTEND=noninteractive apt-get install -y -q {apt_repo.PACKAGE}=1.0 >/dev/null")
    offer({"1.0": None, "1.1": "reboot"})
    yield
    if not KEEP:
        testhost.stop_server(TARGET)


def test_plan_lists_the_package_and_the_reboot_and_changes_nothing():
    lists_before = sh(TARGET, "ls -l --time-style=+%s /var/lib/apt/lists | md5sum")
    proc = subprocess.run([sys.executable, "-m", "verbs.patch_plan", *REBOOT_PKGS], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "MMDEPLOY_TARGET": TARGET})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"{apt_repo.PACKAGE} 1.0 -> 1.1" in proc.stdout
    assert "reboot: yes - upgrading mmdeploy-testpkg" in proc.stdout
    assert installed_version() == "1.0 installed"
    assert sh(TARGET, "ls -l --time-style=+%s /var/lib/apt/lists | md5sum") == lists_before
    assert deploy_state_files() == ["apt-lists"]  # no lock, no run


def test_patch_night_upgrades_reboots_and_reports():
    started = container_started_at()
    reports = set((ROOT / "reports").glob(f"patch-night-local-{TARGET}-*.txt"))
    testhost.clear_mail(OPS)
    run = patch_night()
    assert run.ok, run.output[-5000:]
    assert installed_version() == "1.1 installed"
    assert container_started_at() != started, "the server did not reboot"
    status, _, body = https_get(PORT)
    assert status == 200 and json.loads(body)["status"] == "OK"
    [report] = set((ROOT / "reports").glob(f"patch-night-local-{TARGET}-*.txt")) - reports
    text = report.read_text()
    assert f"{apt_repo.PACKAGE} 1.0 -> 1.1" in text and "rebooted: yes" in text and "(healthy)" in text
    record = json.loads(report.with_suffix(".json").read_text())
    assert record["rebooted"] is True and record["healthy"] is True
    assert "backup" in record["done"] and "packages" in record["done"]
    assert "patch-night" in sh(TARGET, "ls /var/backups/mattermost")
    assert deploy_state_files() == ["apt-lists"]  # lock released
    # The summary reached the operator (by e-mail: no notices channel is named here).
    [mail] = [m for m in testhost.received_mail(OPS) if "patch night" in str(m["Subject"])]
    assert f"{apt_repo.PACKAGE} 1.0 -> 1.1" in mail.get_body(preferencelist=("plain",)).get_content()
    report.unlink()
    report.with_suffix(".json").unlink()


def test_second_patch_night_has_nothing_to_do():
    run = patch_night()
    assert run.ok, run.output[-3000:]
    assert "nothing to do" in run.output
    assert "Take the patch night lock" not in run.output


def test_another_operators_lock_refuses_the_run_until_broken():
    offer({"1.0": None, "1.1": "reboot", "1.2": None})
    since = int(time.time()) - 600
    lock = json.dumps({"holder": "alice@other-workstation", "since": since})
    sh(TARGET, f"echo '{lock}' > /var/lib/mattermost-deploy/patch-night.lock")
    refused = patch_night()
    assert not refused.ok
    failed = [line for line in refused.output.splitlines() if line.startswith("FAILED:")]
    assert len(failed) == 1 and "held by alice@other-workstation since" in failed[0]
    assert "BREAK_LOCK=1" in failed[0]
    assert installed_version() == "1.1 installed"
    broken = patch_night("--data", "patch_break_lock=true")
    assert broken.ok, broken.output[-3000:]
    assert installed_version() == "1.2 installed"


def test_a_run_killed_mid_upgrade_completes_when_run_again():
    offer({"1.2": None, "1.3": "slow"})
    killed_while(TARGET, ["verbs/patch_night.py", "-y", *REBOOT_PKGS], "sleep 40", 180, "the slow postinst")
    assert "patch-night.lock" in sh(TARGET, "ls /var/lib/mattermost-deploy")
    run = patch_night()
    assert run.ok, run.output[-4000:]
    assert "continuing the unfinished run" in run.output
    assert installed_version() == "1.3 installed"
    assert deploy_state_files() == ["apt-lists"]
    status, _, _ = https_get(PORT)
    assert status == 200
