"""make os-upgrade: Debian 11 (bullseye) becomes 12 (bookworm), 12 becomes 13 (trixie), with
Mattermost and its data intact - one release per run of this file (make os-upgrade runs it until
the server is on 13), under a lock, resumable.

    pyinfra inventory.py verbs/os_upgrade.py          (asks first; YES=1 / -y does not)

The plan (make os-upgrade-plan) is printed first and a refused plan stops here. Then:
take the lock, back up (the way back), switch the apt sources to the next release (the old and
third-party ones set aside), upgrade the packages non-interactively keeping local config
files (Mattermost serves, but stops with PostgreSQL when a package restarts it), reboot and
wait for a healthy Mattermost, upgrade the PostgreSQL cluster with pg_upgradecluster
(Mattermost stopped for that; the old cluster kept), check health, write the report to
reports/ and release the lock. A failed or killed run leaves the lock and its progress on the
server; running it again continues.
"""

import json
import time

from pyinfra import host, logger
from pyinfra.api import FunctionCommand, operation
from pyinfra.api.exceptions import DeployError

from tasks.backup import backup_spec
from tasks.common import helper, run_on, settings, streamed
from tasks.os_release import VERSION, make_os_plan, plan_text, report_text
from tasks.patching import operator_id
from tasks.release import installed_version
from tasks.state import read as read_server_state
from verbs.server_actions import nothing_to_do, reboot_and_wait, reported, require_deployed, save_report, single_server_only


def os_spec(s, **extra) -> dict:
    return {"lock_file": s.os_upgrade_lock_file, "state_file": s.os_upgrade_state_file, **extra}


@operation(is_idempotent=False)
def locked(holder: str, break_lock: bool, current: str, target: str, mattermost_before: str | None,
           planned: dict | None):
    yield streamed(helper("os-lock", os_spec(settings(), holder=holder, mattermost_before=mattermost_before,
                                                **{"break": break_lock})))
    facts = {"target": target, "release_before": current, **({"planned": planned} if planned else {})}
    yield helper("os-mark", os_spec(settings(), set=facts))


# Shell, not the helper: while an interrupted upgrade's apt still runs (it outlives the SSH
# session that started it), Python and its libraries may be half replaced.
SETTLE = ("timeout 1800 sh -c 'while pgrep -x apt-get >/dev/null || pgrep -x dpkg >/dev/null; do sleep 2; done' "
          "&& DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=l dpkg --configure -a --force-confdef --force-confold")


@operation(is_idempotent=False)
def dpkg_settled():
    """Let the interrupted run's apt and dpkg finish (waiting up to 30 minutes), then finish
    any half-configured package, before anything else runs on the server."""
    yield SETTLE


@operation(is_idempotent=False)
def backed_up():
    s = settings()
    yield streamed(helper("backup", backup_spec(s, kind="pre-os-upgrade")))
    yield helper("os-mark", os_spec(s, step="backup"))


@operation(is_idempotent=False)
def sources_switched(target: str):
    yield streamed(helper("os-sources", os_spec(settings(), target=target)))


@operation(is_idempotent=False)
def packages_upgraded(target: str):
    yield streamed(helper("os-packages", os_spec(settings(), target=target)))


@operation(is_idempotent=False)
def rebooted(version: str):
    s = settings()
    mark = helper("os-mark", os_spec(s, step="reboot", set={"rebooted": True}))
    yield FunctionCommand(reboot_and_wait, (), {"expected": True, "timeout": s.updates.reboot_timeout,
                                                "version": version, "mark": mark, "verb": "make os-upgrade"})


@operation(is_idempotent=False)
def cluster_upgraded(version: str):
    s = settings()
    yield streamed(helper("os-postgresql", os_spec(s, cluster="main", service="mattermost", ping_url=s.ping_url,
                                                   version=version, timeout=s.health_timeout)))


def write_report(state, host, plan):
    s = settings()
    status, output = run_on(host, helper("os-finish", os_spec(s, ping_url=s.ping_url)))
    if not status:
        logger.error(f"    [{host.name}] ERROR: could not finish the release upgrade run: see the output above")
        return False
    record = json.loads(output.stdout.strip().splitlines()[-1])
    text = report_text(host.name, record, plan)
    save_report("os-upgrade", host.name, record, text)
    return bool(record.get("healthy"))


s = settings()
if single_server_only("the Debian release upgrade"):
    raise DeployError(single_server_only("the Debian release upgrade"))
now = read_server_state(os_release=True)
require_deployed()
plan = make_os_plan(host.name, now["os"], now["os_release"], bool(now["health"]["ok"]))
logger.info(plan_text(plan))
holder = operator_id()
if plan.lock and plan.lock.get("holder") != holder and not host.data.get("patch_break_lock"):
    raise DeployError(f"{host.name}: a release upgrade is already running: held by {plan.lock.get('holder')} since "
                      f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(plan.lock.get('since', 0)))}; if that run "
                      "is dead, run `make os-upgrade BREAK_LOCK=1` (nothing was changed)")
if plan.refusals:
    raise DeployError(f"{host.name}: the release upgrade is refused: " + "; ".join(plan.refusals)
                      + " (nothing was changed)")

if plan.nothing_to_do:
    nothing_to_do(name="Debian release upgrade: nothing to do", reason=plan.notes[0])
else:
    version = installed_version(now)
    if plan.done and "packages" not in plan.done:
        dpkg_settled(name="Let the interrupted package upgrade finish (apt, dpkg --configure -a)")
    locked(name="Take the release upgrade lock", holder=holder, break_lock=bool(host.data.get("patch_break_lock")),
           current=plan.current, target=plan.target, mattermost_before=version,
           planned=None if plan.done else {"upgraded": plan.upgraded, "new": plan.new, "removed": plan.removed})
    if "backup" not in plan.done:
        backed_up(name="Back up before the release upgrade (the way back)")
    sources_switched(name=f"Switch the apt sources to Debian {plan.target}", target=plan.target)
    packages_upgraded(name=f"Upgrade the packages to Debian {plan.target} (Mattermost serves, but for PostgreSQL's restarts)",
                      target=plan.target)
    if "reboot" not in plan.done:
        rebooted(name=f"Reboot into Debian {VERSION.get(plan.target, '?')}, then wait for SSH and a healthy Mattermost",
                 version=version)
    cluster_upgraded(name="Upgrade the PostgreSQL cluster (Mattermost stopped only for this)", version=version)
    reported(name="Write the release upgrade report and release the lock", report=write_report, plan=plan)
