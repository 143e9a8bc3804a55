"""Operations notices: the server's health checks, run ON the server by a systemd timer
(mattermost-notices.timer), posted by the deploy's bot into the channel the operator names;
a daily digest; events (upgrade done or rolled back, patch night) from the other steps.
One problem gives one message a day. When Mattermost cannot post (it is down, or the bot
cannot reach the channel), the message goes by e-mail through the relay config.json names.

The bot posts with its token over 127.0.0.1 (POST /api/v4/posts: the local socket has no
post route - server/channels/api4/post_local.go); the channel is looked up and the bot
added to it over the local socket (channel_local.go, team_local.go).
"""

import calendar
import contextlib
import json
import os
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request

from mmhelper.parts.common import Failure, ping, read_json, read_password, write_private
from mmhelper.parts.config import smtp_send
from mmhelper.parts.pg import remote_db, remote_login
from mmhelper.parts.service import journal_tail, systemctl, unit_property
from mmhelper.steps.backup import backup_names
from mmhelper.steps.housekeeping import api_with_token, bot_token, bot_token_works, find_user, local_api
from mmhelper.steps.offsite import offsite_state
from mmhelper.steps.security import report as security_report

SPEC_FILE = "/etc/mattermost/notices.json"
DAY = 86400


# ---- the checks (also read by `make status` through the state query)
def certificate_days(path, now=None):
    """Days until the certificate at `path` expires (openssl's notAfter), or None."""
    result = subprocess.run(["openssl", "x509", "-noout", "-enddate", "-in", path], capture_output=True, text=True)
    match = re.search(r"notAfter=(.+)", result.stdout)
    if result.returncode != 0 or not match:
        return None
    expires = calendar.timegm(time.strptime(match.group(1).strip().replace(" GMT", ""), "%b %d %H:%M:%S %Y"))
    return (expires - (now or time.time())) / DAY


def restarts_today(spec, state, now):
    """Automatic restarts of the service (systemd's NRestarts) since the day began, from the
    count the notices state noted at the day's first run."""
    count = int(unit_property(spec.get("service", "mattermost"), "NRestarts") or 0)
    day = time.strftime("%Y-%m-%d", time.localtime(now))
    noted = (state or {}).get("restarts") or {}
    base = noted.get("base", count) if noted.get("day") == day and noted.get("base", 0) <= count else count
    return count - base, {"day": day, "base": base}


def version_key(version):
    return tuple(int(x) for x in version.split("."))


def policy_candidate(releases, policy, esr_lines):
    """The release the version policy points at, from a GitHub release list: the same rule
    as the deploy's (tasks/versions.py), in the standard library: vX.Y.Z tags only, no
    drafts or prereleases."""
    found = sorted({r["tag_name"][1:] for r in releases if not r.get("draft") and not r.get("prerelease")
                    and re.fullmatch(r"v\d+\.\d+\.\d+", r.get("tag_name") or "")}, key=version_key)
    if policy == "latest":
        return found[-1] if found else None
    lines = sorted(esr_lines, key=version_key, reverse=True) if policy == "esr" else [policy]
    for line in lines:
        in_line = [v for v in found if v.rsplit(".", 1)[0] == line]
        if in_line:
            return in_line[-1]
    return None


def release_lookup(release, state, now):
    """{"at", "candidate"|"error"}: GitHub's first page of releases, read at most every six
    hours (the unauthenticated limit is 60 requests an hour)."""
    cached = (state or {}).get("release") or {}
    if cached.get("policy") == release["policy"] and now - cached.get("at", 0) < 6 * 3600:
        return cached
    url = f"{release['api_url'].rstrip('/')}/repos/{release['repository']}/releases?per_page=100"
    out = {"at": now, "policy": release["policy"]}
    try:
        request = urllib.request.Request(url, headers={"Accept": "application/vnd.github+json",
                                                       "User-Agent": "mattermost-deploy-notices"})
        with urllib.request.urlopen(request, timeout=20) as response:
            out["candidate"] = policy_candidate(json.loads(response.read()), release["policy"], release["esr_lines"])
    except (OSError, ValueError) as e:
        out["error"] = f"{url.split('/repos/')[0]}: {e}"
    return out


def checks(spec, state=None, now=None, network=False):
    """[{key, ok, text}] for: the service and its health, the nightly backup (failed or
    old), the off-server copy, the TLS certificate, disk use, repeated restarts, a held
    upgrade; with network (the timer, not the state query), a release the version policy
    points at. Reads only (the release lookup is returned in the state by run_notices)."""
    now = now or time.time()
    host, out = spec.get("host", "this server"), []

    def add(key, ok, text):
        out.append({"key": key, "ok": ok, "text": text})

    health = ping(spec["ping_url"]) if systemctl("is-active", spec.get("service", "mattermost")).stdout.strip() == \
        "active" else {"ok": False, "error": "the service is not running", "version": None}
    add("down", health["ok"], f"Mattermost {health['version']} answers" if health["ok"] else
        f"Mattermost on {host} is not answering: {health.get('error')}")

    remote = remote_db()
    if remote:  # the database on another machine: does Mattermost's role still get in (verify-full)?

        outcome = remote_login(remote, read_password(remote["password_file"]) or "")
        add("database", outcome is True, f"the database at {remote['host']} answers (TLS verified)" if outcome is True
            else f"the database at {remote['host']}:{remote['port']} does not let Mattermost in: {outcome}")

    if systemctl("is-failed", "mattermost-backup.service").stdout.strip() == "failed":
        add("backup-failed", False, "the last nightly backup FAILED: " +
            " / ".join(journal_tail("mattermost-backup.service", 3).splitlines()[-3:]))
    names = backup_names(spec["backup_dir"]) if os.path.isdir(spec["backup_dir"]) else []
    age = (now - os.stat(os.path.join(spec["backup_dir"], names[-1])).st_mtime) / 3600 if names else None
    limit = spec.get("backup_max_age_hours")
    if limit and age is not None and age > limit:
        add("backup-stale", False, f"the newest backup ({names[-1]}) is {age:.0f} hours old (nightly expected)")
    elif not any(r["key"] == "backup-failed" for r in out):
        add("backup", True, f"newest backup {names[-1]}" if names else "no backups kept")

    if spec.get("offsite_status_file"):
        offsite = offsite_state({"status_file": spec["offsite_status_file"]})
        if offsite["state"] in ("failed", "stale"):
            add("offsite", False, f"the off-server copy is {offsite['state'].upper()}: "
                f"{offsite.get('error') or 'no copy for more than a day'}")
        else:
            add("offsite", True, f"off-server copy {offsite['state']}")

    days = certificate_days(spec["certificate"], now) if spec.get("certificate") else None
    if days is not None:
        ok = days >= spec.get("cert_days", 14)
        add("certificate", ok, f"the TLS certificate expires in {days:.0f} days" if ok else
            f"the TLS certificate ({spec['certificate']}) expires in {max(days, 0):.1f} days: renew it "
            "(certbot renew; or replace your own certificate)")

    seen = set()
    for path in spec.get("disk_paths", ["/"]):
        if not os.path.exists(path) or os.stat(path).st_dev in seen:
            continue
        seen.add(os.stat(path).st_dev)
        usage = shutil.disk_usage(path)
        percent = 100 * usage.used / usage.total
        limit = spec.get("disk_percent", 90)
        add(f"disk:{path}", percent < limit, f"disk of {path} {percent:.0f}% used" +
            ("" if percent < limit else f" (above {limit}%): {usage.free >> 30} GB free"))

    restarts, _ = restarts_today(spec, state, now)
    limit = spec.get("restart_limit", 3)
    add("restarts", restarts < limit, f"{restarts} automatic restarts today" if restarts < limit else
        f"systemd restarted Mattermost {restarts} times today (it keeps failing): " +
        " / ".join(journal_tail(spec.get("service", "mattermost"), 3).splitlines()[-3:]))

    hold = read_json(spec["hold_file"]) if spec.get("hold_file") else None
    if hold:
        add(f"hold:{hold.get('version')}", False,
            f"upgrades are held at {hold.get('version')}: {hold.get('reason')} (make unhold once fixed)")

    if network and spec.get("security"):  # the security report's failing items (lynis refreshed daily)
        for item in security_report(spec["security"], now)["items"]:
            if item["ok"] is False:
                add(f"security:{item['id']}", False, f"security: {item['text']} - {item['reason']} "
                    "(make security-report)")

    if network and spec.get("release") and health["ok"] and health.get("version"):
        found = release_lookup(spec["release"], state, now)
        if state is not None:
            state["release"] = found
        candidate, running = found.get("candidate"), health["version"]
        if found.get("error"):
            add("release", True, f"the release list could not be read: {found['error']}")
        elif candidate and version_key(candidate) > version_key(running) and candidate != (hold or {}).get("version"):
            add(f"release:{candidate}", False, f"Mattermost {candidate} is out and the version policy "
                f"({spec['release']['policy']}) points at it; {running} runs: `make diff` shows the upgrade, "
                "`make deploy` or patch night does it")
        else:
            add("release", True, f"Mattermost {running} is what the version policy wants")
    return out


# ---- delivery
def team_channel(spec):
    team, _, channel = spec["channel"].partition(":")
    return team, channel


def channel_ready(spec):
    """The named channel (made private if missing) with the deploy's bot in it; its id."""
    team_name, channel_name = team_channel(spec)
    try:
        team = local_api(spec, "GET", f"/api/v4/teams/name/{urllib.parse.quote(team_name)}")
    except Failure:
        raise Failure(f"notices_channel {spec['channel']}: there is no team {team_name!r} on the server: create it "
                      "(or name another team), then re-run") from None
    bot = find_user(spec, spec["bot"])
    if bot is None or not os.path.exists(spec["token_file"]):
        bot_token(spec)
        bot = find_user(spec, spec["bot"])
    try:
        channel = local_api(spec, "GET", f"/api/v4/teams/name/{urllib.parse.quote(team_name)}/channels/name/"
                                         f"{urllib.parse.quote(channel_name)}")
    except Failure:
        channel = local_api(spec, "POST", "/api/v4/channels", {
            "team_id": team["id"], "name": channel_name, "display_name": "Operations notices", "type": "P",
            "purpose": "Messages from the Mattermost deploy: backups, upgrades, certificates, disk"})
        print(f"created the private channel {spec['channel']} (add the people who should read it)")
    with contextlib.suppress(Failure):  # already a member answers with an error on some versions
        local_api(spec, "POST", f"/api/v4/teams/{team['id']}/members", {"team_id": team["id"], "user_id": bot["id"]})
    try:
        local_api(spec, "GET", f"/api/v4/channels/{channel['id']}/members/{bot['id']}")
    except Failure:
        local_api(spec, "POST", f"/api/v4/channels/{channel['id']}/members", {"user_id": bot["id"]})
    return channel["id"]


def notices_ready(spec):
    """Read-only: the bot's token works and the bot is in the named channel."""
    try:
        team_name, channel_name = team_channel(spec)
        bot = find_user(spec, spec["bot"])
        if bot is None or not bot_token_works(spec):
            return False
        channel = local_api(spec, "GET", f"/api/v4/teams/name/{urllib.parse.quote(team_name)}/channels/name/"
                                         f"{urllib.parse.quote(channel_name)}")
        local_api(spec, "GET", f"/api/v4/channels/{channel['id']}/members/{bot['id']}")
        return True
    except (Failure, OSError, ValueError, KeyError):
        return False


def notices_state(query):
    """For the state query: the health checks, and whether notices can be posted."""
    spec = query["checks"]
    state = read_json(spec["state_file"]) or {}
    out = {"checks": checks(spec, state), "sent": state.get("sent") or {}}
    if query.get("full") and query["full"].get("channel"):
        out["ready"] = os.path.exists(query["full"]["socket"]) and notices_ready(query["full"])
    return out


def notices_setup(spec):
    """The deploy's step: bot, token, channel and membership in place."""
    channel_id = channel_ready(spec)
    print(f"notices go to {spec['channel']} ({channel_id})")


def deliver(spec, subject, text):
    """Post to the channel; else e-mail; else Failure with both reasons."""
    errors = []
    if spec.get("channel"):
        try:
            channel_id = channel_ready(spec)
            api_with_token(spec, "POST", "/api/v4/posts",
                           json.dumps({"channel_id": channel_id, "message": f"**{subject}**\n{text}"}).encode())
            return "posted"
        except (Failure, OSError, ValueError, KeyError) as e:
            errors.append(f"post to {spec['channel']}: {e}")
    config = read_json(spec["config_file"]) or {}
    if spec.get("email_to") and (config.get("EmailSettings") or {}).get("SMTPServer"):
        try:
            smtp_send(config, spec["email_to"], subject, text)
            return "mailed"
        except (OSError, ValueError) as e:
            errors.append(f"e-mail to {spec['email_to']}: {e}")
    else:
        errors.append("no e-mail fallback (notices_email and smtp_server)")
    raise Failure("the notice could not be delivered: " + "; ".join(errors))


def load_state(spec):
    return read_json(spec["state_file"]) or {"sent": {}}


def save_state(spec, state):
    os.makedirs(os.path.dirname(spec["state_file"]), exist_ok=True)
    write_private(spec["state_file"], json.dumps(state, indent=1, sort_keys=True) + "\n")


def due(state, key, now):
    return now - state.get("sent", {}).get(key, 0) >= DAY


def run_notices(spec, now=None):
    """The timer's run: alerts for new problems (each once a day), the daily digest."""
    now = now or time.time()
    state = load_state(spec)
    state.setdefault("sent", {})
    results = checks(spec, state, now, network=True)
    _, state["restarts"] = restarts_today(spec, state, now)
    problems = [r for r in results if not r["ok"]]
    keys = {r["key"] for r in problems}
    for key in [k for k in state["sent"] if not k.startswith("event:") and k not in keys]:
        del state["sent"][key]  # solved: the next time it happens it is news again
    for key in [k for k in state["sent"] if k.startswith("event:") and now - state["sent"][k] >= DAY]:
        del state["sent"][key]
    host = spec.get("host", "the server")
    fresh = [r for r in problems if due(state, r["key"], now)]
    today = time.strftime("%Y-%m-%d", time.localtime(now))
    digest = state.get("digest_day") != today and time.strftime("%H:%M", time.localtime(now)) >= spec.get(
        "digest_time", "08:00")
    try:
        if fresh:
            how = deliver(spec, f"{host}: {len(fresh)} problem{'s' if len(fresh) > 1 else ''}",
                          "\n".join(f"- :warning: {r['text']}" for r in fresh))
            for r in fresh:
                state["sent"][r["key"]] = now
            print(f"alert {how}: " + "; ".join(r["text"] for r in fresh))
        if digest:
            lines = [f"- {':warning:' if not r['ok'] else ':white_check_mark:'} {r['text']}" for r in results]
            how = deliver(spec, f"{host}: daily digest ({'all good' if not problems else f'{len(problems)} problems'})",
                          "\n".join(lines))
            state["digest_day"] = today
            for r in problems:
                state["sent"][r["key"]] = now
            print(f"digest {how}")
    finally:
        save_state(spec, state)
    if not fresh and not digest:
        print("nothing new" + (f" ({len(problems)} known problem(s), told within the day)" if problems else ""))


def event(key, subject, text, spec_file=SPEC_FILE, now=None):
    """A notice from another step (upgrade, rollback, patch night): delivered once a day per
    key when notices are configured; never fails the step that sends it."""
    spec = read_json(spec_file)
    if not spec:
        return None
    now = now or time.time()
    try:
        state = load_state(spec)
        state.setdefault("sent", {})
        if not due(state, f"event:{key}", now):
            return "already told"
        how = deliver(spec, f"{spec.get('host', 'the server')}: {subject}", text)
        state["sent"][f"event:{key}"] = now
        save_state(spec, state)
        print(f"  notice {how}: {subject}", flush=True)
        return how
    except (Failure, OSError, ValueError) as e:
        print(f"  warning: notice not delivered: {e}", flush=True)
        return None


def notify(spec):
    """The workstation's events (an upgrade refused or held): {key, subject, text}."""
    event(spec["key"], spec["subject"], spec["text"], spec.get("spec_file", SPEC_FILE))
