"""The check after an upgrade's start: what it compares and how it names a plugin that no
longer runs (the log line is the real 11.4's, measured with the test plugin)."""

import json

from mmhelper.jobs import upgrade_check

REFUSED = {"timestamp": "2026-12-04 09:50:16.707 Z", "level": "error", "msg": "Unable to activate plugin",
           "caller": "app/plugin.go:144", "plugin_id": "com.mmdeploy.legacy-helper",
           "error": "legacy-helper stands in for a plugin Mattermost 11 no longer runs: refusing to activate on 11.4.0"}


def test_the_plugins_own_error_from_mattermosts_log(tmp_path):
    (tmp_path / "mattermost.log").write_text("\n".join(json.dumps(x) for x in [
        {"level": "info", "msg": "Starting Server...", "caller": "app/server.go:1"}, REFUSED,
        {"level": "info", "msg": "Server is listening on 127.0.0.1:8065"}]) + "\n")
    spec = {"log_dir": str(tmp_path)}
    assert upgrade_check.plugin_error(spec, "com.mmdeploy.legacy-helper") == REFUSED["error"]
    assert upgrade_check.plugin_error(spec, "com.example.other") is None
    assert upgrade_check.plugin_error({"log_dir": str(tmp_path / "none")}, "x") is None


def test_what_was_offered_before_and_is_gone_after(monkeypatch):
    before = {"offered": {"plugins": ["com.mmdeploy.legacy-helper", "playbooks"],
                          "login": ["EnableSignInWithEmail", "EnableSignUpWithGitLab"]}, "probe": None}
    now = {"plugins": ["playbooks"], "login": ["EnableSignInWithEmail"]}
    monkeypatch.setattr(upgrade_check, "offered", lambda spec: now)
    monkeypatch.setattr(upgrade_check, "job_server_runs", lambda spec: None)
    monkeypatch.setattr(upgrade_check, "plugin_error", lambda spec, pid: REFUSED["error"])
    assert upgrade_check.after_start({}, before, wait=0) == [
        f"the plugin com.mmdeploy.legacy-helper no longer runs ({REFUSED['error']})",
        "the login page no longer offers EnableSignUpWithGitLab"]
    # what could not be read before is not compared; the job server is still checked
    monkeypatch.setattr(upgrade_check, "job_server_runs", lambda spec: "the job server did not take a job")
    assert upgrade_check.after_start({}, {"offered": None, "probe": None}, wait=0) == [
        "the job server did not take a job"]
