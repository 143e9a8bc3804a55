"""The security report's server side: the baseline against a config.json, whose setting it
is, accepted items, the failed sign-ins of the last day from Mattermost's own lines."""

import json
import time

from mmhelper.steps import security

SAFE = {
    "TeamSettings": {"EnableOpenServer": False, "RestrictCreationToDomains": ""},
    "EmailSettings": {"RequireEmailVerification": False, "SMTPServer": "", "ConnectionSecurity": ""},
    "FileSettings": {"EnablePublicLink": False},
    "GuestAccountsSettings": {"Enable": False},
    "ServiceSettings": {"SessionLengthWebInHours": 720, "SessionLengthMobileInHours": 720,
                        "EnableMultifactorAuthentication": True, "EnableInsecureOutgoingConnections": False,
                        "AllowCorsFrom": "", "EnableDeveloper": False, "EnableTesting": False,
                        "TrustedProxyIPHeader": ["X-Real-IP"], "ListenAddress": "127.0.0.1:8065",
                        "EnableAPIUserDeletion": False, "EnableAPIChannelDeletion": False,
                        "EnableAPITeamDeletion": False, "MaximumLoginAttempts": 10},
    "PluginSettings": {"EnableUploads": False},
    "RateLimitSettings": {"Enable": True},
    "PasswordSettings": {"MinimumLength": 12},
    "LogSettings": {"EnableDiagnostics": False},
}
UNSAFE = {  # each item's unsafe value, as an admin would set it in the System Console
    "open-sign-up": ("TeamSettings", "EnableOpenServer", True),
    "public-links": ("FileSettings", "EnablePublicLink", True),
    "guest-accounts": ("GuestAccountsSettings", "Enable", True),
    "session-length": ("ServiceSettings", "SessionLengthWebInHours", 8760),
    "mfa": ("ServiceSettings", "EnableMultifactorAuthentication", False),
    "insecure-outgoing": ("ServiceSettings", "EnableInsecureOutgoingConnections", True),
    "cors": ("ServiceSettings", "AllowCorsFrom", "*"),
    "developer-mode": ("ServiceSettings", "EnableDeveloper", True),
    "testing-mode": ("ServiceSettings", "EnableTesting", True),
    "plugin-uploads": ("PluginSettings", "EnableUploads", True),
    "rate-limit": ("RateLimitSettings", "Enable", False),
    "trusted-proxy-header": ("ServiceSettings", "ListenAddress", ":8065"),
    "api-user-deletion": ("ServiceSettings", "EnableAPIUserDeletion", True),
    "api-channel-deletion": ("ServiceSettings", "EnableAPIChannelDeletion", True),
    "api-team-deletion": ("ServiceSettings", "EnableAPITeamDeletion", True),
    "login-attempts": ("ServiceSettings", "MaximumLoginAttempts", 0),
    "password-length": ("PasswordSettings", "MinimumLength", 5),
    "diagnostics": ("LogSettings", "EnableDiagnostics", True),
    "smtp-tls": ("EmailSettings", "SMTPServer", "smtp.example.org"),
}


def failing(config, owned=()):
    return [i["id"] for i in security.settings_items(config, set(owned)) if not i["ok"]]


def test_the_baseline_passes_and_each_unsafe_value_fails_by_name():
    assert failing(SAFE) == []
    assert {i for i, *_ in security.BASELINE} == set(UNSAFE) | {"email-verification"}
    for item, (section, key, value) in UNSAFE.items():
        config = json.loads(json.dumps(SAFE))
        config[section][key] = value
        # open sign-up without verified addresses is two findings
        assert failing(config) == [item] + (["email-verification"] if item == "open-sign-up" else []), item
    # open sign-up limited to the organisation's domain passes, but then wants verified addresses
    config = json.loads(json.dumps(SAFE))
    config["TeamSettings"].update(EnableOpenServer=True, RestrictCreationToDomains="example.org")
    assert failing(config) == ["email-verification"]


def test_the_text_says_whose_setting_it_is():
    config = json.loads(json.dumps(SAFE))
    config["FileSettings"]["EnablePublicLink"] = True
    config["RateLimitSettings"]["Enable"] = False
    items = {i["id"]: i["text"] for i in security.settings_items(config, {"RateLimitSettings.Enable"})}
    assert "the next `make deploy` sets it back" in items["rate-limit"]
    assert "changed in the System Console" in items["public-links"]


def test_older_versions_session_length_in_days():
    config = json.loads(json.dumps(SAFE))
    del config["ServiceSettings"]["SessionLengthWebInHours"]
    config["ServiceSettings"]["SessionLengthWebInDays"] = 180  # 5.x's default
    assert failing(config) == ["session-length"]


def test_failed_sign_ins_of_the_last_day_by_address(tmp_path, monkeypatch):
    now = time.time()

    def line(ago, address):
        stamp = time.strftime("%Y-%m-%d %H:%M:%S.000 Z", time.gmtime(now - ago))
        return json.dumps({"timestamp": stamp, "level": "info", "msg": security.FAILED_LOGIN,
                           "caller": "app/authentication.go:432", "ip_addr": address, "username": "alice"})
    (tmp_path / "mattermost.log").write_text("\n".join([
        line(90000, "198.51.100.1"), line(60, "203.0.113.7"), line(30, "203.0.113.7"), line(10, "192.0.2.5"),
        json.dumps({"timestamp": "x", "level": "info", "msg": "Server is listening"})]) + "\n")
    monkeypatch.setattr(security.subprocess, "run", lambda *a, **k: type("R", (), {"stdout": (
        "Failed publickey for root from 192.0.2.9 port 4 ssh2\nInvalid user admin from 192.0.2.9 port 5\n"
        "Accepted publickey for root from 192.0.2.1\n")})())
    [item] = security.failed_logins({"log_dir": str(tmp_path)}, now)
    assert item["text"] == ("last 24 h: 3 failed Mattermost sign-ins from 203.0.113.7 (2), 192.0.2.5 (1); "
                            "2 failed SSH logins")


def test_an_accepted_item_is_said_and_does_not_fail(monkeypatch):
    for name in ("tls_items", "failed_logins"):
        monkeypatch.setattr(security, name, lambda *a: [])
    monkeypatch.setattr(security, "exposure_item", lambda service: {"id": "service-exposure", "area": "system",
                                                                    "ok": True, "text": "1.5", "reason": ""})
    monkeypatch.setattr(security, "lynis_index", lambda max_age: (80, None))
    monkeypatch.setattr(security, "listening", lambda: [])
    monkeypatch.setattr(security, "fail2ban_items", lambda spec: [])
    config = json.loads(json.dumps(SAFE))
    config["ServiceSettings"]["EnableMultifactorAuthentication"] = False
    monkeypatch.setattr(security, "read_json", lambda path: config if path == "/c" else {})
    out = security.report({"config_file": "/c", "accept": ["mfa"], "log_dir": "/l", "lynis_minimum": 75})
    mfa = next(i for i in out["items"] if i["id"] == "mfa")
    assert mfa["ok"] is None and mfa["accepted"] and "(accepted: security_report_accept)" in mfa["text"]
    assert not [i for i in out["items"] if i["ok"] is False]
    monkeypatch.setattr(security, "lynis_index", lambda max_age: (64, None))
    out = security.report({"config_file": "/c", "accept": [], "lynis_minimum": 75})
    assert [i["id"] for i in out["items"] if i["ok"] is False] == ["mfa", "lynis"]
