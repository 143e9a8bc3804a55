"""Settings are checked before any server is touched; each refusal says what to do."""

import runpy

import pytest

from tasks.settings import PASSWORD_ENV, ROOT, SettingsError, load_settings, read_secrets_file

DEFAULTS = {k: v for k, v in runpy.run_path(str(ROOT / "group_data" / "all.py")).items() if not k.startswith("__")}


def load(env=None, **overrides):
    return load_settings({**DEFAULTS, **overrides}, "chat.example.org", environ=env or {})


def test_defaults_are_valid_and_derive_urls():
    s = load()
    assert s.release.policy == DEFAULTS["mattermost_version"] == "esr"
    assert s.release.esr_lines[-1] == "11.7" and s.release.fallback is None
    assert s.domain == "chat.example.org"
    assert s.site_url == "https://chat.example.org"
    assert s.release.url_for("11.7.6") == "https://releases.mattermost.com/11.7.6/mattermost-11.7.6-linux-amd64.tar.gz"
    assert s.release.signing_key_fingerprint == "A1B31D46F0F3A10B02CF2D44F8F2C31744774B28"
    assert s.db_password is None
    assert s.self_signed and s.certificate.endswith("chat.example.org.selfsigned.crt")
    assert s.certificate_key.endswith("chat.example.org.selfsigned.key") and s.tls_certificate_key == ""


@pytest.mark.parametrize("overrides,message", [
    ({"mattermost_version": "11"}, "mattermost_version must be esr, latest, a line"),
    ({"mattermost_version": "newest"}, "mattermost_version must be esr, latest, a line"),
    ({"mattermost_version_fallback": "11.7"}, "mattermost_version_fallback must be a release"),
    ({"mattermost_esr_lines": ["11"]}, "mattermost_esr_lines must list lines"),
    ({"mattermost_backup_keep": 0}, "mattermost_backup_keep must be a whole number"),
    ({"mattermost_arch": "i386"}, "mattermost_arch"),
    ({"mattermost_release_url": "https://example.org/mattermost.tar.gz"}, "must contain {version}"),
    ({"mattermost_signing_key_fingerprint": "F8F2C31744774B28"}, "40-digit key fingerprint"),
    ({"mattermost_release_sha256": {"11.7.6": "abc"}}, "is not a SHA-256"),
    ({"mattermost_site_url": "http://chat.example.org"}, "must start with https://"),
    ({"mattermost_domain": "chat example"}, "is not a host name"),
    ({"mattermost_config": {"SqlSettings.DataSource": "postgres://x"}}, "may not set SqlSettings.DataSource"),
    ({"mattermost_config": {"SiteName": "x"}}, "must look like Section.Key"),
    ({"mattermost_state_dir": "var/lib/mattermost"}, "must be an absolute path"),
    ({"nginx_tls_certificate": "/etc/ssl/x.crt"}, "set both nginx_tls_certificate"),
    ({"notices_channel": "ops"}, "notices_channel 'ops' must be team:channel"),
    ({"notices_email": "ops@example.org"}, "notices_email needs smtp_server"),
    ({"notices_digest_time": "8:00"}, "notices_digest_time must be HH:MM"),
    ({"notices_disk_percent": 100}, "notices_disk_percent must be a number from 1 to 99"),
])
def test_bad_settings_are_refused(overrides, message):
    with pytest.raises(SettingsError, match=message) as err:
        load(**overrides)
    assert "nothing was changed" in str(err.value)


def test_password_from_env_must_be_present_when_required():
    with pytest.raises(SettingsError, match=f"{PASSWORD_ENV} is empty on this workstation"):
        load(postgresql_password_from_env=True)
    s = load(env={PASSWORD_ENV: "a-long-enough-password"}, postgresql_password_from_env=True)
    assert s.db_password == "a-long-enough-password"


def test_short_env_password_is_refused():
    with pytest.raises(SettingsError, match="shorter than 12"):
        load(env={PASSWORD_ENV: "short"})


def test_password_never_shows_in_repr():
    s = load(env={PASSWORD_ENV: "a-long-enough-password"})
    assert "a-long-enough-password" not in repr(s)
    assert "a-long-enough-password" not in repr(s.db_password)


def test_secrets_file_is_read(tmp_path):
    f = tmp_path / "secrets.env"
    f.write_text("# comment\nexport MATTERMOST_DB_PASSWORD='from-the-file-123'\nOTHER=1\n")
    assert read_secrets_file(f) == {"MATTERMOST_DB_PASSWORD": "from-the-file-123", "OTHER": "1"}
    assert read_secrets_file(tmp_path / "missing") == {}


def test_offsite_backups_need_their_password_key_and_pinned_host(tmp_path):
    key = tmp_path / "id_ed25519"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nsecret\n-----END OPENSSH PRIVATE KEY-----\n")
    sftp = {"backup_offsite_repository": "sftp:u1@box.example:/mm", "backup_offsite_ssh_key": str(key),
            "backup_offsite_known_hosts": "box.example ssh-ed25519 AAAAC3Nz"}
    with pytest.raises(SettingsError, match="RESTIC_PASSWORD is empty on this workstation"):
        load_settings({**DEFAULTS, **sftp}, "chat.example.org", environ={})
    with pytest.raises(SettingsError, match="backup_offsite_known_hosts"):
        load_settings({**DEFAULTS, **sftp, "backup_offsite_known_hosts": None}, "chat.example.org",
                      environ={"RESTIC_PASSWORD": "a-long-enough-password"})
    with pytest.raises(SettingsError, match="is not a restic repository"):
        load_settings({**DEFAULTS, **sftp, "backup_offsite_repository": "ftp://nope"}, "chat.example.org",
                      environ={"RESTIC_PASSWORD": "a-long-enough-password"})
    s = load_settings({**DEFAULTS, **sftp}, "chat.example.org",
                      environ={"RESTIC_PASSWORD": "a-long-enough-password", "AWS_ACCESS_KEY_ID": "not-for-sftp"})
    assert s.offsite.ssh_key.startswith("-----BEGIN") and "secret" not in repr(s) and "a-long" not in repr(s)
    assert s.offsite.env == {"AWS_ACCESS_KEY_ID": "not-for-sftp"}


def test_a_site_url_with_a_path_is_served_under_it():
    s = load(mattermost_site_url="https://chat.example.org/chat/")
    assert s.site_url == "https://chat.example.org/chat" and s.site_path == "/chat"
    assert s.site_origin == "https://chat.example.org"
    assert s.ping_url == "http://127.0.0.1:8065/chat/api/v4/system/ping?get_server_status=true"
    assert load().site_path == "" and load().local_api_base == "http://127.0.0.1:8065"
    for bad in ("https://chat.example.org/chat?x=1", "https://chat.example.org/a b", "https://chat.example.org/#x"):
        with pytest.raises(SettingsError, match="a path is served"):
            load(mattermost_site_url=bad)


def test_calls_ports_open_only_while_calls_is_on():
    from tasks.common import render
    from tasks.config import desired_config

    on = load()
    assert on.calls_on
    rules = render("etc/nftables.conf.j2", s=on)
    assert "udp dport 8443 accept" in rules and "tcp dport 8443 accept" in rules
    owned = desired_config(on)
    assert owned["PluginSettings.Plugins[com.mattermost.calls].udpserverport"] == 8443
    assert "PluginSettings.Plugins[com.mattermost.calls].icehostoverride" not in owned
    nat = load(calls_ice_host_override="203.0.113.7", calls_udp_port=3478)
    assert desired_config(nat)["PluginSettings.Plugins[com.mattermost.calls].icehostoverride"] == "203.0.113.7"
    assert "udp dport 3478 accept" in render("etc/nftables.conf.j2", s=nat)
    off = load(mattermost_privacy={"calls": False})
    assert not off.calls_on and "8443" not in render("etc/nftables.conf.j2", s=off)
    assert not any("com.mattermost.calls].udp" in k for k in desired_config(off))
    with pytest.raises(SettingsError, match="calls_udp_port must be a port number"):
        load(calls_udp_port=70000)


def test_the_file_store_settings_and_their_checks(tmp_path):
    from tasks.config import desired_config
    from tasks.secrets import all_secrets

    keys = {"MATTERMOST_S3_ACCESS_KEY_ID": "AKID", "MATTERMOST_S3_SECRET_ACCESS_KEY": "a-secret-key-1"}
    s = load(keys, files_s3_bucket="chat-files", files_s3_endpoint="s3.example.org:8333")
    assert s.files.bucket == "chat-files" and s.files.store == "local" and "a-secret-key-1" not in repr(s)
    owned = desired_config(s)
    assert owned["FileSettings.AmazonS3Endpoint"] == "s3.example.org:8333"
    assert owned["FileSettings.AmazonS3SecretAccessKey"] == {"$secret_file": "/etc/mattermost/private/s3-secret-access-key"}
    assert owned["FileSettings.DriverName"] == {"$keep_unless_fresh": "local"}
    assert "a-secret-key-1" not in str(owned)
    assert all_secrets(s)["/etc/mattermost/private/s3-secret-access-key"] == "a-secret-key-1\n"
    on_s3 = load(keys, files_store="s3", files_s3_bucket="chat-files", files_s3_endpoint="s3.example.org")
    assert desired_config(on_s3)["FileSettings.DriverName"] == {"$keep_unless_fresh": "amazons3"}
    for overrides, message in [
        ({"files_store": "s3"}, "files_s3_bucket is not set"),
        ({"files_s3_bucket": "b", "files_s3_endpoint": "s3.example.org"}, "is not a bucket name"),
        ({"files_s3_bucket": "chat-files", "files_s3_endpoint": "https://s3.example.org"}, "without https://"),
        ({"files_s3_bucket": "chat-files", "files_s3_endpoint": "s3.example.org",
          "files_s3_ca_file": str(tmp_path / "none.pem")}, "is not a PEM certificate"),
        ({"files_s3_bucket": "chat-files", "files_s3_endpoint": "s3.example.org",
          "files_s3_request_timeout_ms": 1000}, "at least 30000"),
    ]:
        with pytest.raises(SettingsError, match=message):
            load(keys, **overrides)
    with pytest.raises(SettingsError, match="MATTERMOST_S3_ACCESS_KEY_ID and MATTERMOST_S3_SECRET_ACCESS_KEY"):
        load({}, files_s3_bucket="chat-files", files_s3_endpoint="s3.example.org")


@pytest.mark.parametrize("length,refused", [(4, True), (5, False), (12, False), (72, False), (73, True),
                                            (8065, True), ("12", True)])
def test_the_minimum_password_length_is_what_mattermost_accepts(length, refused):
    """It was checked as a port number: 8065 passed, and Mattermost then refused its config
    (config.IsValid: PasswordSettings.MinimumLength from 5 to 72, model/config.go)."""
    if refused:
        with pytest.raises(SettingsError, match="mattermost_password_min_length must be a number of characters from "
                                                "5 to 72"):
            load(mattermost_password_min_length=length)
    else:
        assert load(mattermost_password_min_length=length).password_min_length == length


def test_each_group_is_typed_and_built_by_its_own_module():
    from tasks.groups import calls, email, notices, offsite, release, ssh, updates

    s = load()
    for group, module in ((s.release, release), (s.email, email), (s.notices, notices), (s.offsite, offsite),
                          (s.ssh, ssh), (s.calls, calls), (s.updates, updates)):
        assert type(group).__module__ == module.__name__
    assert s.release.url_for("11.7.6").endswith("/11.7.6/mattermost-11.7.6-linux-amd64.tar.gz")
    assert (s.notices.digest_time, s.calls.udp_port, s.updates.reboot_timeout) == ("08:00", 8443, 600)


@pytest.mark.parametrize("check,args,problem", [
    ("port", ("p", 0), "p must be a port number, not 0"),
    ("port", ("p", True), "p must be a port number, not True"),
    ("port", ("p", None, True), None),
    ("time_of_day", ("t", "24:00"), "t must be HH:MM, not '24:00'"),
    ("time_of_day", ("t", "23:59"), None),
    ("team_channel", ("c", "acme:town-square"), None),
    ("team_channel", ("c", "Acme:x"), "c 'Acme:x' must be team:channel (their URL names)"),
    ("number", ("n", 0, 1), "n must be a number of at least 1, not 0"),
])
def test_the_shared_checks(check, args, problem):
    from tasks.groups import checks

    assert getattr(checks, check)(*args) == problem
