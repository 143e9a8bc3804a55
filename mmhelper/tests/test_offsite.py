"""Off-server copies: what the status says when, how restic is called (secrets by file,
the SFTP host pinned), and its errors shortened to the line that matters."""

import json
import time


def spec(tmp_path, **extra):
    return {"repository": "sftp:u1@box.example:/mm", "password_file": "/etc/mattermost/private/restic-password",
            "ssh_key": "/etc/mattermost/private/restic-ssh-key", "known_hosts": "/etc/mattermost/restic-known-hosts",
            "status_file": str(tmp_path / "offsite.json"), **extra}


def test_status_ok_stale_failed_none(mmhelper, tmp_path):
    s = spec(tmp_path)
    assert mmhelper.offsite_state(s)["state"] == "none"
    mmhelper.record(s, last_ok=time.time(), last_ok_backup="b1", last_error=None)
    assert mmhelper.offsite_state(s) | {"last_ok": 0} == {"state": "ok", "last_ok": 0, "backup": "b1"}
    mmhelper.record(s, last_error="restic backup failed: Fatal: unable to open repository", last_error_at=time.time() + 1)
    state = mmhelper.offsite_state(s)
    assert state["state"] == "failed" and "unable to open repository" in state["error"]
    mmhelper.record(s, last_ok=time.time() + 2, last_error=None)
    assert mmhelper.offsite_state(s)["state"] == "ok"
    mmhelper.record(s, last_ok=time.time() - mmhelper.STALE_AFTER - 60)
    assert mmhelper.offsite_state(s)["state"] == "stale"
    assert json.loads((tmp_path / "offsite.json").read_text())["last_ok_backup"] == "b1"


def test_restic_reads_secrets_from_files_and_pins_the_sftp_host(mmhelper, tmp_path):
    s = spec(tmp_path)
    cmd = mmhelper.restic_command(s, "snapshots", "--json")
    assert cmd[0] == "restic" and cmd[-2:] == ["snapshots", "--json"]
    sftp = cmd[cmd.index("-o") + 1]
    assert sftp.startswith("sftp.command=ssh -i /etc/mattermost/private/restic-ssh-key")
    assert "StrictHostKeyChecking=yes" in sftp and "UserKnownHostsFile=/etc/mattermost/restic-known-hosts" in sftp
    assert sftp.endswith("u1@box.example -s sftp")
    env = mmhelper.restic_env(s)
    assert env["RESTIC_PASSWORD_FILE"] == s["password_file"] and "RESTIC_PASSWORD" not in env
    s3 = spec(tmp_path, repository="s3:https://s3.example.com/bucket/mm", ssh_key=None)
    assert "-o" not in mmhelper.restic_command(s3, "init")


def test_errors_shortened_to_what_went_wrong(mmhelper):
    text = "open repository\nsubprocess ssh: u1@box: Permission denied (publickey).\nFatal: unable to open repo: EOF\n"
    assert mmhelper.explain(text) == "subprocess ssh: u1@box: Permission denied (publickey)."
    assert mmhelper.explain("") == "no output"
