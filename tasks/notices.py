"""Operations notices: the server checks itself from a systemd timer and tells the operator
in a Mattermost channel (`notices_channel`), by e-mail when Mattermost cannot post
(`notices_email`). The checks and the delivery are mmhelper/steps/notices.py; this module writes
their settings and units, readies the bot and the channel, and tells the channel when the
deploy refuses an upgrade the version policy wants.
"""

from __future__ import annotations

import json

from pyinfra import host
from pyinfra.api import operation

from tasks import security
from tasks.common import HELPER, current, helper, managed_file, render, settings, streamed, timer_off, timer_on
from tasks.housekeeping import helper_spec
from tasks.release import decision
from tasks.settings import Settings
from tasks.versions import PINNED

SPEC_FILE = "/etc/mattermost/notices.json"
SERVICE = "/etc/systemd/system/mattermost-notices.service"
TIMER = "/etc/systemd/system/mattermost-notices.timer"


def enabled(s: Settings) -> bool:
    return bool(s.notices.channel or s.notices.email)


def checks_spec(s: Settings) -> dict:
    """What the server's health checks look at (also read by `make status`)."""
    return {
        "host": s.domain, "ping_url": s.ping_url, "service": "mattermost", "backup_dir": s.backup_dir,
        "backup_max_age_hours": 26 if s.backup_schedule else None,
        "offsite_status_file": s.offsite_status_file if s.offsite.repository else None,
        "certificate": s.certificate, "cert_days": s.notices.cert_days, "disk_percent": s.notices.disk_percent,
        "disk_paths": [s.data_dir, s.backup_dir, "/"], "restart_limit": s.notices.restart_limit,
        "hold_file": s.hold_file, "state_file": f"{s.deploy_state_dir}/notices.json",
    }


def spec(s: Settings) -> dict:
    """The timer's settings: the checks, where notices go, and - unless the version is
    pinned - where the server reads the release list to see a release the policy wants."""
    release = None if PINNED.match(s.release.policy) else {
        "api_url": s.notices.github_api_url or s.release.github_api_url, "repository": s.release.github_repository,
        "policy": s.release.policy, "esr_lines": s.release.esr_lines}
    return {**helper_spec(s), **checks_spec(s), "channel": s.notices.channel, "email_to": s.notices.email,
            "digest_time": s.notices.digest_time, "release": release, "security": security.report_spec(s)}


@operation()
def channel_ready(changed: bool):
    """The deploy's bot, its token and the channel, the bot a member of it."""
    if not changed and (current().get("notices") or {}).get("ready"):
        host.noop(f"notices reach {settings().notices.channel}")
        return
    yield streamed(helper("notices-setup", spec(settings())))


@operation()
def refusal_told(key: str, subject: str, text: str):
    """An upgrade the policy wants and the deploy refuses: told once a day."""
    sent = ((current().get("notices") or {}).get("sent") or {}).get(f"event:{key}")
    if sent and current().get("now", 0) - sent < 86400:
        host.noop("the refusal was told today")
        return
    yield helper("notify", {"key": key, "subject": subject, "text": text, "spec_file": SPEC_FILE})


def configure():
    s = settings()
    if not enabled(s):
        timer_off(name="Remove the notices timer (no notices_channel or notices_email)",
                  timer="mattermost-notices.timer", files=[TIMER, SERVICE, SPEC_FILE], what="notices timer")
        return
    written = managed_file(name=f"Write the notices' settings ({SPEC_FILE})", path=SPEC_FILE, mode=0o600,
                           content=json.dumps(spec(s), indent=2, sort_keys=True) + "\n")
    if s.notices.channel:
        channel_ready(name=f"Ready the deploy's bot in {s.notices.channel}", changed=written.will_change)
    units = [
        managed_file(name="Install the notices service unit", path=SERVICE,
                     content=render("etc/systemd/system/mattermost-notices.service.j2", s=s, helper=HELPER)),
        managed_file(name="Install the notices timer", path=TIMER,
                     content=render("etc/systemd/system/mattermost-notices.timer.j2", s=s)),
    ]
    timer_on(name=f"Enable the notices timer (every {s.notices.every_minutes} minutes)",
             timer="mattermost-notices.timer", state_key="notices_timer", what="the notices timer",
             reload_units=any(op.will_change for op in [written, *units]))
    d = decision()
    if d.blocked and d.candidate:
        refusal_told(name=f"Tell the notices channel: upgrade to {d.candidate} refused", key=f"refused-{d.candidate}",
                     subject=f"upgrade to {d.candidate} refused",
                     text=f"The version policy wants {d.candidate}; the deploy refused it: {d.blocked}")
