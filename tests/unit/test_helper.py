"""Pure functions of the server-side helper: signature verdicts, DataSource handling,
config merging, checksum files, archive safety, version parsing."""

import json
import tarfile

import pytest

PINNED = "F969D0C2762FDF6A73F9D0DF895207C1AC376BA8"
OTHER = "410BFFCCDDDC3B807B18A98F14029F1782662E5C"

# Status lines as gpg 2.2.40 (Debian 12) printed them for the stand-in releases.
GOOD = f"""[GNUPG:] NEWSIG
[GNUPG:] KEY_CONSIDERED {PINNED} 0
[GNUPG:] SIG_ID m07FHFU/WXMb9xJlZ+tHleRV170 2026-11-22 1795314897
[GNUPG:] GOODSIG 895207C1AC376BA8 Stand-in Release Signing (tests only) <standin@example.invalid>
[GNUPG:] VALIDSIG {PINNED} 2026-11-22 1795314897 0 4 0 1 10 00 {PINNED}
[GNUPG:] TRUST_ULTIMATE 0 pgp
"""
EXPIRED = f"""[GNUPG:] NEWSIG
[GNUPG:] KEY_CONSIDERED {OTHER} 0
[GNUPG:] KEYEXPIRED 1609372800
[GNUPG:] SIG_ID Km6rqoWFHDoWWvPZBGh5kVOKVcw 2020-06-01 1590969600
[GNUPG:] EXPKEYSIG 14029F1782662E5C Expired Signing Key (tests only) <expired@example.invalid>
[GNUPG:] VALIDSIG {OTHER} 2020-06-01 1590969600 0 4 0 1 10 00 {OTHER}
"""
UNKNOWN_KEY = f"""[GNUPG:] NEWSIG
[GNUPG:] ERRSIG 14029F1782662E5C 1 10 00 1590969600 9 {OTHER}
[GNUPG:] NO_PUBKEY 14029F1782662E5C
"""
BAD = f"""[GNUPG:] NEWSIG
[GNUPG:] KEY_CONSIDERED {PINNED} 0
[GNUPG:] BADSIG 895207C1AC376BA8 Stand-in Release Signing (tests only) <standin@example.invalid>
[GNUPG:] FAILURE gpg-exit 33554433
"""


def test_good_signature_by_pinned_key(mmhelper):
    assert mmhelper.parse_gpg_status(GOOD, PINNED) is None
    assert mmhelper.parse_gpg_status(GOOD, " ".join([PINNED[i:i + 4] for i in range(0, 40, 4)]).lower()) is None


def test_good_signature_by_another_key_is_refused(mmhelper):
    assert "not by the pinned key" in mmhelper.parse_gpg_status(GOOD, OTHER)


def test_expired_key_is_a_named_error(mmhelper):
    assert "expired" in mmhelper.parse_gpg_status(EXPIRED, OTHER)


def test_unknown_key_and_bad_signature(mmhelper):
    assert "not made by the pinned signing key" in mmhelper.parse_gpg_status(UNKNOWN_KEY, PINNED)
    assert "BAD signature" in mmhelper.parse_gpg_status(BAD, PINNED)
    assert mmhelper.parse_gpg_status("", PINNED) == "no valid signature found"


def test_datasource_round_trip_with_awkward_password(mmhelper):
    spec = {"user": "mmuser", "host": "localhost", "port": 5432, "database": "mattermost",
            "params": "sslmode=disable&connect_timeout=10"}
    ds = mmhelper.build_datasource(spec, "p@ss:w/rd?&'x")
    parsed = mmhelper.parse_datasource(ds)
    assert parsed["password"] == "p@ss:w/rd?&'x"
    assert (parsed["user"], parsed["host"], parsed["port"], parsed["database"]) == ("mmuser", "localhost", 5432, "mattermost")
    assert "p@ss" not in mmhelper.mask_datasource(ds)
    assert mmhelper.mask_datasource(ds).startswith("postgres://mmuser:********@localhost:5432/mattermost?")
    assert mmhelper.parse_datasource("mysql://x") is None


def test_resolve_desired_needs_a_password(mmhelper):
    desired = {"SqlSettings.DataSource": {"$datasource": {"user": "u", "host": "h", "port": 1, "database": "d", "params": ""}},
               "ServiceSettings.SiteURL": "https://chat.example.org"}
    resolved = mmhelper.resolve_desired(desired, "secret")
    assert resolved["SqlSettings.DataSource"] == "postgres://u:secret@h:1/d?"
    assert resolved["ServiceSettings.SiteURL"] == "https://chat.example.org"
    with pytest.raises(mmhelper.Failure):
        mmhelper.resolve_desired(desired, None)


def test_merge_sets_only_owned_keys(mmhelper):
    config = {"ServiceSettings": {"SiteURL": "", "ListenAddress": ":8065", "EnableCustomEmoji": True},
              "TeamSettings": {"SiteName": "Set in the System Console"}}
    desired = {"ServiceSettings.SiteURL": "https://chat.example.org",
               "ServiceSettings.ListenAddress": "127.0.0.1:8065",
               "LogSettings.EnableDiagnostics": False}
    assert mmhelper.config_differences(config, desired) == sorted(desired)
    changed = mmhelper.merge_config(config, desired)
    assert changed == sorted(desired)
    assert config["TeamSettings"]["SiteName"] == "Set in the System Console"
    assert config["ServiceSettings"]["EnableCustomEmoji"] is True
    assert config["LogSettings"] == {"EnableDiagnostics": False}
    assert mmhelper.merge_config(config, desired) == []


def test_missing_key_differs_from_null_value(mmhelper):
    assert mmhelper.config_differences({"A": {}}, {"A.B": None}) == ["A.B"]
    assert mmhelper.config_differences({"A": {"B": None}}, {"A.B": None}) == []
    # 0 and False are different settings values in config.json, as are 1 and "1"
    assert mmhelper.config_differences({"A": {"B": 0}}, {"A.B": False}) == ["A.B"]
    assert mmhelper.config_differences({"A": {"B": 1}}, {"A.B": "1"}) == ["A.B"]


def test_display_value_masks_secrets(mmhelper):
    assert mmhelper.display_value("SqlSettings.AtRestEncryptKey", "abc") == "********"
    assert mmhelper.display_value("EmailSettings.SMTPPassword", "abc") == "********"
    assert mmhelper.display_value("ServiceSettings.SiteURL", "https://x") == "https://x"
    shown = mmhelper.display_value("SqlSettings.DataSource", "postgres://u:topsecret@h:5432/d?x=1")
    assert "topsecret" not in shown


@pytest.mark.parametrize("text,expected", [
    ("ab" * 32 + "  mattermost-11.7.6-linux-amd64.tar.gz\n", "ab" * 32),
    ("AB" * 32 + " *mattermost-11.7.6-linux-amd64.tar.gz\n", "ab" * 32),
    ("cd" * 32 + "\n", "cd" * 32),
    ("ab" * 32 + "  some-other-file.tar.gz\n", None),
    ("", None),
])
def test_checksum_file_formats(mmhelper, text, expected):
    assert mmhelper.parse_checksum_file(text, "mattermost-11.7.6-linux-amd64.tar.gz") == expected


def _member(name, kind=tarfile.REGTYPE, link=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


def test_archive_members_must_stay_in_mattermost(mmhelper):
    ok = [_member("mattermost", tarfile.DIRTYPE), _member("mattermost/bin/mattermost")]
    mmhelper.check_tar_members(ok)
    for bad, why in [
        (ok + [_member("mattermost/../etc/passwd")], "unsafe path"),
        (ok + [_member("/etc/cron.d/x")], "unsafe path"),
        (ok + [_member("other/file")], "outside mattermost/"),
        (ok + [_member("mattermost/dev", tarfile.CHRTYPE)], "special file"),
        (ok + [_member("mattermost/l", tarfile.SYMTYPE, "/etc/shadow")], "pointing outside"),
        ([_member("mattermost/README.md")], "no mattermost/bin/mattermost"),
    ]:
        with pytest.raises(mmhelper.Failure, match=why):
            mmhelper.check_tar_members(bad)


def test_version_output_and_header(mmhelper):
    out = "Version: 11.7.6\nBuild Number: 11.7.6\nBuild Date: x\nBuild Hash: y\nBuild Enterprise Ready: false\n"
    assert mmhelper.parse_version_output(out) == "11.7.6"
    assert mmhelper.parse_version_output("DB Version: 5.0.0\n") is None
    assert mmhelper.parse_version_header("11.7.6.18562478394.5f2a9c.true") == "11.7.6"
    assert mmhelper.parse_version_header("11.7.6") == "11.7.6"
    assert mmhelper.parse_version_header("") is None
    assert mmhelper.parse_version_header(None) is None


def test_password_digest_is_salted(mmhelper):
    a = mmhelper.password_digest("secret-password", "salt1")
    assert a == mmhelper.password_digest("secret-password", "salt1")
    assert a != mmhelper.password_digest("secret-password", "salt2")
    assert "secret" not in a


def test_state_output_is_json_serialisable_shape(mmhelper):
    # The fact parser accepts what `state` prints and rejects anything else.
    from facts.mattermost import parse_state

    sample = {"helper_version": 1, "install": {"kind": "missing"}}
    assert parse_state([json.dumps(sample)]) == sample
    with pytest.raises(ValueError):
        parse_state(["Traceback (most recent call last):"])
    with pytest.raises(ValueError):
        parse_state(["{}"])


# What the real Mattermost 11.4.0 binary printed for `db migrate --dry-run` (tests/realmm
# build) with a config it rejects, and with a good config and no database to reach.
REJECTED = """{"level":"warn","msg":"DefaultServerLocale must be one of the supported locales."}
Error: failed to load configuration: failed to create store: unable to load on store creation: invalid config: \
Config.IsValid: model.config.is_valid.experimental_view_archived_channels.app_error
Usage:
  mattermost db migrate [flags]
"""
ACCEPTED = """error [2026-11-24 09:37:48.013 Z] Failed to ping DB caller="sql/sql_utils.go:51" database=master
Error: failed to create migrator: error in initializing connection: dial tcp 127.0.0.1:1: connect: connection refused
"""


def test_config_check_reads_the_real_binarys_verdict(mmhelper):
    assert mmhelper.parse_config_check(ACCEPTED) is None
    reason = mmhelper.parse_config_check(REJECTED)
    assert reason.startswith("failed to create store") and "experimental_view_archived_channels" in reason


def test_owned_keys_of_a_section_the_version_dropped_are_not_owned(mmhelper):
    desired = {"NotificationLogSettings.FileLocation": {"$if_section": "/var/log/mattermost"},
               "LogSettings.FileLocation": "/var/log/mattermost"}
    v10 = {"NotificationLogSettings": {"FileLocation": ""}, "LogSettings": {"FileLocation": ""}}
    v11 = {"LogSettings": {"FileLocation": "/var/log/mattermost"}}
    assert mmhelper.config_differences(v10, desired) == ["LogSettings.FileLocation", "NotificationLogSettings.FileLocation"]
    assert mmhelper.merge_config(v10, desired) and v10["NotificationLogSettings"]["FileLocation"] == "/var/log/mattermost"
    assert mmhelper.config_differences(v11, desired) == []
    assert mmhelper.merge_config(v11, desired) == [] and "NotificationLogSettings" not in v11


def test_data_snapshot_never_shares_a_file_with_the_live_folder(mmhelper, tmp_path):
    import os

    live = tmp_path / "live"
    (live / "users" / "u1").mkdir(parents=True)
    (live / "users" / "u1" / "profile.png").write_bytes(b"old face")
    (live / "report.txt").write_text("report")
    first = mmhelper.snapshot_data(str(live), str(tmp_path / "b1" / "data"))
    assert first == {"copied": 2, "linked": 0}
    for rel in ("users/u1/profile.png", "report.txt"):
        assert os.stat(live / rel).st_ino != os.stat(tmp_path / "b1" / "data" / rel).st_ino
    # Mattermost rewrites a profile image in place (O_TRUNC): the backup keeps the old bytes
    with open(live / "users" / "u1" / "profile.png", "r+b") as f:
        f.truncate(0)
        f.write(b"new face")
    os.utime(live / "users" / "u1" / "profile.png", ns=(1, 1))
    assert (tmp_path / "b1" / "data" / "users" / "u1" / "profile.png").read_bytes() == b"old face"
    # the next backup links what did not change to the previous BACKUP, copies the rest
    second = mmhelper.snapshot_data(str(live), str(tmp_path / "b2" / "data"), str(tmp_path / "b1" / "data"))
    assert second == {"copied": 1, "linked": 1}
    assert os.stat(tmp_path / "b2" / "data" / "report.txt").st_ino == os.stat(tmp_path / "b1" / "data" / "report.txt").st_ino
    assert (tmp_path / "b2" / "data" / "users" / "u1" / "profile.png").read_bytes() == b"new face"


def test_the_web_app_files_mattermost_rewrites(mmhelper, tmp_path):
    import os

    client = tmp_path / "client"
    (client / "css").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "plugin.css").write_text("")
    os.symlink(tmp_path / "elsewhere", client / "plugins")
    for name in ("root.html", "manifest.json", "main.js", "css/app.css", "css/root.html"):
        (client / name).write_text("x")
    found = sorted(os.path.relpath(p, client) for p in mmhelper.client_files(str(tmp_path)))
    assert found == ["css/app.css", "manifest.json", "root.html"]


def test_email_counts_only_when_the_smtp_server_answers(mmhelper):
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]

    def greet():
        conn, _ = server.accept()
        conn.sendall(b"220 test ESMTP\r\n")
        conn.close()

    threading.Thread(target=greet, daemon=True).start()
    settings = {"EmailSettings": {"SMTPServer": "127.0.0.1", "SMTPPort": str(port), "ConnectionSecurity": ""}}
    assert mmhelper.smtp_answers(settings) is True
    server.close()
    assert mmhelper.smtp_answers(settings, timeout=1) is False  # nothing listens any more
    assert mmhelper.smtp_answers({"EmailSettings": {"SMTPServer": ""}}) is False
