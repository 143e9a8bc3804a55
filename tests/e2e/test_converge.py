"""A fresh Debian 12 becomes a working REAL Mattermost behind nginx; a second run changes
nothing; the admin's System Console settings survive; no secret is ever printed."""

import json
import ssl
import subprocess
import urllib.request

import pytest

from tests import testhost
from tests.e2e.conftest import ROOT, deploy, https_get, planned_changes, sh
from tests.standin.build import default_version

VERSION = default_version()
PORT = 24431


def test_fresh_converge_serves_mattermost_over_https(converged):
    status, headers, body = https_get(PORT)
    assert status == 200
    payload = json.loads(body)
    assert payload["status"] == "OK" and payload["database_status"] == "OK"
    # X-Version-Id: {Version}.{BuildNumber}.{ConfigHash}.{licence loaded}; a release's build
    # number is its version ("dev" would change the server's behaviour)
    fields = headers["X-Version-Id"].split(".")
    assert ".".join(fields[:3]) == VERSION and ".".join(fields[3:6]) == VERSION and fields[-1] == "false"
    assert "max-age=" in headers["Strict-Transport-Security"]
    assert f"Mattermost {VERSION} is healthy" in converged.output


def test_the_real_program_serves(converged):
    out = sh("e2e-main", "runuser -u mattermost -- /opt/mattermost/bin/mattermost version")
    assert f"Version: {VERSION}" in out and f"Build Number: {VERSION}" in out
    assert sh("e2e-main", "head -c 4 /opt/mattermost/bin/mattermost").startswith("\x7fELF")


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated")
def test_old_tls_versions_are_refused(converged):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises((ssl.SSLError, OSError)):
        urllib.request.urlopen(f"https://127.0.0.1:{PORT}/", context=context, timeout=5)


def test_http_redirects_to_the_site_url(converged):
    out = sh("e2e-main", "curl -s -o /dev/null -w '%{http_code} %{redirect_url}' http://127.0.0.1/login")
    assert out == "301 https://127.0.0.1:24431/login"


def test_layout_ownership_and_modes(converged):
    out = sh("e2e-main", "stat -c '%U %G %a %n' /var/lib/mattermost/config/config.json "
                         "/etc/mattermost/private/db-password /etc/mattermost/private "
                         f"/opt/mattermost-releases/{VERSION} /opt/mattermost-releases/{VERSION}/bin/mattermost")
    assert out.split("\n")[:5] == [
        "mattermost mattermost 600 /var/lib/mattermost/config/config.json",
        "root root 600 /etc/mattermost/private/db-password",
        "root root 700 /etc/mattermost/private",
        f"root root 755 /opt/mattermost-releases/{VERSION}",
        f"root root 755 /opt/mattermost-releases/{VERSION}/bin/mattermost",
    ]
    assert sh("e2e-main", "readlink /opt/mattermost").strip() == f"/opt/mattermost-releases/{VERSION}"
    # the service user can run the release but never change it
    code, _ = testhost.exec_on("e2e-main", "touch /opt/mattermost/bin/x", user="mattermost")
    assert code != 0
    # the familiar paths still lead to the live config and data
    assert sh("e2e-main", "readlink -f /opt/mattermost/config/config.json").strip() == \
        "/var/lib/mattermost/config/config.json"


def test_unattended_upgrades_take_only_this_releases_security_archive(converged):
    codename = sh("e2e-main", ". /etc/os-release && echo $VERSION_CODENAME").strip()
    line = sh("e2e-main", "unattended-upgrade --dry-run -d 2>&1 | grep -i 'allowed origins are'")
    origins = [o.strip() for o in line.split(":", 1)[1].split(", ")]
    assert f"origin=Debian,codename={codename}-security,label=Debian-Security" in origins
    assert all("security" in o.lower() for o in origins), origins


def test_mattermost_listens_on_loopback_only(converged):
    listeners = sh("e2e-main", "ss -Hltn")
    assert "127.0.0.1:8065" in listeners
    assert "0.0.0.0:8065" not in listeners and "*:8065" not in listeners


def test_mmctl_local_works_from_opt_mattermost(converged):
    # mmctl prints the server's whole X-Version-Id (cmd/mmctl/commands/system.go)
    out = sh("e2e-main", "bash -lc 'cd /opt/mattermost && bin/mmctl --local system version'")
    assert out.strip().startswith(f"Server version {VERSION}.{VERSION}.")


def test_schema_migrated_in_real_postgresql(converged):
    out = sh("e2e-main", "runuser -u postgres -- psql -XAt -d mattermost -c 'SELECT count(*) FROM db_migrations'")
    assert int(out) > 100  # Mattermost's own migrations ran at the first start


def test_mattermost_updates_its_web_app_files_at_start(converged):
    # At start the server rewrites client/root.html for the SiteURL and its CSP
    # (channels/utils/subpath.go); a read-only release made that fail at every start.
    root_html = sh("e2e-main", "cat /opt/mattermost/client/root.html")
    assert "content=\"script-src 'self'\"" in root_html and "rudderlabs" not in root_html
    journal = sh("e2e-main", "journalctl -u mattermost --no-pager -o cat")
    assert "Failed to update assets subpath" not in journal
    # only those files are the service user's; the program stays root's
    owners = sh("e2e-main", "stat -c '%U %n' /opt/mattermost/client/root.html /opt/mattermost/client/manifest.json "
                            "/opt/mattermost/bin/mattermost /opt/mattermost/client").split("\n")
    assert owners[:4] == ["mattermost /opt/mattermost/client/root.html", "mattermost /opt/mattermost/client/manifest.json",
                          "root /opt/mattermost/bin/mattermost", "root /opt/mattermost/client"]


def test_owned_settings_and_privacy_defaults(converged):
    config = json.loads(sh("e2e-main", "cat /var/lib/mattermost/config/config.json"))
    assert config["ServiceSettings"]["SiteURL"] == "https://127.0.0.1:24431"
    assert config["ServiceSettings"]["ListenAddress"] == "127.0.0.1:8065"
    assert config["LogSettings"]["EnableDiagnostics"] is False
    assert config["FileSettings"]["Directory"] == "/var/lib/mattermost/data/"
    assert config["SqlSettings"]["DataSource"].startswith("postgres://mmuser:")
    # security defaults
    assert config["TeamSettings"]["EnableOpenServer"] is False
    assert config["PasswordSettings"]["MinimumLength"] == 12
    # the release's own default, as the real binary generated it, is 8 (public/model/config.go)
    defaults = json.loads(sh("e2e-main", f"cat /opt/mattermost-releases/{VERSION}/config.dist/config.json"))
    assert defaults["PasswordSettings"]["MinimumLength"] == 8
    assert config["ServiceSettings"]["EnableMultifactorAuthentication"] is True
    assert config["ServiceSettings"]["EnableAPIUserDeletion"] is False


def probe(port: int) -> str:
    """Connect from ANOTHER container on the test network, as an outside host would."""
    code, out = testhost.exec_on_container(
        testhost.UPSTREAM,
        "python3 -c \"import socket,sys\ns=socket.socket(); s.settimeout(3)\n"
        f"try:\n  s.connect(('{testhost.container_name('e2e-main')}', {port})); print('open')\n"
        "except socket.timeout: print('filtered')\nexcept OSError: print('closed')\"")
    assert code == 0, out
    return out.strip()


def test_firewall_lets_in_ssh_http_https_only(converged):
    assert {p: probe(p) for p in (22, 80, 443)} == {22: "open", 80: "open", 443: "open"}
    assert probe(8065) != "open" and probe(5432) != "open"
    # a service listening on every interface is still unreachable from outside
    sh("e2e-main", "systemd-run --quiet --unit=probe-listener python3 -m http.server 9999 --bind 0.0.0.0")
    try:
        assert "200" in sh("e2e-main", "sleep 1; curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:9999/")
        assert probe(9999) == "filtered"
    finally:
        sh("e2e-main", "systemctl stop probe-listener")
    assert "tcp dport 22 accept" in sh("e2e-main", "nft list table inet mattermost_deploy")
    assert sh("e2e-main", "systemctl is-enabled nftables").strip() == "enabled"


def test_second_run_changes_nothing(converged):
    assert planned_changes("e2e-main") == [], "NOT IDEMPOTENT: a dry run after converging plans changes"
    run = deploy("e2e-main", "--json")
    results = json.JSONDecoder().raw_decode(run.output[run.output.index("{"):])[0]["results"]
    assert results["totals"]["success"] == 0, [o["name"] for o in results["operations"] if o["success"]]
    assert results["totals"]["no_change"] == results["totals"]["hosts"] * 1 == len(results["operations"])


def test_admin_setting_survives_and_owned_key_is_restored(converged):
    # What the System Console does: rewrite config.json with a changed setting.
    sh("e2e-main", """python3 - <<'EOF'
import json
p = '/var/lib/mattermost/config/config.json'
c = json.load(open(p))
c['TeamSettings']['SiteName'] = 'Acme Chat'
c['ServiceSettings']['ListenAddress'] = ':8065'
json.dump(c, open(p, 'w'), indent=4)
EOF""")
    diff = deploy("e2e-main", "--dry", "--diff")
    assert diff.ok, diff.output[-3000:]
    assert 'ServiceSettings.ListenAddress: ":8065" -> "127.0.0.1:8065"' in diff.output
    assert "SiteName" not in diff.output
    run = deploy("e2e-main")
    assert run.ok, run.output[-3000:]
    config = json.loads(sh("e2e-main", "cat /var/lib/mattermost/config/config.json"))
    assert config["TeamSettings"]["SiteName"] == "Acme Chat"
    assert config["ServiceSettings"]["ListenAddress"] == "127.0.0.1:8065"
    assert planned_changes("e2e-main") == []


def test_no_secret_in_output_or_repository(converged):
    password = sh("e2e-main", "cat /etc/mattermost/private/db-password").strip()
    assert len(password) >= 32
    diff = deploy("e2e-main", "--dry", "--diff", "-vv")
    for text in (converged.output, diff.output):
        assert password not in text
    tracked = subprocess.run(["git", "grep", "-l", password], cwd=ROOT, capture_output=True, text=True)
    assert tracked.stdout == ""


def test_password_from_the_workstation_replaces_the_generated_one(converged):
    env = {"MATTERMOST_DB_PASSWORD": "Workstation-Chosen-Password-42"}
    assert "Keep the database password on the server (root only)" in planned_changes("e2e-main", env=env)
    run = deploy("e2e-main", env=env)
    assert run.ok, run.output[-3000:]
    assert "Workstation-Chosen-Password-42" not in run.output
    assert sh("e2e-main", "cat /etc/mattermost/private/db-password").strip() == "Workstation-Chosen-Password-42"
    assert sh("e2e-main", "stat -c '%U %a' /etc/mattermost/private/db-password").strip() == "root 600"
    # the role, config.json and the running server all use it now
    status, _, body = https_get(PORT)
    assert status == 200 and json.loads(body)["database_status"] == "OK"
    assert planned_changes("e2e-main", env=env) == []


def ssh_login(user: str, command: str = "true") -> bool:
    import paramiko

    desc = json.loads(testhost.host_file("e2e-main").read_text())
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    try:
        client.connect("127.0.0.1", port=desc["ssh_port"], username=user, key_filename=desc["ssh_key"],
                       timeout=10, allow_agent=False, look_for_keys=False)
        _, stdout, _ = client.exec_command(command)
        return stdout.channel.recv_exit_status() == 0
    except Exception:
        return False
    finally:
        client.close()


# The last tests of the main server: after them it only accepts the admin user.
def test_move_ssh_from_root_to_an_admin_user_without_lockout(converged):
    public_key = (testhost.ensure_ssh_key().with_suffix(".pub")).read_text().strip()
    admin = ["--data", "ssh_admin_user=ops", "--data", f'ssh_admin_keys=["{public_key}"]']
    run = deploy("e2e-main", *admin)
    assert run.ok, run.output[-4000:]
    assert ssh_login("ops", "sudo -n true") and ssh_login("root")
    assert "passwordauthentication no" in sh("e2e-main", "sshd -T")
    # turning root off is refused while the deploy itself still logs in as root
    refused = deploy("e2e-main", *admin, "--data", "ssh_disable_root=true")
    assert not refused.ok and 'set "ssh_user": "ops", "_sudo": True' in refused.output
    assert ssh_login("root")
    # as the admin user, with sudo, the whole deploy runs and turns root off
    as_ops = [*admin, "--data", "ssh_user=ops", "--data", "_sudo=true", "--data", "ssh_disable_root=true"]
    run = deploy("e2e-main", *as_ops)
    assert run.ok, run.output[-4000:]
    assert not ssh_login("root") and ssh_login("ops", "sudo -n true")
    assert planned_changes("e2e-main", *as_ops) == []
