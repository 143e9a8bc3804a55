"""Operations notices on a real Mattermost server: the deploy readies its bot in the channel
the operator names; the server's timer posts a forced backup failure and a certificate
close to expiry, each once; a rolled-back upgrade is posted by the upgrade itself; with
Mattermost stopped the alert arrives by e-mail at the real SMTP server, once. Posts are
read back through the API by an admin (mattermostdriver)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from tests import testhost
from tests.e2e import chat
from tests.e2e.conftest import KEEP, ROOT, deploy, planned_changes, sh
from tests.standin import build
from tests.testhost import UPSTREAM_ROOT

TARGET = "e2e-notices"
PORT = 24440
A, BROKEN = build.OLDER_ESR, build.BROKEN
OPS = "ops@example.org"
SETTINGS = [
    "--data", f"mattermost_version={A}",
    "--data", f"smtp_server={testhost.SMTP}", "--data", "smtp_port=25", "--data", 'smtp_security=""',
    "--data", "smtp_sender=chat@example.org",
    # the test relay speaks plain SMTP: the security report's smtp-tls item, accepted as an operator would
    "--data", 'security_report_accept=["smtp-tls"]',
    "--data", "notices_channel=acme:ops", "--data", f"notices_email={OPS}",
    "--data", "notices_digest_time=23:59",  # the digest is unit-tested; here only alerts and events
]


def notices_run() -> str:
    """One run of the server's timer job, as systemd starts it."""
    code, out = testhost.exec_on(TARGET, "systemctl start mattermost-notices.service; "
                                         "journalctl -u mattermost-notices.service -n 5 --no-pager -o cat")
    return out


def posts() -> list[str]:
    admin = chat.login(PORT, "boss")
    channel = admin.channels.get_channel_by_name_and_team_name("acme", "ops")
    found = admin.posts.get_posts_for_channel(channel["id"])
    return [found["posts"][i]["message"] for i in found["order"]]


@pytest.fixture(scope="module", autouse=True)
def server():
    testhost.ensure_smtp(testhost.client())
    testhost.clear_mail(OPS)
    testhost.stop_server(TARGET)
    # Its own name on the stand-in GitHub API: the release it announces is this story's alone.
    testhost.start_server(TARGET, ssh_port=22310, https_port=PORT, extra_data={
        "github_api_url": f"http://127.0.0.1:{testhost.UPSTREAM_PORT}/api-notices"})
    run = deploy(TARGET, "--data", f"mattermost_version={A}")
    assert run.ok, run.output[-4000:]
    chat.mmctl(TARGET, "team create --name acme --display-name Acme")
    chat.create_user(TARGET, "boss", team="acme", admin=True)
    yield
    if not KEEP:
        testhost.stop_server(TARGET)


def test_the_deploy_readies_its_bot_in_the_named_channel_and_a_second_run_changes_nothing():
    run = deploy(TARGET, *SETTINGS)
    assert run.ok, run.output[-4000:]
    assert "created the private channel acme:ops" in run.output
    channel = chat.login(PORT, "boss").channels.get_channel_by_name_and_team_name("acme", "ops")
    assert channel["type"] == "P"
    assert "mattermost-notices.timer" in sh(TARGET, "systemctl list-timers --all --no-pager")
    assert planned_changes(TARGET, *SETTINGS) == []
    assert "nothing new" in notices_run()  # a healthy server says nothing between digests


def test_a_failed_nightly_backup_is_posted_once():
    spec = "/etc/mattermost/backup.json"
    sh(TARGET, f"cp -p {spec} /root/backup.json && python3 -c \"import json; p='{spec}'; c=json.load(open(p)); "
               "c['backup_dir']='/proc/no-such-folder'; json.dump(c, open(p, 'w'))\"")
    try:
        code, _ = testhost.exec_on(TARGET, "systemctl start mattermost-backup.service")
        assert code != 0
    finally:
        sh(TARGET, f"cp -p /root/backup.json {spec}")
    notices_run()  # (the timer may have run first: then it posted, and this run says it was told)
    told = [p for p in posts() if "nightly backup FAILED" in p]
    assert len(told) == 1 and "1 problem" in told[0], told
    again = notices_run()
    assert "told within the day" in again, again
    assert len([p for p in posts() if "nightly backup FAILED" in p]) == 1


def test_a_certificate_close_to_expiry_is_posted():
    served = sh(TARGET, "nginx -T 2>/dev/null | awk '$1 == \"ssl_certificate\" {print $2}' | tr -d ';' | head -1").strip()
    key = sh(TARGET, "nginx -T 2>/dev/null | awk '$1 == \"ssl_certificate_key\" {print $2}' | tr -d ';' | head -1").strip()
    assert served.endswith(".crt") and key.endswith(".key")
    sh(TARGET, f"openssl req -x509 -newkey rsa:2048 -nodes -days 5 -subj /CN=chat -keyout {key} -out {served} "
               "2>/dev/null && systemctl reload nginx")
    notices_run()
    told = [p for p in posts() if "TLS certificate" in p]
    assert len(told) == 1 and re.search(r"expires in [45]\.\d days", told[0]), told
    # make status shows the same checks, and says something needs the operator.
    proc = subprocess.run([sys.executable, "-m", "verbs.status", "--json", *SETTINGS], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "MMDEPLOY_TARGET": TARGET}, timeout=300)
    [row] = json.loads(proc.stdout)
    assert proc.returncode == 1 and any("TLS certificate" in p for p in row["problems"]), row


def test_a_release_the_policy_wants_is_posted_once_by_the_timer():
    line = A.rsplit(".", 1)[0]
    new = f"{line}.99"
    # The policy follows the line A is the newest of; the server reads the stand-in GitHub API.
    on_line = [*SETTINGS, "--data", f"mattermost_version={line}", "--data",
               f"notices_github_api_url={build.UPSTREAM_HOST}/api-notices"]
    run = deploy(TARGET, *on_line)
    assert run.ok and "Upgrade Mattermost" not in run.output, run.output[-3000:]
    listing = UPSTREAM_ROOT / "github-notices" / "releases.json"
    original = (UPSTREAM_ROOT / "github" / "releases.json").read_text()
    listing.parent.mkdir(exist_ok=True)
    try:  # a new release of the line appears upstream
        listing.write_text(json.dumps([build.github_release(f"v{new}", day=30), *json.loads(original)]))
        notices_run()
        notices_run()
        told = [p for p in posts() if f"Mattermost {new} is out" in p]
        assert len(told) == 1 and f"policy ({line}) points at it; {A} runs" in told[0], told
    finally:
        listing.unlink()


def test_a_rolled_back_upgrade_is_posted_by_the_upgrade():
    run = deploy(TARGET, *SETTINGS, "--data", f"mattermost_version={BROKEN}")
    assert not run.ok and "rolled back" in run.output
    told = [p for p in posts() if f"upgrade to {BROKEN} ROLLED BACK" in p]
    assert len(told) == 1 and f"{A} -> {BROKEN} failed" in told[0]
    # The next runs refuse the held release and tell the channel once a day.
    for _ in range(2):
        run = deploy(TARGET, *SETTINGS, "--data", f"mattermost_version={BROKEN}")
        assert run.ok and "held after a rollback" in run.output, run.output[-3000:]
    refused = [p for p in posts() if f"upgrade to {BROKEN} refused" in p]
    assert len(refused) == 1 and "held after a rollback" in refused[0]


def test_with_mattermost_stopped_the_alert_arrives_by_email_once():
    testhost.clear_mail(OPS)
    sh(TARGET, "systemctl stop mattermost")
    try:
        out = notices_run()
        assert "alert mailed" in out or "told within the day" in out, out
        mails = testhost.received_mail(OPS)
        assert len(mails) == 1
        body = mails[0].get_body(preferencelist=("plain",)).get_content()
        assert "is not answering" in body and "problem" in str(mails[0]["Subject"])
        assert "told within the day" in notices_run()
        assert len(testhost.received_mail(OPS)) == 1
    finally:
        sh(TARGET, "systemctl start mattermost")
