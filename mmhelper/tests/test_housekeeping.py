"""E-mail: the SMTP check the deploy runs before it enables e-mail (and before it declares
users), against a real SMTP server (aiosmtpd) on loopback: plain, STARTTLS with a
certificate, AUTH with a right and a wrong password."""

import json
import socket
import subprocess

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

USER, PASSWORD = "mailer", "right-password-123"


class Sink:
    async def handle_DATA(self, server, session, envelope):
        return "250 OK"


def authenticate(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == USER and \
        auth_data.password.decode() == PASSWORD
    return AuthResult(success=ok, handled=False)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp_server(tmp_path):
    started = []

    def start(**kwargs):
        controller = Controller(Sink(), hostname="127.0.0.1", port=free_port(), **kwargs)
        controller.start()
        started.append(controller)
        return controller.port

    yield start
    for controller in started:
        controller.stop()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    import ssl
    folder = tmp_path_factory.mktemp("cert")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-keyout", folder / "key.pem", "-out", folder / "cert.pem"], check=True, capture_output=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    return context


def email(port, **keys):
    return {"EmailSettings": {"SMTPServer": "127.0.0.1", "SMTPPort": str(port), "ConnectionSecurity": "", **keys}}


def test_a_plain_server_passes_and_a_closed_port_is_named(mmhelper, smtp_server):
    port = smtp_server()
    assert mmhelper.smtp_check(email(port)) is None
    closed = free_port()
    problem = mmhelper.smtp_check(email(closed), timeout=2)
    assert problem and f"127.0.0.1:{closed}" in problem and "refused" in problem.lower()


def test_starttls_is_required_when_configured_and_certificates_are_verified(mmhelper, smtp_server, certificate):
    plain = smtp_server()
    assert "does not offer" in mmhelper.smtp_check(email(plain, ConnectionSecurity="STARTTLS"))
    tls = smtp_server(tls_context=certificate, require_starttls=True)
    problem = mmhelper.smtp_check(email(tls, ConnectionSecurity="STARTTLS"))
    assert problem and "CERTIFICATE_VERIFY_FAILED" in problem  # a self-signed certificate
    assert mmhelper.smtp_check(email(tls, ConnectionSecurity="STARTTLS", SkipServerCertificateVerification=True)) is None


def test_the_login_is_tried_with_the_password(mmhelper, smtp_server, certificate):
    port = smtp_server(tls_context=certificate, authenticator=authenticate, auth_require_tls=True)
    keys = dict(ConnectionSecurity="STARTTLS", SkipServerCertificateVerification=True, EnableSMTPAuth=True,
                SMTPUsername=USER)
    assert mmhelper.smtp_check(email(port, SMTPPassword=PASSWORD, **keys), login=True) is None
    problem = mmhelper.smtp_check(email(port, SMTPPassword="wrong-password", **keys), login=True)
    assert problem and "refused the login of 'mailer'" in problem
    assert mmhelper.smtp_check(email(port, SMTPPassword="wrong-password", **keys), login=False) is None


def test_merge_leaves_config_json_unchanged_when_the_relay_refuses(mmhelper, smtp_server, certificate, tmp_path):
    port = smtp_server(tls_context=certificate, authenticator=authenticate, auth_require_tls=True)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"EmailSettings": {"SMTPServer": "", "SMTPPort": "10025"}}))
    before = config.read_bytes()
    (tmp_path / "smtp-password").write_text("wrong-password\n")
    (tmp_path / "db-password").write_text("db-password-123\n")
    desired = {f"EmailSettings.{k}": v for k, v in email(port, ConnectionSecurity="STARTTLS", EnableSMTPAuth=True,
                                                            SkipServerCertificateVerification=True,
                                                            SMTPUsername=USER)["EmailSettings"].items()}
    desired["EmailSettings.SMTPPassword"] = {"$secret_file": str(tmp_path / "smtp-password")}
    (tmp_path / "desired.json").write_text(json.dumps(desired))
    spec = {"desired_file": str(tmp_path / "desired.json"), "config_file": str(config), "seed_file": "",
            "password_file": str(tmp_path / "db-password"), "user": "root"}
    with pytest.raises(mmhelper.Failure, match="refused the login.*config.json was not changed"):
        mmhelper.merge_config_file(spec)
    assert config.read_bytes() == before
    (tmp_path / "smtp-password").write_text(PASSWORD + "\n")
    mmhelper.merge_config_file(spec)
    merged = json.loads(config.read_text())["EmailSettings"]
    assert merged["SMTPPassword"] == PASSWORD and merged["SMTPPort"] == str(port)


def test_email_counts_for_new_users_only_when_the_server_answers(mmhelper, smtp_server, tmp_path):
    port = smtp_server()
    config = tmp_path / "config.json"
    config.write_text(json.dumps(email(port)))
    assert mmhelper.email_configured({"config_file": str(config)}) is True
    config.write_text(json.dumps(email(free_port())))
    assert mmhelper.email_configured({"config_file": str(config)}) is False
    config.write_text(json.dumps({"EmailSettings": {"SMTPServer": ""}}))
    assert mmhelper.email_configured({"config_file": str(config)}) is False


def test_a_privacy_key_in_email_settings_does_not_try_the_default_relay(mmhelper, tmp_path):
    # An adopted config has Mattermost's default relay (localhost:10025, nothing listens);
    # merging PushNotificationContents alone must not check it (the real adoption failed so).
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"EmailSettings": {"SMTPServer": "localhost", "SMTPPort": "10025",
                                                    "PushNotificationContents": "full"}}))
    (tmp_path / "db-password").write_text("db-password-123\n")
    (tmp_path / "desired.json").write_text(json.dumps({"EmailSettings.PushNotificationContents": "generic"}))
    mmhelper.merge_config_file({"desired_file": str(tmp_path / "desired.json"), "config_file": str(config),
                                "seed_file": "", "password_file": str(tmp_path / "db-password"), "user": "root"})
    assert json.loads(config.read_text())["EmailSettings"]["PushNotificationContents"] == "generic"
