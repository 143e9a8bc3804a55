"""The mattermost service: systemctl, a start that waits for a healthy ping of the wanted
version, and the last error its journal gives when it does not come up.
"""

import json
import re
import subprocess
import time

from mmhelper.parts.common import Failure, ping


def systemctl(*args):
    return subprocess.run(["systemctl", *args], capture_output=True, text=True)


def unit_property(unit, prop):
    return systemctl("show", unit, "-p", prop, "--value").stdout.strip()


def wait_healthy(spec):
    deadline = time.time() + spec["timeout"]
    last, shown = None, 0.0
    while True:
        result = ping(spec["url"])
        if result["ok"] and result["version"] == spec["version"]:
            print(f"Mattermost {result['version']} is healthy")
            return
        last = result["error"] or f"running version {result['version']}, expected {spec['version']}"
        if time.time() > deadline:
            raise Failure(f"Mattermost is not healthy after {spec['timeout']}s ({last}): "
                          f"see `journalctl -u {spec.get('service', 'mattermost')} -n 50`")
        if time.time() - shown > 10:
            print(f"  waiting for a healthy ping: {last}", flush=True)
            shown = time.time()
        time.sleep(0.5)


ERROR_LEVELS = ("error", "fatal", "critical", "panic")


SYSTEMD_GENERIC = ("Failed to start ", "Failed with result", "Scheduled restart job", "Stopped ", "Starting ",
                   "Consumed ", "Deactivated successfully")


def last_error(lines):
    """The last error a unit's journal gives, in one line: Mattermost's own (its JSON log
    lines: msg and error; or the plain console form `error [time] msg err=...`), else
    systemd's last specific word about the unit (how its process exited)."""
    fallback = None
    for line in reversed([line.strip() for line in lines if line.strip()]):
        if line.startswith("{"):
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if str(entry.get("level", "")).lower() in ERROR_LEVELS:
                detail = entry.get("error") or entry.get("err")
                return f"{entry.get('msg', '').strip()}{': ' + str(detail) if detail else ''}"[:400]
            continue
        plain = re.match(r"^(?:error|fatal|critical|panic)\s+\[[^\]]*\]\s+(?P<rest>.*)$", line, re.I)
        if plain:
            return plain.group("rest")[:400]
        if fallback is None and not any(word in line for word in SYSTEMD_GENERIC):
            fallback = line[:400]
    return fallback or "its journal says nothing more"


def journal_error(service, since=None):
    """The last error in the unit's journal (since a time, when given)."""
    cmd = ["journalctl", "-u", service, "--no-pager", "-o", "cat", "-n", "300"]
    if since:
        cmd += ["--since", f"@{int(since) - 1}"]
    return last_error(subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines())


def unit_name(service):
    return service if "." in service else f"{service}.service"


def start_service(spec):
    """(Re)start the service and wait for a healthy ping of the wanted version; a failure
    names the unit and the last error its journal gives."""
    service, since = spec.get("service", "mattermost"), time.time()
    try:
        result = subprocess.run(["systemctl", "restart" if spec.get("restart", True) else "start", service],
                                capture_output=True, text=True, timeout=spec.get("start_timeout", 3600))
    except subprocess.TimeoutExpired:
        raise Failure(f"{unit_name(service)} did not report ready within {spec.get('start_timeout', 3600)}s: "
                      f"{journal_error(service, since)}") from None
    if result.returncode != 0:
        raise Failure(f"{unit_name(service)} failed to start: {journal_error(service, since)}")
    try:
        wait_healthy(spec)
    except Failure as e:
        raise Failure(f"{e}; the last error of {unit_name(service)}: {journal_error(service, since)}") from None


def journal_tail(service, lines=8):
    out = subprocess.run(["journalctl", "-u", service, "-n", str(lines), "--no-pager", "-o", "cat"],
                         capture_output=True, text=True).stdout
    return out.strip()


def start_and_verify(spec, version):
    """Start and wait: `systemctl start` returns once a Type=notify service is ready
    (migrations included, up to start_timeout) or has failed; then a healthy ping."""
    service = spec["service"]
    try:
        result = subprocess.run(["systemctl", "start", service], capture_output=True, text=True,
                                timeout=spec.get("start_timeout", 3600))
    except subprocess.TimeoutExpired:
        raise Failure(f"Mattermost {version} did not report ready within {spec.get('start_timeout', 3600)}s") from None
    if result.returncode != 0:
        print("  last lines of its log:\n    " + journal_tail(service).replace("\n", "\n    "), flush=True)
        raise Failure(f"Mattermost {version} failed to start ({unit_name(service)}: {journal_error(service)}; "
                      f"see `journalctl -u {service}`)")
    wait_healthy({"url": spec["ping_url"], "version": version, "timeout": spec["timeout"], "service": service})
