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


def test_without_nginx_the_probe_goes_to_mattermosts_own_listener(monkeypatch):
    """A server adopted before its nginx site is written: nothing answers on the HTTPS port, so
    the probe is sent to Mattermost's listener - before the stop and after the start alike."""
    import http.server
    import socket
    import threading

    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            seen.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'{"status": "OK"}')

        def log_message(self, *args):
            pass

    listener = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=listener.serve_forever, daemon=True).start()
    with socket.socket() as closed:  # a port nothing listens on: "nginx"
        closed.bind(("127.0.0.1", 0))
        https_port = closed.getsockname()[1]
    spec = {"domain": "chat.example.org", "site_path": "/chat", "https_port": https_port,
            "listen_port": listener.server_address[1]}
    monkeypatch.setattr(upgrade_check, "offered", lambda spec: None)
    monkeypatch.setattr(upgrade_check, "ensure_probe", lambda spec: None)
    try:
        before = upgrade_check.before_stop(dict(spec))
        assert before["direct"] is True
        assert any(f"the probe goes to Mattermost on 127.0.0.1:{spec['listen_port']}" in n for n in before["notes"])
        assert upgrade_check._public(dict(spec, direct=True), "GET", "/api/v4/system/ping")[0] == 200
        assert seen == ["/chat/api/v4/system/ping"]
        try:
            upgrade_check._public(spec, "GET", "/api/v4/system/ping")
            raise AssertionError("nginx's closed port answered")
        except upgrade_check.Failure as e:
            assert "nginx on this server for chat.example.org does not answer" in str(e)
    finally:
        listener.shutdown()


def test_plugin_settings_a_config_patch_drops_are_put_back_and_reloaded(tmp_path, monkeypatch):
    """The real 11.4 saves a patched config without the settings of plugins that are not
    installed (PluginSettings.Sanitize in patchConfig): the deploy's Calls ports came back as a
    change on the next deploy. The probe's switch puts them back and has Mattermost reload."""
    config_file = tmp_path / "config.json"
    calls = {"udpserverport": 8443, "tcpserverport": 8443}
    config_file.write_text(json.dumps({"ServiceSettings": {"EnableUserAccessTokens": False},
                                       "PluginSettings": {"Plugins": {"com.mattermost.calls": calls}}}))
    calls_made = []

    def fake_api(spec, method, path, body=None):
        calls_made.append((method, path))
        if method == "GET":
            return json.loads(config_file.read_text())
        if path == "/api/v4/config/patch":  # what Mattermost writes: the patch, the plugin's settings gone
            config = json.loads(config_file.read_text())
            config["ServiceSettings"].update(body["ServiceSettings"])
            config["PluginSettings"]["Plugins"] = {}
            config_file.write_text(json.dumps(config))
        return {}

    monkeypatch.setattr(upgrade_check, "local_api", fake_api)
    monkeypatch.setattr(upgrade_check, "write_private", lambda path, data, **kw: open(path, "w").write(data))
    spec = {"config_file": str(config_file)}
    assert upgrade_check._tokens_allowed(spec, True) is False
    config = json.loads(config_file.read_text())
    assert config["ServiceSettings"]["EnableUserAccessTokens"] is True
    assert config["PluginSettings"]["Plugins"] == {"com.mattermost.calls": calls}
    assert calls_made[-1] == ("POST", "/api/v4/config/reload")
    calls_made.clear()
    assert upgrade_check._tokens_allowed(spec, True) is True  # nothing to switch: nothing patched, nothing reloaded
    assert calls_made == [("GET", "/api/v4/config")]
