"""Patch night's parsing and decisions: apt's simulation, needrestart's batch output,
the reboot prediction, the plan and the report."""

from tasks.patching import make_plan, plan_text, reboot_reason, report_text
from tasks.versions import Decision

# `apt-get -s upgrade --with-new-pkgs` on a Debian 12 test server (Debian 13 being stable).
APT_SIMULATION = """NOTE: This is only a simulation!
      apt-get needs root privileges for real execution.
Reading package lists...
Building dependency tree...
Calculating upgrade...
The following packages will be upgraded:
  libssl3 linux-image-amd64 mmdeploy-testpkg
Inst libssl3 [3.0.20-1~deb12u2] (3.0.22-1~deb12u2 Debian-Security:12/oldstable-security [amd64])
Inst linux-image-6.1.0-40-amd64 (6.1.153-1 Debian-Security:12/oldstable-security [amd64])
Inst linux-image-amd64 [6.1.148-1] (6.1.153-1 Debian-Security:12/oldstable-security [amd64]) []
Inst mmdeploy-testpkg [1.0] (1.1 mmdeploy-standin:stable [all])
Conf libssl3 (3.0.22-1~deb12u2 Debian-Security:12/oldstable-security [amd64])
Conf mmdeploy-testpkg (1.1 mmdeploy-standin:stable [all])
"""

NEEDRESTART = """NEEDRESTART-VER: 3.6
NEEDRESTART-KCUR: 6.1.0-39-amd64
NEEDRESTART-KEXP: 6.1.0-40-amd64
NEEDRESTART-KSTA: 3
NEEDRESTART-SVC: ssh.service
NEEDRESTART-SVC: systemd-logind.service
NEEDRESTART-SVC: mattermost.service
"""


def test_apt_simulation(mmhelper):
    pending = mmhelper.parse_apt_simulation(APT_SIMULATION)
    assert [(p["name"], p["current"], p["new"], p["security"]) for p in pending] == [
        ("libssl3", "3.0.20-1~deb12u2", "3.0.22-1~deb12u2", True),
        ("linux-image-6.1.0-40-amd64", None, "6.1.153-1", True),
        ("linux-image-amd64", "6.1.148-1", "6.1.153-1", True),
        ("mmdeploy-testpkg", "1.0", "1.1", False),
    ]
    assert pending[3]["origin"] == "mmdeploy-standin:stable"
    assert mmhelper.parse_apt_simulation("Reading package lists...\n0 upgraded, 0 newly installed\n") == []


def test_needrestart_batch(mmhelper):
    parsed = mmhelper.parse_needrestart(NEEDRESTART)
    assert parsed == {"kernel_status": 3, "services": ["ssh.service", "systemd-logind.service", "mattermost.service"]}
    # in a container needrestart cannot tell the kernel state: no KSTA line
    assert mmhelper.parse_needrestart("NEEDRESTART-VER: 3.6\nNEEDRESTART-SVC: ssh.service\n") == {
        "kernel_status": None, "services": ["ssh.service"]}


def os_state(mmhelper, **extra):
    return {"pending": mmhelper.parse_apt_simulation(APT_SIMULATION), "held": ["postgresql-15"],
            "reboot_required": False, "reboot_packages": [],
            "needrestart": {"kernel_status": 1, "services": ["ssh.service", "systemd-logind.service"]},
            "lock": None, "run": None, **extra}


PATTERNS = ["linux-image-*", "libc6"]
NEVER = ["systemd-logind.service"]
UP_TO_DATE = Decision("11.7.6", "11.7.6", "11.7.6", "up to date")


def test_reboot_reasons(mmhelper):
    assert "linux-image-6.1.0-40-amd64, linux-image-amd64" in reboot_reason(os_state(mmhelper), PATTERNS)
    assert reboot_reason(os_state(mmhelper, pending=[]), PATTERNS) is None
    flagged = os_state(mmhelper, pending=[], reboot_required=True, reboot_packages=["libc6"])
    assert "already required by libc6" in reboot_reason(flagged, PATTERNS)
    kernel = os_state(mmhelper, pending=[], needrestart={"kernel_status": 3, "services": []})
    assert "newer kernel" in reboot_reason(kernel, PATTERNS)


def test_plan_and_its_text(mmhelper):
    plan = make_plan(os_state(mmhelper), UP_TO_DATE, PATTERNS, NEVER)
    assert not plan.nothing_to_do
    assert plan.restarts == ["ssh.service"] and plan.deferred == ["systemd-logind.service"]
    text = plan_text("chat", plan)
    assert "packages to upgrade: 4 (3 from the security archive)" in text
    assert "libssl3 3.0.20-1~deb12u2 -> 3.0.22-1~deb12u2  [security]" in text
    assert "linux-image-6.1.0-40-amd64 (new) -> 6.1.153-1" in text
    assert "held back (apt-mark hold): postgresql-15" in text
    assert "reboot: yes" in text and "Mattermost: up to date" in text


def test_nothing_to_do_only_when_nothing_at_all(mmhelper):
    quiet = os_state(mmhelper, pending=[], needrestart={"kernel_status": 1, "services": ["systemd-logind.service"]})
    plan = make_plan(quiet, UP_TO_DATE, PATTERNS, NEVER)
    assert plan.nothing_to_do and "nothing to do" in plan_text("chat", plan)
    upgrade = Decision("11.7.7", "11.7.7", "11.7.7", "upgrade 11.7.6 -> 11.7.7")
    assert not make_plan(quiet, upgrade, PATTERNS, NEVER).nothing_to_do
    unfinished = {**quiet, "run": {"started_text": "2026-11-22 03:00 UTC", "holder": "op@ws", "done": ["backup"]}}
    plan = make_plan(unfinished, UP_TO_DATE, PATTERNS, NEVER)
    assert not plan.nothing_to_do and "done: backup - it continues" in plan_text("chat", plan)


def test_report(mmhelper):
    record = {"started": 1795314000, "finished": 1795314095, "holder": "op@ws",
              "upgraded": [{"name": "libssl3", "current": "3.0.20", "new": "3.0.22"}], "restarted": [],
              "restarts_by_reboot": True, "deferred": [], "rebooted": True,
              "mattermost_before": "11.7.6", "mattermost_after": "11.7.7", "healthy": True}
    text = report_text("chat", record, None)
    assert "duration 1 min 35 s" in text and "libssl3 3.0.20 -> 3.0.22" in text
    assert "services restarted: all, by the reboot" in text and "rebooted: yes" in text
    assert "Mattermost: 11.7.6 -> 11.7.7 (healthy)" in text
