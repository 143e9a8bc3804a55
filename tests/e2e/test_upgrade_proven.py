"""An upgrade proven on what people use, as one story: a real Mattermost 10.3 with more active
accounts than Team Edition 11.4 allows (made in the database, as a grown organisation has
them), a real plugin people rely on (the test's stand-in for a plugin 11 will not run:
tests/realmm/plugin), GitLab sign-in switched on for a while, e-mail and notices configured.

- `make upgrade-plan` to 11.4 names the account limit with its source and the upgrade is
  refused; GitLab sign-in switched on is named and refused too;
- with the limit accepted, the hop runs, the ping is healthy - and the check after the start
  finds the plugin no longer runs: rolled back, the version held, one line names the plugin;
- the plugin removed: `make upgrade-rehearsal` on a scratch server restores production's real
  backup made harmless, runs the hop with the same checks, times it and prints the forecast;
  the test SMTP server receives nothing from the copy; production is untouched;
- production's upgrade then passes its check after the start (the probe works at the account
  limit) and the real 11.4 refuses a new account, as the finding said.

Everything real: Mattermost 10.3 and 11.4 built from their Go modules, the plugin built from
Mattermost's public module, Debian 13's PostgreSQL and nginx, the aiosmtpd relay."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests import testhost
from tests.e2e import chat
from tests.e2e.conftest import KEEP, ROOT, deploy, https_get, planned_changes, run_env, sh
from tests.realmm import plugin
from tests.standin.build import ESR_VERSION, OLDER_ESR

PROD, SCRATCH = "e2e-proven", "e2e-scratch"
PORTS = {PROD: (22361, 24481), SCRATCH: (22362, 24482)}
OPS = "ops-rehearsal@example.org"
SETTINGS = ["--data", f"smtp_server={testhost.SMTP}", "--data", "smtp_port=25", "--data", 'smtp_security=""',
            "--data", "smtp_sender=chat@example.org", "--data", f"notices_email={OPS}",
            "--data", 'mattermost_config={"PluginSettings.EnableUploads": true, '
                      '"PluginSettings.RequirePluginSignature": false}']
TO_11 = ["--data", f"mattermost_version={ESR_VERSION}"]
ACCEPT = ["--data", 'mattermost_upgrade_accept=["user-limit"]']
STORY: dict = {}


def mmctl(target: str, args: str) -> str:
    return chat.mmctl(target, args)


def psql(sql: str) -> str:
    return sh(PROD, f"runuser -u postgres -- psql -XAt -d mattermost -c {json.dumps(sql)}").strip()


def version_of(target: str) -> str:
    status, headers, _ = https_get(PORTS[target][1])
    assert status == 200
    return ".".join(headers["X-Version-Id"].split(".")[:3])


def converge(name: str):
    ssh, https = PORTS[name]
    testhost.stop_server(name)
    testhost.start_server(name, ssh_port=ssh, https_port=https)
    run = deploy(name, "--data", f"mattermost_version={OLDER_ESR}", *SETTINGS)
    assert run.ok, run.output[-4000:]
    return run


@pytest.fixture(scope="module", autouse=True)
def servers():
    testhost.ensure_smtp(testhost.client())
    bundle = plugin.build()
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(converge, [PROD, SCRATCH]))
    mmctl(PROD, "team create --name acme --display-name Acme")
    chat.create_user(PROD, "alice", team="acme", admin=True)
    alice = chat.login(PORTS[PROD][1], "alice")
    channel = alice.channels.get_channel_by_name_and_team_name("acme", "town-square")
    upload = alice.files.upload_file(channel["id"], files={"files": ("minutes.txt", b"minutes\n")})
    post = alice.posts.create_post({"channel_id": channel["id"], "message": "before the upgrade",
                                    "file_ids": [upload["file_infos"][0]["id"]]})
    STORY.update(post=post["id"], file=upload["file_infos"][0]["id"])
    # the plugin people rely on, added as an admin adds one
    testhost.client().containers.get(testhost.container_name(PROD)).put_archive("/var/tmp", _tar(bundle))
    sh(PROD, f"chmod 644 /var/tmp/{bundle.name}")  # mmctl runs as the service user
    mmctl(PROD, f"plugin add /var/tmp/{bundle.name}")
    mmctl(PROD, f"plugin enable {plugin.PLUGIN_ID}")
    # a grown organisation: 251 more active accounts than the 11.4 limit lets in (made in the database)
    psql("INSERT INTO users SELECT (jsonb_populate_record(u, jsonb_build_object('id', substr(md5('bulk' || i), 1, 26), "
         "'username', 'bulk' || i, 'email', 'bulk' || i || '@example.org'))).* FROM users u, generate_series(1, 251) i "
         "WHERE u.username = 'alice'")
    yield
    if not KEEP:
        for name in (PROD, SCRATCH):
            testhost.stop_server(name)


def _tar(path) -> bytes:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(path, arcname=path.name)
    return buf.getvalue()


def plan(*data: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "verbs.upgrade_plan", *SETTINGS, *data], cwd=ROOT,
                          env=run_env(PROD, None), capture_output=True, text=True, timeout=600)


def test_the_plugin_runs_on_10_3():
    status, _, body = https_get(PORTS[PROD][1], f"/plugins/{plugin.PLUGIN_ID}/status")
    assert status == 200 and body.strip() == b"ok"
    assert int(psql("SELECT count(*) FROM users WHERE deleteat = 0")) >= 252


def test_the_plan_names_the_account_limit_with_its_source_and_refuses():
    shown = plan(*TO_11)
    assert shown.returncode == 0, shown.stderr
    assert f"hop 1: {OLDER_ESR} -> {ESR_VERSION}" in shown.stdout
    assert "REFUSED [user-limit]" in shown.stdout and "refuses every new account from 250 active accounts on" in shown.stdout
    assert "source: server/channels/app/limits.go of 11.4: maxUsersLimit = 200, maxUsersHardLimit = 250" in shown.stdout
    facts = json.loads(plan(*TO_11, "--json").stdout)[f"local-{PROD}"]["facts"]
    assert facts["active_users"] >= 252 and facts["postgres_major"] >= 14
    refused = deploy(PROD, *SETTINGS, *TO_11, "--data", "mattermost_upgrade_required=true")
    assert not refused.ok and "upgrade refused: hop 1" in refused.output and "[user-limit]" in refused.output
    assert version_of(PROD) == OLDER_ESR


def test_gitlab_sign_in_is_named_and_refused():
    for key, value in (("GitLabSettings.Id", "gitlab-app-id"), ("GitLabSettings.Secret", "gitlab-app-secret"),
                       ("GitLabSettings.AuthEndpoint", "https://gitlab.example.org/oauth/authorize"),
                       ("GitLabSettings.TokenEndpoint", "https://gitlab.example.org/oauth/token"),
                       ("GitLabSettings.UserAPIEndpoint", "https://gitlab.example.org/api/v4/user"),
                       ("GitLabSettings.Enable", "true")):
        mmctl(PROD, f"config set {key} {value}")
    try:
        shown = plan(*TO_11, *ACCEPT).stdout
        assert "ACCEPTED [user-limit]" in shown and "REFUSED [gitlab-sso]" in shown, shown
        assert "source: server/config/client.go of 11.4" in shown
    finally:
        mmctl(PROD, "config set GitLabSettings.Enable false")
    assert "[gitlab-sso]" not in plan(*TO_11, *ACCEPT).stdout


def test_the_check_after_the_start_rolls_back_a_hop_whose_plugin_no_longer_runs():
    run = deploy(PROD, *SETTINGS, *TO_11, *ACCEPT, timeout=1800)
    failed = [line for line in run.output.splitlines() if line.startswith("FAILED:")]
    assert not run.ok and len(failed) == 1, run.output[-5000:]
    assert f"the plugin {plugin.PLUGIN_ID} no longer runs" in failed[0] and "rolled back" in failed[0], failed[0]
    assert "refusing to activate on 11.4.0" in failed[0]
    assert version_of(PROD) == OLDER_ESR
    assert json.loads(sh(PROD, "cat /etc/mattermost/upgrade-hold.json"))["version"] == ESR_VERSION
    status, _, body = https_get(PORTS[PROD][1], f"/plugins/{plugin.PLUGIN_ID}/status")
    assert status == 200 and body.strip() == b"ok"  # back on 10.3, the plugin runs again
    alice_sees_her_post()


def alice_sees_her_post() -> None:
    alice = chat.login(PORTS[PROD][1], "alice")
    assert alice.posts.get_post(STORY["post"])["message"] == "before the upgrade"
    assert alice.files.get_file(STORY["file"]).content == b"minutes\n"


def fingerprint() -> dict:
    status, headers, body = https_get(PORTS[PROD][1])
    config = sh(PROD, "cat /var/lib/mattermost/config/config.json")
    return {"ping": (status, json.loads(body)["status"]), "version": headers["X-Version-Id"].split(".")[:3],
            "config": hashlib.sha256(config.encode()).hexdigest(), "settings": _flat(json.loads(config))}


def _flat(tree, prefix="") -> dict:
    """config.json as dotted keys, so that a difference names its settings."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    return {k: v for key, value in tree.items() for k, v in _flat(value, f"{prefix}{key}.").items()} or {prefix: {}}


def test_the_rehearsal_on_a_copy_runs_times_and_checks_the_hop_and_leaves_production_alone():
    mmctl(PROD, f"plugin delete {plugin.PLUGIN_ID}")  # the operator's answer to the check
    unheld = deploy(PROD, "verbs/unhold.py", *SETTINGS)
    assert unheld.ok, unheld.output[-3000:]
    backup = deploy(PROD, "verbs/backup.py", *SETTINGS)
    assert backup.ok, backup.output[-3000:]
    # Mattermost saves config.json itself (removing a plugin disables it first: two saves); the
    # comparison starts once the file has been left alone for 10 s, and a difference names its settings
    sh(PROD, "f=/var/lib/mattermost/config/config.json; for i in $(seq 120); do "
             "[ $(( $(date +%s) - $(stat -c %Y $f) )) -ge 10 ] && break; sleep 1; done")
    before = fingerprint()
    testhost.clear_mail(OPS)
    proc = subprocess.run([sys.executable, "-m", "verbs.rehearsal", f"local-{SCRATCH}", *SETTINGS, *TO_11, *ACCEPT],
                          cwd=ROOT, env=run_env(f"{PROD},{SCRATCH}", None), capture_output=True, text=True,
                          timeout=2400)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    assert f"Upgrade rehearsal of local-{PROD} on local-{SCRATCH}" in out
    assert f"hop 1: {OLDER_ESR} -> {ESR_VERSION}" in out and "ACCEPTED [user-limit]" in out
    assert "on the copy: the forecast of production's outage for this hop" in out
    assert "check after the start: passed" in out and "result: PASSED" in out
    assert version_of(SCRATCH) == ESR_VERSION
    record = json.loads(sorted((ROOT / "reports").glob(f"rehearsal-local-{PROD}-*.json"))[-1].read_text())
    assert record["passed"] and record["target"] == ESR_VERSION and record["hops"][0]["outage_s"] > 0
    STORY["forecast_s"] = record["hops"][0]["outage_s"]
    # the copy reached nobody: no mail from it, its timers off, its site URL its own
    assert not [m for m in testhost.received_mail(OPS) if SCRATCH in str(m)]
    assert sh(SCRATCH, "systemctl is-enabled mattermost-notices.timer mattermost-backup.timer || true").split() == [
        "disabled", "disabled"]
    copy = json.loads(sh(SCRATCH, "cat /var/lib/mattermost/config/config.json"))
    assert copy["ServiceSettings"]["SiteURL"] == f"https://127.0.0.1:{PORTS[SCRATCH][1]}"
    # mail off; an empty SMTPServer is saved as "localhost" by 11.4's own defaults (public/model/config.go,
    # EmailSettings.SetDefaults), never production's relay
    assert copy["EmailSettings"]["SendEmailNotifications"] is False
    assert copy["EmailSettings"]["SMTPServer"] in ("", "localhost"), copy["EmailSettings"]
    after = fingerprint()
    changed = {k: (before["settings"].get(k), after["settings"].get(k))
               for k in before["settings"].keys() | after["settings"].keys()
               if before["settings"].get(k) != after["settings"].get(k)}
    assert after == before, changed  # production untouched


def test_the_upgrade_of_production_passes_its_check_and_11_refuses_a_new_account():
    run = deploy(PROD, *SETTINGS, *TO_11, *ACCEPT, timeout=1800)
    assert run.ok, run.output[-5000:]
    assert "ACCEPTED [user-limit]" in run.output and "checking what people use" in run.output
    assert version_of(PROD) == ESR_VERSION
    code, out = testhost.exec_on(PROD, "cd /opt/mattermost && MMCTL_LOCAL_SOCKET_PATH=/run/mattermost/local.socket "
                                       "runuser -u mattermost -- bin/mmctl --local user create --username latecomer "
                                       f"--email latecomer@example.org --password {chat.PASSWORD}")
    assert code != 0 and "user limit" in out.lower(), out
    alice_sees_her_post()


def test_a_second_deploy_changes_nothing():
    assert planned_changes(PROD, *SETTINGS, *TO_11, *ACCEPT) == []
