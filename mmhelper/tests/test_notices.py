"""Notices: one message per problem per day, a solved problem is news again when it comes
back, the digest once a day after its time, events once a day per key; and the checks
themselves on real files (a certificate made by openssl, the disk, backups)."""

import json
import os
import subprocess
import time

import pytest

import mmhelper.steps.notices as notices

DAY = 86400
MORNING = time.mktime((2026, 11, 24, 9, 0, 0, 0, 0, -1))  # local time, after a 08:00 digest


@pytest.fixture
def world(tmp_path, monkeypatch):
    """The checks and the delivery replaced by a recorder; state in a temporary file."""
    found, sent = {"problems": []}, []

    def checks(spec, state=None, now=None, network=False):
        return [{"key": "down", "ok": True, "text": "Mattermost answers"}] + [
            {"key": key, "ok": False, "text": f"problem {key}"} for key in found["problems"]]

    def deliver(spec, subject, text):
        sent.append((subject, text))
        return "posted"

    monkeypatch.setattr(notices, "checks", checks)
    monkeypatch.setattr(notices, "deliver", deliver)
    monkeypatch.setattr(notices, "restarts_today", lambda spec, state, now: (0, {}))
    spec = {"state_file": str(tmp_path / "notices.json"), "host": "chat", "digest_time": "08:00"}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    return {"found": found, "sent": sent, "spec": spec, "spec_file": str(tmp_path / "spec.json")}


def test_one_message_per_problem_per_day_and_a_solved_problem_is_news_again(world):
    spec, sent, found = world["spec"], world["sent"], world["found"]
    found["problems"] = ["backup-failed"]
    notices.run_notices(spec, now=MORNING)  # alert + digest
    assert [s for s, _ in sent] == ["chat: 1 problem", "chat: daily digest (1 problems)"]
    notices.run_notices(spec, now=MORNING + 900)
    notices.run_notices(spec, now=MORNING + 3600)
    assert len(sent) == 2  # the same problem: not again within the day
    found["problems"] = ["backup-failed", "certificate"]
    notices.run_notices(spec, now=MORNING + 4000)
    assert sent[-1] == ("chat: 1 problem", "- :warning: problem certificate")  # only the new one
    found["problems"] = ["certificate"]
    notices.run_notices(spec, now=MORNING + 5000)  # backup solved: nothing to say
    assert len(sent) == 3
    found["problems"] = ["backup-failed", "certificate"]
    notices.run_notices(spec, now=MORNING + 6000)  # it failed again: news
    assert sent[-1] == ("chat: 1 problem", "- :warning: problem backup-failed")
    notices.run_notices(spec, now=MORNING + DAY - 4000)  # 07:53 next day: no digest yet, no alert 24 h old
    assert len(sent) == 4
    notices.run_notices(spec, now=MORNING + DAY + 4000)  # the next day: digest, then both again
    subjects = [s for s, _ in sent[4:]]
    assert subjects == ["chat: 1 problem", "chat: daily digest (2 problems)"] or \
        subjects == ["chat: 2 problems", "chat: daily digest (2 problems)"]


def test_the_digest_comes_once_a_day_after_its_time(world):
    spec, sent = world["spec"], world["sent"]
    early = MORNING - 2 * 3600  # 07:00
    notices.run_notices(spec, now=early)
    assert sent == []
    notices.run_notices(spec, now=MORNING)
    assert sent == [("chat: daily digest (all good)", "- :white_check_mark: Mattermost answers")]
    notices.run_notices(spec, now=MORNING + 3 * 3600)
    assert len(sent) == 1
    notices.run_notices(spec, now=MORNING + DAY)
    assert len(sent) == 2


def test_events_once_a_day_per_key_and_nothing_without_notices(world, tmp_path):
    assert notices.event("upgraded-11.4.0", "upgraded", "10.3 -> 11.4", world["spec_file"], now=MORNING) == "posted"
    assert notices.event("upgraded-11.4.0", "upgraded", "10.3 -> 11.4", world["spec_file"], now=MORNING + 60) == \
        "already told"
    assert notices.event("rolled-back-11.4.1", "rolled back", "...", world["spec_file"], now=MORNING + 60) == "posted"
    assert notices.event("upgraded-11.4.0", "upgraded", "again", world["spec_file"], now=MORNING + DAY) == "posted"
    assert notices.event("x", "y", "z", str(tmp_path / "absent.json")) is None
    assert len(world["sent"]) == 3


def test_undeliverable_notices_fail_the_timer_but_keep_the_state(world, monkeypatch):
    def broken(spec, subject, text):
        raise notices.Failure("the notice could not be delivered: post: down; e-mail: refused")

    monkeypatch.setattr(notices, "deliver", broken)
    world["found"]["problems"] = ["down"]
    with pytest.raises(notices.Failure):
        notices.run_notices(world["spec"], now=MORNING)
    state = json.loads(open(world["spec"]["state_file"]).read())
    assert "down" not in state["sent"]  # not told: the next run tries again


def test_certificate_days_from_a_real_certificate(tmp_path):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "10", "-subj", "/CN=chat",
                    "-keyout", tmp_path / "k.pem", "-out", tmp_path / "c.pem"], check=True, capture_output=True)
    days = notices.certificate_days(str(tmp_path / "c.pem"))
    assert 9.99 < days <= 10.0
    assert notices.certificate_days(str(tmp_path / "missing.pem")) is None


def test_disk_and_backup_checks_on_real_folders(tmp_path, monkeypatch):
    monkeypatch.setattr(notices, "ping", lambda url: {"ok": True, "version": "11.4.0", "error": None})
    backups = tmp_path / "backups"
    (backups / "20261120-010000-11.4.0-nightly").mkdir(parents=True)
    (backups / "20261120-010000-11.4.0-nightly" / "manifest.json").write_text("{}")
    old = time.time() - 50 * 3600
    os.utime(backups / "20261120-010000-11.4.0-nightly", (old, old))
    spec = {"ping_url": "x", "backup_dir": str(backups), "backup_max_age_hours": 26, "disk_paths": [str(tmp_path)],
            "disk_percent": 1, "restart_limit": 1000, "state_file": str(tmp_path / "s.json")}
    results = {r["key"]: r for r in notices.checks(spec)}
    assert not results["backup-stale"]["ok"] and "50 hours old" in results["backup-stale"]["text"]
    assert not results[f"disk:{tmp_path}"]["ok"]  # any real disk is above 1%
    spec["disk_percent"] = 100.01  # nothing is above 100%
    assert {r["key"]: r for r in notices.checks(spec)}[f"disk:{tmp_path}"]["ok"]


RELEASES = [{"tag_name": t, "draft": d, "prerelease": p} for t, d, p in [
    ("v11.6.0", True, False), ("v11.6.0-rc1", False, True), ("server/public/v0.4.3", False, False),
    ("v11.5.0", False, False), ("v11.4.2", False, False), ("v11.4.10", False, False), ("v10.11.9", False, False)]]


def test_the_policy_candidate_follows_the_deploys_rules():
    assert notices.policy_candidate(RELEASES, "latest", []) == "11.5.0"
    assert notices.policy_candidate(RELEASES, "esr", ["10.11", "11.4"]) == "11.4.10"  # 10 > 2
    assert notices.policy_candidate(RELEASES, "10.11", []) == "10.11.9"
    assert notices.policy_candidate(RELEASES, "12.0", []) is None


@pytest.fixture
def github(tmp_path):
    """A local HTTP server answering the GitHub releases route with RELEASES."""
    import http.server
    import threading

    asked = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            asked.append(self.path)
            body = json.dumps(RELEASES).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/api", asked
    server.shutdown()


def test_a_release_the_policy_wants_is_a_problem_until_installed_and_read_every_six_hours(github, tmp_path,
                                                                                             monkeypatch):
    url, asked = github
    running = {"version": "11.4.2"}
    monkeypatch.setattr(notices, "ping", lambda u: {"ok": True, "version": running["version"], "error": None})
    monkeypatch.setattr(notices, "systemctl", lambda *a: subprocess.CompletedProcess(a, 0, "active\n", ""))
    spec = {"ping_url": "x", "backup_dir": str(tmp_path), "disk_paths": [], "restart_limit": 1000,
            "release": {"api_url": url, "repository": "mattermost/mattermost", "policy": "11.4", "esr_lines": []}}
    state, now = {}, time.time()
    found = {r["key"]: r for r in notices.checks(spec, state, now, network=True)}
    assert not found["release:11.4.10"]["ok"] and "policy (11.4) points at it; 11.4.2 runs" in \
        found["release:11.4.10"]["text"]
    assert asked == ["/api/repos/mattermost/mattermost/releases?per_page=100"]
    notices.checks(spec, state, now + 3600, network=True)
    assert len(asked) == 1  # cached
    running["version"] = "11.4.10"
    found = {r["key"]: r for r in notices.checks(spec, state, now + 7 * 3600, network=True)}
    assert len(asked) == 2 and found["release"]["ok"]
    assert "release" not in {r["key"] for r in notices.checks(spec, {}, now)}  # the state query asks no one
