"""What a new user meets on a fresh server (Debian 13), through the real Mattermost and nginx:
the dry run is readable, a refusal ends with its own reason, a site URL with a path is served
end to end (the API, the web app's files rewritten for the path, a websocket), the Calls
media port is open exactly while the Calls flow is on (probed from another container), and a
server that refuses the SSH key gets one line from every verb."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import ssl
import subprocess
import sys
import time

import pytest
import websockets

from tests import testhost
from tests.e2e import chat
from tests.e2e.conftest import KEEP, ROOT, deploy, https_get, planned_changes, run_env, sh

TARGET = "e2e-sitepath"
PORT = 24453
PATH = "/chat"
CALLS_OFF = ["--data", 'mattermost_privacy={"calls": false}']
LISTENER = r"""
import socket, sys, threading
out = open("/root/calls-probe.log", "a", buffering=1)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind(("0.0.0.0", 8443))
tcp = socket.socket(); tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); tcp.bind(("0.0.0.0", 8443)); tcp.listen()
def tcp_loop():
    while True:
        conn, _ = tcp.accept(); out.write("tcp " + conn.recv(64).decode() + "\n"); conn.close()
threading.Thread(target=tcp_loop, daemon=True).start()
while True:
    data, _ = udp.recvfrom(64); out.write("udp " + data.decode() + "\n")
"""


@pytest.fixture(scope="module")
def fresh():
    testhost.stop_server(TARGET)
    testhost.start_server(TARGET, ssh_port=22333, https_port=PORT,
                          extra_data={"mattermost_site_url": f"https://127.0.0.1:{PORT}{PATH}"})
    yield TARGET
    if not KEEP:
        testhost.stop_server(TARGET)


def dry_run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tasks.run", "--dry", "--diff", *args], cwd=ROOT,
                          env=run_env(TARGET, None), capture_output=True, text=True, timeout=900)


def test_the_dry_run_on_a_fresh_server_is_readable(fresh):
    proc = dry_run()
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    # about 550 lines: every change named, each new file shown once - but the ones the repository
    # fixes (hardening, fail2ban's filter, lynis' units), named by their template and digest
    assert len(out.encode()) < 28_000, len(out.encode())
    for name in planned_changes(TARGET):
        assert name in out, name
    assert "Will install /usr/local/lib/mattermost-deploy/mmhelper.py: the deploy's server-side helper" in out
    assert "def state(query)" not in out  # the helper's source is not printed
    assert "No host key for" not in out  # the test server's host keys are pinned


def test_a_refused_run_ends_with_exactly_its_own_reason(fresh):
    # a folder that is not an install, holding words a careless summary would take for an SSH failure
    sh(TARGET, "mkdir -p /opt/mattermost/bin && echo 'Permission denied (publickey)' > /opt/mattermost/README")
    try:
        proc = dry_run()
    finally:
        sh(TARGET, "rm -rf /opt/mattermost")
    failed = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("FAILED:")]
    assert proc.returncode != 0
    assert len(failed) == 1 and "/opt/mattermost" in failed[0] and "SSH" not in failed[0], failed


def test_converge_with_a_site_path(fresh):
    run = deploy(TARGET)
    assert run.ok, run.output[-5000:]
    assert "No host key for" not in run.output
    assert planned_changes(TARGET) == []


def test_the_api_and_the_web_app_under_the_path(fresh):
    status, headers, body = https_get(PORT, f"{PATH}/api/v4/system/ping?get_server_status=true")
    assert status == 200 and json.loads(body)["status"] == "OK"
    # the web app's files rewritten by Mattermost for the path (channels/utils/subpath.go)
    status, _, page = https_get(PORT, f"{PATH}/")
    assert status == 200 and f'href="{PATH}/static/manifest.json"' in page.decode(), page[:500]
    # the root sends people to the path (Mattermost redirects its 404s at the root there)
    connection = http.client.HTTPSConnection("127.0.0.1", PORT, context=ssl._create_unverified_context(), timeout=10)
    connection.request("GET", "/login")
    answer = connection.getresponse()
    assert answer.status == 302 and answer.getheader("Location").startswith(f"{PATH}/login")


def test_a_user_posts_and_gets_the_websocket_event_under_the_path(fresh):
    chat.mmctl(TARGET, "team create --name acme --display-name Acme")
    chat.create_user(TARGET, "wendy", team="acme")
    driver = chat.Driver({"url": "127.0.0.1", "port": PORT, "scheme": "https", "verify": False,
                          "basepath": f"{PATH}/api/v4", "login_id": "wendy", "password": chat.PASSWORD, "timeout": 30})
    driver.login()
    channel = driver.channels.get_channel_by_name_and_team_name("acme", "town-square")

    async def listen() -> dict:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        async with websockets.connect(f"wss://127.0.0.1:{PORT}{PATH}/api/v4/websocket", ssl=context) as ws:
            await ws.send(json.dumps({"seq": 1, "action": "authentication_challenge",
                                      "data": {"token": driver.client.token}}))
            deadline = time.time() + 30
            posted = False
            while time.time() < deadline:
                event = json.loads(await asyncio.wait_for(ws.recv(), 30))
                if event.get("seq_reply") == 1:
                    assert event["status"] == "OK", event
                    await asyncio.to_thread(driver.posts.create_post,
                                            {"channel_id": channel["id"], "message": "through the path"})
                    posted = True
                if posted and event.get("event") == "posted":
                    return json.loads(event["data"]["post"])
        raise AssertionError("no posted event on the websocket")

    post = asyncio.run(listen())
    assert post["message"] == "through the path"


def probe(kind: str, word: str) -> None:
    """A datagram (or a TCP connection) to the Calls port, from another container."""
    code = (f"import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
            f"s.sendto(b'{word}', ('{testhost.container_name(TARGET)}', 8443))" if kind == "udp" else
            f"import socket; s = socket.create_connection(('{testhost.container_name(TARGET)}', 8443), 3); "
            f"s.send(b'{word}'); s.close()")
    testhost.exec_on_container(testhost.UPSTREAM, f'python3 -c "{code}"')


def received() -> str:
    time.sleep(1.5)
    return sh(TARGET, "cat /root/calls-probe.log 2>/dev/null || true")


def test_the_calls_media_port_is_open_while_calls_is_on(fresh):
    # A listener on the Calls port stands in for the plugin's RTC server (the Calls plugin's Go
    # module is not served by the proxy here, so the real plugin cannot be built and run).
    sh(TARGET, f"nohup python3 - >/dev/null 2>&1 <<'EOF' &\n{LISTENER}\nEOF")
    time.sleep(1)
    rules = sh(TARGET, "nft list table inet mattermost_deploy")
    assert "udp dport 8443 accept" in rules and "tcp dport 8443 accept" in rules
    probe("udp", "on-1")
    probe("tcp", "on-2")
    got = received()
    assert "udp on-1" in got and "tcp on-2" in got, got
    config = json.loads(sh(TARGET, "cat /var/lib/mattermost/config/config.json"))
    assert config["PluginSettings"]["Plugins"]["com.mattermost.calls"]["udpserverport"] == 8443


def test_the_calls_port_is_closed_when_calls_is_off(fresh):
    run = deploy(TARGET, *CALLS_OFF)
    assert run.ok, run.output[-3000:]
    assert "8443" not in sh(TARGET, "nft list table inet mattermost_deploy")
    probe("udp", "off-1")
    probe("tcp", "off-2")
    got = received()
    assert "off-1" not in got and "off-2" not in got, got
    assert planned_changes(TARGET, *CALLS_OFF) == []
    back = deploy(TARGET)  # and open again
    assert back.ok and "udp dport 8443 accept" in sh(TARGET, "nft list table inet mattermost_deploy")
    assert planned_changes(TARGET) == []


def test_a_key_the_server_refuses_gives_one_line_from_every_verb(fresh, tmp_path):
    desc = json.loads(testhost.host_file(TARGET).read_text())
    wrong = testhost.ensure_ssh_key(tmp_path / "wrong_key", "not-authorized")
    desc.update(name="e2e-wrongkey", ssh_key=str(wrong))
    testhost.host_file("e2e-wrongkey").write_text(json.dumps(desc))
    env = {k: v for k, v in os.environ.items()} | {"MMDEPLOY_TARGET": "e2e-wrongkey", "PYINFRA_PROGRESS": "off"}
    try:
        for command in (["tasks.run", "-y"], ["verbs.status"], ["verbs.report", "users"], ["verbs.patch_plan"]):
            proc = subprocess.run([sys.executable, "-m", *command], cwd=ROOT, env=env, capture_output=True, text=True,
                                  timeout=300)
            out = proc.stdout + proc.stderr
            failed = [line for line in out.splitlines() if line.startswith("FAILED:")]
            assert proc.returncode != 0 and "Traceback" not in out, (command, out[-2000:])
            assert len(failed) == 1 and "the server refused the SSH login" in failed[0], (command, failed)
            assert "ssh_key" in failed[0], failed
    finally:
        testhost.host_file("e2e-wrongkey").unlink()
