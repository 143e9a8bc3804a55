"""No one in who does not belong, on a real Mattermost 11.4 behind real nginx with Debian's
fail2ban and nftables, attacked from other containers on the network:

- 30 wrong passwords for one account through nginx: 429 before the account locks; its owner
  still signs in from elsewhere; the attacker is banned in nftables (443 and 22 closed to it)
  and the ban expires; an address guessing SSH users is banned too; the workstation is never
  banned, even after its own failed SSH logins; a colleague on a third address works all along.
- The same with nginx's limit off, against Mattermost's own limiter: keyed on the attacker's
  real address (a limiter keyed on nginx's 127.0.0.1 would refuse the colleague too).
- `make security-report` passes on the converged server; every baseline item switched to its
  unsafe value in config.json (as an admin would in the System Console) fails it by name;
  the notices channel is told once.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests import testhost
from tests.e2e import chat
from tests.e2e.conftest import KEEP, ROOT, deploy, planned_changes, run_env, sh

TARGET, SSH_PORT, PORT = "e2e-security", 22381, 24511
BAN_SECONDS = 40
STORY = ["--data", f"fail2ban_ban_time={BAN_SECONDS}"]
MATTERMOST_LIMITER = ["--data", "security_login_rate=off", "--data", "security_rate_per_sec=1",
                      "--data", "security_rate_burst=5"]
WITH_NOTICES = ["--data", "notices_channel=acme:ops", "--data", "notices_digest_time=23:59"]
CLIENTS: dict = {}
STATE: dict = {}


def server_ip() -> str:
    return STATE["ip"]


def on_client(name: str, command: str) -> tuple[int, str]:
    result = CLIENTS[name].exec_run(["bash", "-c", command])
    return result.exit_code, result.output.decode(errors="replace")


def ip_of(name: str) -> str:
    CLIENTS[name].reload()
    return CLIENTS[name].attrs["NetworkSettings"]["Networks"][testhost.NETWORK]["IPAddress"]


def reaches(name: str, port: int) -> bool:
    return on_client(name, f"timeout 3 bash -c 'echo > /dev/tcp/{server_ip()}/{port}'")[0] == 0


def sign_ins(name: str, user: str, password: str, times: int) -> list[str]:
    """HTTP status of each sign-in from that container ("000": no answer at all - banned), all
    sent at once as an attacker's script does (one after the other, a server slower than the
    limit's rate - a loaded test machine - never meets the limit). Each status in one write (a
    line cut by another's output would be lost). Bodies in /tmp/body-<status>."""
    body = json.dumps({"login_id": user, "password": password})
    on_client(name, f"rm -f /tmp/body-* && cat > /tmp/login.json <<'EOF'\n{body}\nEOF")
    code, out = on_client(name, f"seq 1 {times} | xargs -P {times} -I{{}} sh -c 'curl -sk -o /tmp/b-{{}} "
                                f"-w %{{http_code}} --max-time 20 -H Content-Type:application/json -d @/tmp/login.json "
                                f"https://{server_ip()}/api/v4/users/login > /tmp/c-{{}}; "
                                f"mv /tmp/b-{{}} /tmp/body-$(cat /tmp/c-{{}}) 2>/dev/null; echo $(cat /tmp/c-{{}})'; true")
    return out.split()


def body_of(name: str, status: str) -> str:
    return on_client(name, f"cat /tmp/body-{status}")[1]


def colleague_works() -> None:
    """Bob, on a third address, signs in and reads his own account."""
    codes = sign_ins("colleague", "bob", chat.PASSWORD, 1)
    assert codes == ["200"], codes


def banned(jail: str) -> list[str]:
    out = sh(TARGET, f"fail2ban-client status {jail}")
    line = next(line for line in out.splitlines() if "Banned IP list" in line)
    return line.split(":", 1)[1].split()


def wait_for(what: str, check, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while not check():
        assert time.time() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(1)


def report(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "verbs.security_report", *args], cwd=ROOT,
                          env=run_env(TARGET, None), capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def server():
    c = testhost.client()
    testhost.stop_server(TARGET)
    testhost.start_server(TARGET, ssh_port=SSH_PORT, https_port=PORT)
    STATE["ip"] = testhost.container_ip(TARGET)
    # the report probes ports at the server's address on the test network, as from the internet
    testhost.start_server(TARGET, ssh_port=SSH_PORT, https_port=PORT,
                          extra_data={"security_scan_address": STATE["ip"]})
    image = testhost.ensure_base_image(c)
    for name in ("attacker", "guesser", "colleague"):
        cname = testhost.container_name(f"sec-{name}")
        try:
            c.containers.get(cname).remove(force=True)
        except testhost.docker.errors.NotFound:
            pass
        CLIENTS[name] = c.containers.run(image, ["sleep", "infinity"], name=cname, detach=True,
                                         network=testhost.NETWORK, labels=testhost.LABEL)
    run = deploy(TARGET, *STORY)
    assert run.ok, run.output[-5000:]
    chat.mmctl(TARGET, "team create --name acme --display-name Acme")
    chat.create_user(TARGET, "boss", team="acme", admin=True)
    for user in ("alice", "bob"):
        chat.create_user(TARGET, user, team="acme")
    yield TARGET
    for container in CLIENTS.values():
        container.remove(force=True)
    if not KEEP:
        testhost.stop_server(TARGET)


def test_thirty_wrong_passwords_meet_429_and_a_ban_before_the_account_locks(server):
    colleague_works()
    codes = sign_ins("attacker", "alice", "not-her-password", 30)
    assert len(codes) == 30 and "200" not in codes, codes
    assert codes.count("401") < 10, codes  # Mattermost locks an account at 10 (MaximumLoginAttempts)
    assert "429" in codes, codes
    assert len(codes) - codes.count("429") - codes.count("000") <= 6, codes  # 1 + security_login_burst (5) pass
    # the real Alice, elsewhere, still gets in: her account is not locked
    assert sign_ins("colleague", "alice", chat.PASSWORD, 1) == ["200"]
    STATE["attacker"] = attacker = ip_of("attacker")
    wait_for("the attacker banned", lambda: attacker in banned("mattermost-login") + banned("nginx-limit-req"), 30)
    # banned in nftables, fail2ban's own table: no 443, no 22
    assert "f2b-table" in sh(TARGET, "nft list tables")
    assert "mattermost_deploy" in sh(TARGET, "nft list tables")  # the deploy's firewall is still there
    assert not reaches("attacker", 443) and not reaches("attacker", 22)
    colleague_works()


def test_an_address_guessing_ssh_users_is_banned(server):
    assert reaches("guesser", 22)
    for user in ("admin", "test", "oracle", "ubuntu", "pi", "git"):
        on_client("guesser", f"ssh -o BatchMode=yes -o StrictHostKeyChecking=no -o ConnectTimeout=5 "
                             f"{user}@{server_ip()} true 2>/dev/null; true")
    guesser = ip_of("guesser")
    wait_for("the SSH guesser banned", lambda: guesser in banned("sshd"), 30)
    assert not reaches("guesser", 22)
    colleague_works()


def test_the_workstation_is_never_banned_even_after_its_own_failed_ssh_logins(server, tmp_path):
    wrong = tmp_path / "wrong-key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong)], check=True)
    for user in ("root", "admin", "nosuchuser", "root", "test", "root", "deploy"):
        subprocess.run(["ssh", "-i", str(wrong), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-p", str(SSH_PORT),
                        f"{user}@127.0.0.1", "true"], capture_output=True, timeout=30)
    time.sleep(3)
    ignored = sh(TARGET, "fail2ban-client get sshd ignoreip")
    seen = sh(TARGET, "journalctl --since -2min --no-pager -o cat _COMM=sshd _COMM=sshd-session | "
                      "grep -o 'nosuchuser from [0-9.]*' | head -1").split()
    assert seen, "the workstation's failed logins are not in the journal"
    address = seen[-1]
    assert address in ignored, ignored
    assert address not in banned("sshd")
    assert deploy(TARGET, *STORY, "--dry").ok  # the operator still gets in


def test_the_ban_expires(server):
    attacker = STATE["attacker"]
    wait_for("the attacker's ban over", lambda: attacker not in banned("mattermost-login") + banned("nginx-limit-req"),
             BAN_SECONDS + 60)
    wait_for("443 reachable again", lambda: reaches("attacker", 443), 20)
    assert sign_ins("attacker", "alice", chat.PASSWORD, 1) == ["200"]  # nothing left behind for that address


def test_mattermosts_own_limiter_keys_on_the_real_address(server):
    sh(TARGET, "fail2ban-client unban --all")
    run = deploy(TARGET, *STORY, *MATTERMOST_LIMITER)
    assert run.ok, run.output[-4000:]
    assert "limit_req" not in sh(TARGET, "cat /etc/nginx/sites-available/mattermost.conf")
    colleague_works()
    codes = sign_ins("attacker", "alice", "not-her-password", 30)
    assert "200" not in codes and codes.count("401") < 10 and "429" in codes, codes
    assert body_of("attacker", "429").strip() == "limit exceeded"  # Mattermost's own answer, not nginx's page
    # Alice's account is not locked, and the colleague on a third address was never limited:
    # the limiter's key is the client's address nginx passed on, not nginx's own
    assert sign_ins("colleague", "alice", chat.PASSWORD, 1) == ["200"]
    colleague_works()
    # Mattermost's failed-sign-in line carries the attacker's real address: fail2ban bans it
    wait_for("the attacker banned from Mattermost's own lines", lambda: STATE["attacker"] in banned("mattermost-login"),
             30)
    line = sh(TARGET, "grep 'password was incorrect' /var/log/mattermost/mattermost.log | tail -1")
    assert f'"ip_addr":"{STATE["attacker"]}"' in line, line


def test_the_report_passes_on_the_converged_server_and_a_second_deploy_changes_nothing(server):
    sh(TARGET, "fail2ban-client unban --all")
    run = deploy(TARGET, *STORY)
    assert run.ok, run.output[-4000:]
    assert planned_changes(TARGET, *STORY) == []
    proc = report("--fresh", *STORY)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert f"{TARGET}: security report - passes" in proc.stdout
    for words in ("ok   open-sign-up", "ok   rate-limit", "ok   lynis: lynis hardening index", "ok   ports: from",
                  "ok   service-exposure", "ok   tls-certificate", "failed-logins: last 24 h"):
        assert words in proc.stdout, (words, proc.stdout)
    listed = json.loads(report("--json", *STORY).stdout)[f"local-{TARGET}"]
    assert listed["failed"] == []


UNSAFE = {  # as an admin would set them in the System Console
    "TeamSettings": {"EnableOpenServer": True},
    "FileSettings": {"EnablePublicLink": True},
    "GuestAccountsSettings": {"Enable": True},
    "ServiceSettings": {"SessionLengthWebInHours": 8760, "EnableMultifactorAuthentication": False,
                        "EnableInsecureOutgoingConnections": True, "AllowCorsFrom": "*", "EnableDeveloper": True,
                        "EnableTesting": True, "ListenAddress": ":8065", "EnableAPIUserDeletion": True,
                        "EnableAPIChannelDeletion": True, "EnableAPITeamDeletion": True, "MaximumLoginAttempts": 0},
    "PluginSettings": {"EnableUploads": True},
    "RateLimitSettings": {"Enable": False},
    "PasswordSettings": {"MinimumLength": 5},
    "LogSettings": {"EnableDiagnostics": True},
    "EmailSettings": {"SMTPServer": "smtp.example.org", "ConnectionSecurity": ""},
}
FAILING = {"open-sign-up", "email-verification", "public-links", "guest-accounts", "session-length", "mfa",
           "insecure-outgoing", "cors", "developer-mode", "testing-mode", "trusted-proxy-header", "api-user-deletion",
           "api-channel-deletion", "api-team-deletion", "login-attempts", "plugin-uploads", "rate-limit",
           "password-length", "diagnostics", "smtp-tls"}


def test_each_unsafe_setting_fails_the_report_by_name_and_the_notices_tell_it_once(server):
    run = deploy(TARGET, *STORY, *WITH_NOTICES)
    assert run.ok, run.output[-4000:]
    config = "/var/lib/mattermost/config/config.json"
    sh(TARGET, f"cp -p {config} /root/config.safe.json")
    patch = json.dumps(UNSAFE)
    sh(TARGET, f"python3 - <<'EOF'\nimport json\nc = json.load(open('{config}'))\n"
               f"for section, keys in json.loads('{patch}').items():\n    c.setdefault(section, {{}}).update(keys)\n"
               f"json.dump(c, open('{config}', 'w'), indent=2)\nEOF")
    try:
        proc = report("--json", *STORY, *WITH_NOTICES)
        assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
        failed = set(json.loads(proc.stdout)[f"local-{TARGET}"]["failed"])
        assert failed == FAILING, (failed ^ FAILING)
        text = report(*STORY, *WITH_NOTICES).stdout
        assert "FAIL public-links: FileSettings.EnablePublicLink = true (expected off; changed in the System Console" \
            in text, text
        assert "FAIL rate-limit: RateLimitSettings.Enable = false (expected on; the deploy owns it: the next " \
            "`make deploy` sets it back)" in text, text
        # the notices timer tells the channel once
        for _ in range(2):
            testhost.exec_on(TARGET, "systemctl start mattermost-notices.service")
        admin = chat.login(PORT, "boss")
        channel = admin.channels.get_channel_by_name_and_team_name("acme", "ops")
        found = admin.posts.get_posts_for_channel(channel["id"])
        told = [found["posts"][i]["message"] for i in found["order"] if "security: " in found["posts"][i]["message"]]
        assert len(told) == 1 and "FileSettings.EnablePublicLink" in told[0], told
    finally:
        sh(TARGET, f"cp -p /root/config.safe.json {config}")
    assert report(*STORY, *WITH_NOTICES).returncode == 0
