"""Release checks: signature verdicts, checksum files, archive safety, version parsing, the
web app files Mattermost rewrites."""

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
