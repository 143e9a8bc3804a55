"""The security report's server side (`make security-report`; the notices timer says a
failing item once a day): Mattermost's security-relevant settings against a baseline, each
with its reason; the sockets listening beyond loopback (the workstation probes them from
outside); TLS as nginx serves it; the service's `systemd-analyze security` exposure; the
bans in force and the failed sign-ins of the last day; the lynis hardening index.

An item: {"id", "area", "ok": True | False | None (said, never failing), "text", "reason"}.
What the deploy owns (managed-config.json) is set back by the next `make deploy`; what it
does not own was changed in the System Console and is the admin's to undo: the text says
which.
"""

import calendar
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import time

from mmhelper.parts.common import read_json
from mmhelper.parts.proc import heartbeat
from mmhelper.parts.service import systemctl

DAY = 86400
FAILED_LOGIN = "A user tried to sign in, which matched a Mattermost account, but the password was incorrect."
LYNIS_REPORT = "/var/log/lynis-report.dat"


def _get(config, dotted):
    value = config
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _session_hours(config, kind):
    """SessionLength{kind}InHours (9.x on), else the older ...InDays in hours."""
    hours = _get(config, f"ServiceSettings.SessionLength{kind}InHours")
    if hours is None and _get(config, f"ServiceSettings.SessionLength{kind}InDays") is not None:
        hours = _get(config, f"ServiceSettings.SessionLength{kind}InDays") * 24
    return hours


# (id, the setting(s), is it safe (config -> bool), what is expected, why)
BASELINE = [
    ("open-sign-up", "TeamSettings.EnableOpenServer",
     lambda c: not _get(c, "TeamSettings.EnableOpenServer") or bool(_get(c, "TeamSettings.RestrictCreationToDomains")),
     "off, or limited to your domains (RestrictCreationToDomains)",
     "anyone who finds the address can make an account and read every public channel"),
    ("email-verification", "EmailSettings.RequireEmailVerification",
     lambda c: not _get(c, "TeamSettings.EnableOpenServer") or bool(_get(c, "EmailSettings.RequireEmailVerification")),
     "on while sign-up is open",
     "an open sign-up without a verified address lets anyone pose as someone of an allowed domain"),
    ("public-links", "FileSettings.EnablePublicLink", lambda c: not _get(c, "FileSettings.EnablePublicLink"),
     "off", "a public link opens a file for anyone who gets the link, without signing in, until it is revoked"),
    ("guest-accounts", "GuestAccountsSettings.Enable", lambda c: not _get(c, "GuestAccountsSettings.Enable"),
     "off", "guests from outside the organisation; turn on only with a reviewed list of who may invite them"),
    ("session-length", "ServiceSettings.SessionLengthWebInHours",
     lambda c: (_session_hours(c, "Web") or 0) <= 720 and (_session_hours(c, "Mobile") or 0) <= 4320,
     "web sessions at most 30 days, mobile at most 180",
     "a stolen or forgotten session stays signed in that long; offboarding relies on sessions ending"),
    ("mfa", "ServiceSettings.EnableMultifactorAuthentication",
     lambda c: bool(_get(c, "ServiceSettings.EnableMultifactorAuthentication")), "on",
     "without it a guessed or leaked password is the whole way in"),
    ("insecure-outgoing", "ServiceSettings.EnableInsecureOutgoingConnections",
     lambda c: not _get(c, "ServiceSettings.EnableInsecureOutgoingConnections"), "off",
     "link previews, webhooks and plugins would accept any certificate: a man in the middle reads and changes them"),
    ("cors", "ServiceSettings.AllowCorsFrom", lambda c: not (_get(c, "ServiceSettings.AllowCorsFrom") or "").strip(),
     "empty", "other web sites could call the API from a signed-in user's browser"),
    ("developer-mode", "ServiceSettings.EnableDeveloper", lambda c: not _get(c, "ServiceSettings.EnableDeveloper"),
     "off", "shows internal errors (paths, SQL) to every user"),
    ("testing-mode", "ServiceSettings.EnableTesting", lambda c: not _get(c, "ServiceSettings.EnableTesting"), "off",
     "test commands (/test) that fill channels with generated posts and accounts"),
    ("plugin-uploads", "PluginSettings.EnableUploads", lambda c: not _get(c, "PluginSettings.EnableUploads"), "off",
     "a system admin's browser session (or a stolen one) could upload code that runs inside the server"),
    ("rate-limit", "RateLimitSettings.Enable", lambda c: bool(_get(c, "RateLimitSettings.Enable")), "on",
     "nothing slows a client hammering the API"),
    ("trusted-proxy-header", "ServiceSettings.TrustedProxyIPHeader",
     lambda c: (_get(c, "ServiceSettings.TrustedProxyIPHeader") or []) == ["X-Real-IP"]
     and str(_get(c, "ServiceSettings.ListenAddress") or "").startswith("127.0.0.1:"),
     "[\"X-Real-IP\"] with Mattermost on loopback behind nginx",
     "the rate limiter, the failed-sign-in log line and the audit rows need the client's real address; a header "
     "trusted on a public listener could be forged by anyone"),
    ("api-user-deletion", "ServiceSettings.EnableAPIUserDeletion",
     lambda c: not _get(c, "ServiceSettings.EnableAPIUserDeletion"), "off",
     "permanent deletion through the API by any admin session; the deploy erases over the local socket"),
    ("api-channel-deletion", "ServiceSettings.EnableAPIChannelDeletion",
     lambda c: not _get(c, "ServiceSettings.EnableAPIChannelDeletion"), "off",
     "permanent deletion of channels through the API; the deploy deletes over the local socket after a backup"),
    ("api-team-deletion", "ServiceSettings.EnableAPITeamDeletion",
     lambda c: not _get(c, "ServiceSettings.EnableAPITeamDeletion"), "off", "permanent deletion of whole teams"),
    ("login-attempts", "ServiceSettings.MaximumLoginAttempts",
     lambda c: 0 < (_get(c, "ServiceSettings.MaximumLoginAttempts") or 0) <= 10, "from 1 to 10",
     "more guesses per account before it locks"),
    ("password-length", "PasswordSettings.MinimumLength",
     lambda c: (_get(c, "PasswordSettings.MinimumLength") or 0) >= 10, "10 or more",
     "short passwords fall to guessing"),
    ("diagnostics", "LogSettings.EnableDiagnostics", lambda c: not _get(c, "LogSettings.EnableDiagnostics"), "off",
     "usage data and error reports leave the server for Mattermost, Inc."),
    ("smtp-tls", "EmailSettings.ConnectionSecurity",
     lambda c: not _get(c, "EmailSettings.SMTPServer") or _get(c, "EmailSettings.SMTPServer") in ("localhost", "127.0.0.1")
     or _get(c, "EmailSettings.ConnectionSecurity") in ("TLS", "STARTTLS"),
     "TLS or STARTTLS to a relay that is not on this server",
     "password-reset and invitation mails, and the relay's password, cross the network in clear"),
]


def settings_items(config, owned):
    out = []
    for item_id, key, safe, expected, reason in BASELINE:
        value = _get(config, key)
        ok = bool(safe(config))
        whose = ("the deploy owns it: the next `make deploy` sets it back" if key in owned else
                 "changed in the System Console (or config.json): the deploy leaves it to you - change it back there")
        text = f"{key} = {json.dumps(value)}" + ("" if ok else f" (expected {expected}; {whose})")
        out.append({"id": item_id, "area": "mattermost", "ok": ok, "text": text, "reason": reason})
    return out


def listening():
    """TCP sockets listening beyond loopback: [{port, address, process}]."""
    result = subprocess.run(["ss", "-H", "-ltnp"], capture_output=True, text=True)
    out, seen = [], set()
    for line in result.stdout.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        address, _, port = fields[3].rpartition(":")
        address = address.strip("[]")
        if address.startswith("127.") or address in ("::1",) or address.startswith("%lo") or "%lo" in address:
            continue
        process = re.search(r'users:\(\("([^"]+)"', line)
        key = (int(port), process.group(1) if process else "?")
        if key not in seen:
            seen.add(key)
            out.append({"port": int(port), "address": address, "process": key[1]})
    return sorted(out, key=lambda x: x["port"])


def tls_items(spec, now):
    """The certificate nginx serves for the site (days left, self-signed or not) and the
    protocols its configuration allows."""
    out = []
    try:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        with socket.create_connection(("127.0.0.1", spec.get("https_port", 443)), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname=spec["domain"]) as tls:
                der, version = tls.getpeercert(binary_form=True), tls.version()
    except OSError as e:
        return [{"id": "tls", "area": "tls", "ok": False, "text": f"nginx does not answer on 443: {e}",
                 "reason": "people cannot reach Mattermost over HTTPS"}]
    pem = ssl.DER_cert_to_PEM_cert(der)
    fields = subprocess.run(["openssl", "x509", "-noout", "-enddate", "-subject", "-issuer", "-nameopt", "RFC2253"],
                            input=pem, capture_output=True, text=True).stdout
    end = re.search(r"notAfter=(.+)", fields)
    subject = (re.search(r"subject=(.*)", fields) or [None, ""])[1].strip()
    issuer = (re.search(r"issuer=(.*)", fields) or [None, ""])[1].strip()
    days = None
    if end:
        days = (calendar.timegm(time.strptime(end.group(1).strip().replace(" GMT", ""), "%b %d %H:%M:%S %Y"))
                - now) / DAY
    ok = days is not None and days >= 14
    out.append({"id": "tls-certificate", "area": "tls", "ok": ok,
                "text": f"the certificate for {spec['domain']} expires in {days:.0f} days ({version} negotiated)"
                if days is not None else "the certificate's end date could not be read",
                "reason": "an expired certificate locks out every client, the mobile apps first"})
    out.append({"id": "tls-self-signed", "area": "tls", "ok": None if subject == issuer else True,
                "text": (f"the certificate is self-signed ({subject}): browsers and the apps warn; set acme_email "
                         "or nginx_tls_certificate") if subject == issuer else f"issued by {issuer}",
                "reason": "people learn to click through warnings"})
    config = subprocess.run(["nginx", "-T"], capture_output=True, text=True).stdout
    protocols = sorted({p for line in re.findall(r"^\s*ssl_protocols\s+([^;]+);", config, re.M) for p in line.split()})
    old = [p for p in protocols if p in ("SSLv2", "SSLv3", "TLSv1", "TLSv1.1")]
    out.append({"id": "tls-protocols", "area": "tls", "ok": not old,
                "text": f"nginx allows {', '.join(protocols) or 'its defaults'}" + (
                    f": {', '.join(old)} must go" if old else ""),
                "reason": "SSLv3, TLS 1.0 and 1.1 are broken (RFC 8996)"})
    return out


def exposure_item(service):
    result = subprocess.run(["systemd-analyze", "security", service, "--no-pager"], capture_output=True, text=True)
    match = re.search(r"exposure level for \S+: ([\d.]+) (\S+)", result.stdout + result.stderr)
    if not match:
        return {"id": "service-exposure", "area": "system", "ok": None,
                "text": f"systemd-analyze security {service} gave no score", "reason": ""}
    score = float(match.group(1))
    return {"id": "service-exposure", "area": "system", "ok": score <= 3.0,
            "text": f"{service}: exposure {score} {match.group(2)} (systemd-analyze security; 3.0 or less wanted)",
            "reason": "a compromised Mattermost process should reach as little of the system as possible"}


def fail2ban_items(spec):
    if not spec.get("fail2ban_jails"):
        return [{"id": "fail2ban", "area": "access", "ok": None, "text": "fail2ban is off (fail2ban = False)",
                 "reason": "nothing bans an address that keeps guessing"}]
    if not shutil.which("fail2ban-client") or systemctl("is-active", "fail2ban").stdout.strip() != "active":
        return [{"id": "fail2ban", "area": "access", "ok": False, "text": "fail2ban is not running",
                 "reason": "nothing bans an address that keeps guessing SSH keys or Mattermost passwords"}]
    out, banned = [], {}
    for jail in spec["fail2ban_jails"]:
        result = subprocess.run(["fail2ban-client", "status", jail], capture_output=True, text=True)
        if result.returncode != 0:
            out.append({"id": f"fail2ban-{jail}", "area": "access", "ok": False,
                        "text": f"the fail2ban jail {jail} is not running: {result.stderr.strip()[-200:]}",
                        "reason": "its failures are not banned"})
            continue
        listed = re.search(r"Banned IP list:\s*(.*)", result.stdout)
        banned[jail] = (listed.group(1).split() if listed else [])
    if banned:
        text = "; ".join(f"{jail}: {', '.join(ips) if ips else 'none'}" for jail, ips in banned.items())
        out.append({"id": "bans", "area": "access", "ok": True, "text": f"bans in force - {text}",
                    "reason": "fail2ban bans addresses that keep failing; bans expire"})
    return out


def failed_logins(spec, now):
    """Mattermost's failed sign-ins (its own log line) and SSH's failures in the last day."""
    since, by_address, count = now - DAY, {}, 0
    path = os.path.join(spec["log_dir"], "mattermost.log")
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - (64 << 20)))
            for raw in f:
                if FAILED_LOGIN.encode() not in raw:
                    continue
                try:
                    entry = json.loads(raw)
                    when = calendar.timegm(time.strptime(entry["timestamp"][:19], "%Y-%m-%d %H:%M:%S"))
                except (ValueError, KeyError):
                    continue
                if when >= since:
                    count += 1
                    by_address[entry.get("ip_addr", "?")] = by_address.get(entry.get("ip_addr", "?"), 0) + 1
    except OSError:
        pass
    journal = subprocess.run(["journalctl", "--since", "-24h", "--no-pager", "-o", "cat", "_COMM=sshd",
                              "_COMM=sshd-session"], capture_output=True, text=True).stdout
    ssh = len(re.findall(r"^(Failed \S+ for|Invalid user|Connection closed by authenticating user)", journal, re.M))
    top = ", ".join(f"{a} ({n})" for a, n in sorted(by_address.items(), key=lambda x: -x[1])[:5])
    return [{"id": "failed-logins", "area": "access", "ok": None,
             "text": f"last 24 h: {count} failed Mattermost sign-ins" + (f" from {top}" if top else "")
             + f"; {ssh} failed SSH logins", "reason": "who is knocking"}]


def lynis_index(max_age):
    """The hardening index of lynis' last report; lynis runs again (about a minute) when it
    is older than max_age seconds - never when max_age is None (the notices timer: lynis'
    own daily timer keeps the report fresh)."""
    if not shutil.which("lynis"):
        return None, "lynis is not installed"
    try:
        age = time.time() - os.stat(LYNIS_REPORT).st_mtime
    except OSError:
        age = None
    if age is None and max_age is None:
        return None, "lynis has not run yet (its daily timer runs it; make security-report runs it now)"
    if max_age is not None and (age is None or age > max_age):
        with heartbeat("lynis audit system"):
            subprocess.run(["lynis", "audit", "system", "--quick", "--no-colors", "--cronjob"],
                           capture_output=True, text=True)
    try:
        with open(LYNIS_REPORT) as f:
            text = f.read()
    except OSError as e:
        return None, f"lynis wrote no report: {e}"
    match = re.search(r"^hardening_index=(\d+)", text, re.M)
    return (int(match.group(1)), None) if match else (None, "lynis' report has no hardening index")


def lynis_item(spec):
    index, error = lynis_index(spec.get("lynis_max_age", DAY))
    minimum = spec.get("lynis_minimum", 75)
    if index is None:
        return {"id": "lynis", "area": "system", "ok": None if "not run yet" in error else False, "text": error,
                "reason": "the hardening is unmeasured"}
    return {"id": "lynis", "area": "system", "ok": index >= minimum,
            "text": f"lynis hardening index {index} (at least {minimum} wanted; details: lynis show details, "
                    f"{LYNIS_REPORT})", "reason": "the system's own hardening, as security people measure it"}


def report(spec, now=None):
    now = now or time.time()
    items = []
    if spec.get("config_file"):
        config = read_json(spec["config_file"]) or {}
        owned = set(read_json(spec.get("managed_config_file", "")) or {}) if spec.get("managed_config_file") else set()
        items += settings_items(config, owned)
        items += tls_items(spec, now)
        items.append(exposure_item(spec.get("service", "mattermost")))
    items += fail2ban_items(spec)
    if spec.get("log_dir"):
        items += failed_logins(spec, now)
    items.append(lynis_item(spec))
    accepted = set(spec.get("accept") or [])
    for item in items:
        if item["ok"] is False and item["id"] in accepted:
            item["ok"], item["accepted"] = None, True
            item["text"] += " (accepted: security_report_accept)"
    return {"items": items, "listening": listening()}


def security_report(spec):
    print(json.dumps(report(spec)))
