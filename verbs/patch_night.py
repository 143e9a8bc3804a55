"""make patch-night: OS updates, needed restarts or a reboot, the Mattermost upgrade the
version policy wants, and a summary - in one command, under a lock, resumable.

    pyinfra inventory.py verbs/patch_night.py         (asks first; YES=1 / -y does not)

The plan is printed first (the same as `make patch-plan`). Then: take the lock, back
up, upgrade packages non-interactively keeping local config files, restart what
needrestart lists (Mattermost cleanly) unless a reboot follows, reboot when required and
wait for SSH and a healthy Mattermost, upgrade Mattermost when due, write the report to
reports/ on this workstation and release the lock. A failed or killed run leaves the
lock and its progress on the server; running it again continues where it stopped.

With a database server in the inventory (mattermost_role "database"), it goes first: its
packages, restarts (PostgreSQL) and reboot; then each Mattermost server checks that
Mattermost has its database back (restarting it if it did not reconnect) before its own
part. `make patch-night` passes --fail-percent 0: the first failure stops the whole run.
"""

import json
import time
from pathlib import Path

from pyinfra import host, logger
from pyinfra.api import FunctionCommand, operation
from pyinfra.api.exceptions import DeployError

from tasks import notices
from tasks.backup import backup_spec
from tasks.common import ROOT, after_database_servers, helper, run_on, settings, streamed
from tasks.patching import NoMattermost, all_good_problems, make_plan, operator_id, plan_text, report_text
from tasks.rehearsal import passed_rehearsal
from tasks.release import configure as releases_verified
from tasks.release import decision, installed_version
from tasks.service import upgrade_chain
from tasks.state import read as read_server_state
from verbs.server_actions import nothing_to_do, reboot_and_wait, reported, require_deployed, save_report


def patch_spec(s, **extra) -> dict:
    return {"lock_file": s.patch_lock_file, "state_file": s.patch_state_file, **extra}


@operation(is_idempotent=False)
def locked(holder: str, break_lock: bool, mattermost_before: str | None):
    """Take the patch night lock (or continue a run of the same operator)."""
    yield streamed(helper("patch-lock", patch_spec(settings(), holder=holder, mattermost_before=mattermost_before,
                                                   **{"break": break_lock})))


@operation(is_idempotent=False)
def backed_up():
    s = settings()
    # A failed off-server copy does not stop the security updates: the report says it.
    yield streamed(helper("backup", {**backup_spec(s, kind="patch-night"), "offsite_required": False}))
    yield helper("patch-mark", patch_spec(s, step="backup"))


@operation(is_idempotent=False)
def packages_upgraded():
    yield streamed(helper("patch-upgrade", patch_spec(settings())))


@operation(is_idempotent=False)
def services_restarted(reboot_expected: bool, version: str | None):
    s = settings()
    mattermost_here = s.place.role != "database"
    yield streamed(helper("patch-restart", patch_spec(
        s, reboot_expected=reboot_expected, never_restart=s.updates.never_restart,
        service="mattermost" if mattermost_here else None, ping_url=s.ping_url, timeout=s.health_timeout,
        version=version)))


@operation(is_idempotent=False)
def mattermost_after_database():
    """On a Mattermost server whose database is elsewhere: after the database server's part,
    Mattermost answers again (reconnected by itself) or is restarted and checked."""
    s = settings()
    yield streamed(helper("patch-after-database", {"ping_url": s.ping_url, "service": "mattermost",
                                                   "timeout": s.health_timeout}))


@operation(is_idempotent=False)
def rebooted_if_required(expected: bool, version: str):
    s = settings()
    mark = helper("patch-mark", patch_spec(s, step="reboot", set={"rebooted": True}))
    yield FunctionCommand(reboot_and_wait, (), {"expected": expected, "timeout": s.updates.reboot_timeout,
                                                "version": version, "mark": mark, "verb": "make patch-night"})


def write_report(state, host, plan):
    s = settings()
    database_server = s.place.role == "database"
    status, output = run_on(host, helper("patch-finish", patch_spec(
        s, ping_url=None if database_server else s.ping_url,
        offsite_status_file=s.offsite_status_file if s.offsite.repository and not database_server else None)))
    stdout = output.stdout
    if not status:
        logger.error(f"    [{host.name}] ERROR: could not finish the patch night run: see the output above")
        return False
    record = json.loads(stdout.strip().splitlines()[-1])
    text = report_text(host.name, record, plan)
    stamp = save_report("patch-night", host.name, record, text)
    problems = all_good_problems(record)
    if notices.enabled(s):  # the summary in the notices channel (mail when Mattermost cannot post)
        run_on(host, helper("notify", {
            "key": f"patch-night-{stamp}", "spec_file": notices.SPEC_FILE, "text": text,
            "subject": "patch night: " + ("all good" if not problems else f"{len(problems)} problem(s)")}))
    # The run fails (after writing its report) when Mattermost is unhealthy or the off-server copy failed.
    return not [p for p in problems if "reboot" not in p]


def patch_database_server(plan, holder: str) -> None:
    """A database server's part: no backup (its Mattermost servers' nightly dump is it) and no
    Mattermost; PostgreSQL restarted or the server rebooted and PostgreSQL waited for. Its own
    call sites: pyinfra shares an operation between servers by the line that calls it."""
    locked(name="Database server: take the patch night lock", holder=holder,
           break_lock=bool(host.data.get("patch_break_lock")), mattermost_before=None)
    count = len(plan.packages)
    packages_upgraded(name=f"Database server: upgrade {count} package{'' if count == 1 else 's'}, keeping local "
                           "config files")
    if "restarts" not in plan.done:
        services_restarted(name="Database server: restart what needrestart lists (PostgreSQL among them)",
                           reboot_expected=bool(plan.reboot), version=None)
    if "reboot" not in plan.done:
        rebooted_if_required(name="Database server: reboot if required, then wait for SSH and PostgreSQL",
                             expected=bool(plan.reboot), version=None)
    reported(name="Database server: write the patch night report and release the lock", report=write_report, plan=plan)


def rehearsal_missing(s, name: str, target: str) -> str | None:
    """Why patch night may not upgrade Mattermost to `target` without a rehearsal, or None."""
    days = s.updates.require_rehearsal_days
    if not days:
        return None
    folder = Path(s.reports_dir) if Path(s.reports_dir).is_absolute() else ROOT / s.reports_dir
    if passed_rehearsal(folder, name, target, days):
        return None
    return (f"patch_require_rehearsal_days = {days} and no passed rehearsal of {target} within {days} days: "
            "`make upgrade-rehearsal SCRATCH=<scratch server>` first")


def patch(plan, holder: str, version_now: str | None, d) -> None:
    """A Mattermost server's part."""
    locked(name="Take the patch night lock", holder=holder, break_lock=bool(host.data.get("patch_break_lock")),
           mattermost_before=now["health"].get("version") or version_now)
    if "backup" not in plan.done:
        backed_up(name="Back up before patching (database, config.json, data)")
    count = len(plan.packages)
    packages_upgraded(name=f"Upgrade {count} package{'' if count == 1 else 's'}, keeping local config files")
    if "restarts" not in plan.done:
        services_restarted(name="Restart what needrestart lists (Mattermost cleanly)",
                           reboot_expected=bool(plan.reboot), version=version_now)
    if "reboot" not in plan.done:
        rebooted_if_required(name="Reboot if required, then wait for SSH and a healthy Mattermost",
                             expected=bool(plan.reboot), version=version_now)
    unrehearsed = rehearsal_missing(settings(), host.name, d.target) if d.upgrade else None
    if unrehearsed:
        logger.warning(f"    [{host.name}] no Mattermost upgrade tonight: {unrehearsed}")
    elif d.upgrade and version_now:
        releases_verified()  # every stop of the chain downloaded and verified before the first hop
        upgrade_chain(d)
    reported(name="Write the patch night report and release the lock", report=write_report, plan=plan)


s = settings()
now = read_server_state(os_updates="refresh")  # the first read of the run decides what it holds
if s.place.role == "database":
    d = NoMattermost()
else:
    require_deployed()
    d = decision()
plan = make_plan(now["os_updates"], d, s.updates.reboot_packages, s.updates.never_restart)
logger.info(plan_text(host.name, plan))
holder = operator_id()
lock = plan.lock
if lock and lock.get("holder") != holder and not host.data.get("patch_break_lock"):
    raise DeployError(f"{host.name}: patch night is already running: held by {lock.get('holder')} since "
                      f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(lock.get('since', 0)))}; if that run is dead, "
                      "run `make patch-night BREAK_LOCK=1` (nothing was changed)")

# One server at a time, database servers first: their part, then a meeting point every server
# passes (pyinfra orders each server's operations; a shared one joins them), then each
# Mattermost server checks it has its database back, then its own part. `make patch-night`
# stops the whole run at the first failure (--fail-percent 0).
if s.place.role == "database":
    if plan.nothing_to_do:
        nothing_to_do(name="Patch night on the database server: nothing to do",
                      reason="no upgrades, restarts or reboot due")
    else:
        patch_database_server(plan, holder)
after_database_servers(name="Database servers patched first")
if s.place.role != "database":
    if s.place.remote:
        mattermost_after_database(name="Mattermost has its database back after the database server's part "
                                       "(restarted if it did not reconnect)")
    if plan.nothing_to_do:
        nothing_to_do(name="Patch night: nothing to do", reason="no upgrades, restarts, reboot or Mattermost upgrade due")
    else:
        patch(plan, holder, installed_version(now), d)
