"""Privacy switches and e-mail settings: the keys they own, checked against the config.json
the real Mattermost binaries write (tests/realmm builds them; `make test` builds first)."""

import json
import runpy

import pytest

from mmhelper.parts.config import get_dotted, merge_config, split_key
from tasks import email, privacy
from tasks.config import desired_config
from tasks.settings import ROOT, SettingsError, load_settings

DEFAULTS = {k: v for k, v in runpy.run_path(str(ROOT / "group_data" / "all.py")).items() if not k.startswith("__")}
REAL = {v: ROOT / ".cache" / "realmm" / v / "config" / "config.json" for v in ("10.3.0", "11.4.0")}
SMTP = {"smtp_server": "smtp.example.org", "smtp_sender": "chat@example.org", "smtp_user": "chat"}


def load(env=None, **overrides):
    return load_settings({**DEFAULTS, **overrides}, "chat.example.org", environ=env or {})


def real_config(version):
    if not REAL[version].exists():
        pytest.skip(f"the real {version} build is not there: make mattermost-builds (make test builds it)")
    return json.loads(REAL[version].read_text())


def test_bracketed_parts_keep_their_dots():
    assert split_key("PluginSettings.PluginStates[com.mattermost.calls].Enable") == [
        "PluginSettings", "PluginStates", "com.mattermost.calls", "Enable"]
    assert split_key("LogSettings.EnableSentry") == ["LogSettings", "EnableSentry"]


@pytest.mark.parametrize("version", sorted(REAL))
def test_every_privacy_key_exists_in_the_real_config_with_its_type(version):
    config = real_config(version)
    for flow, (_, allowed, closed) in privacy.FLOWS.items():
        for key, value in {**allowed, **closed}.items():
            current, present = get_dotted(config, key)
            assert present, f"{flow}: {key} is not in the config.json of the real {version}"
            assert type(current) is type(value), f"{flow}: {key} is {current!r} in the real {version}"


@pytest.mark.parametrize("version", sorted(REAL))
def test_strict_closes_every_flow_of_the_real_config(version):
    config = real_config(version)
    owned = desired_config(load(mattermost_privacy_strict=True, mattermost_privacy={"calls": True}))
    changed = merge_config(config, {k: v for k, v in owned.items() if not isinstance(v, dict)})
    for flow, (_, _, closed) in privacy.FLOWS.items():
        for key, value in closed.items():
            assert get_dotted(config, key) == (value, True), f"{flow} still open: {key}"
    # Every flow Mattermost ships open was changed (the image proxy ships closed).
    opened = [k for f, (_, _, closed) in privacy.FLOWS.items() if privacy.MATTERMOST_DEFAULTS[f] for k in closed]
    assert set(opened) <= set(changed)


def test_defaults_own_only_what_differs_from_mattermost_and_names_are_checked():
    owned = privacy.owned_keys({}, strict=False)
    assert owned == {"LogSettings.EnableDiagnostics": False, "LogSettings.EnableSentry": False,
                     "EmailSettings.PushNotificationContents": "generic"}
    owned = privacy.owned_keys({"gif_picker": False, "calls": True}, strict=False)
    assert owned["ServiceSettings.EnableGifPicker"] is False
    assert owned["PluginSettings.PluginStates[com.mattermost.calls].Enable"] is True
    with pytest.raises(SettingsError, match="unknown flow.*gifs"):
        load(mattermost_privacy={"gifs": False})
    with pytest.raises(SettingsError, match=r"mattermost_privacy\['calls'\] must be True or False"):
        load(mattermost_privacy={"calls": "no"})


@pytest.mark.parametrize("version", sorted(REAL))
def test_email_keys_exist_in_the_real_config(version):
    config = real_config(version)
    s = load(env={"MATTERMOST_SMTP_PASSWORD": "smtp-secret-123"}, **SMTP)
    for key, value in email.owned_keys(s).items():
        current, present = get_dotted(config, key)
        assert present, f"{key} is not in the config.json of the real {version}"
        if not isinstance(value, dict):
            assert type(current) is type(value), key
    assert email.owned_keys(s)["EmailSettings.SMTPPassword"] == {"$secret_file": "/etc/mattermost/private/smtp-password"}
    assert "smtp-secret-123" not in json.dumps(desired_config(s)) and "smtp-secret-123" not in repr(s)


@pytest.mark.parametrize("overrides,env,message", [
    ({}, {}, "smtp_user is set but MATTERMOST_SMTP_PASSWORD is empty"),
    ({"smtp_security": "SSL"}, {"MATTERMOST_SMTP_PASSWORD": "x"}, "smtp_security must be"),
    ({"smtp_security": ""}, {"MATTERMOST_SMTP_PASSWORD": "x"}, "would send the SMTP password in clear"),
    ({"smtp_sender": None}, {"MATTERMOST_SMTP_PASSWORD": "x"}, "smtp_sender must be the From: address"),
    ({"smtp_port": "587"}, {"MATTERMOST_SMTP_PASSWORD": "x"}, "smtp_port must be a port number"),
    ({"mattermost_config": {"EmailSettings.SMTPServer": "other"}}, {"MATTERMOST_SMTP_PASSWORD": "x"},
     "use the smtp_\\* settings only"),
])
def test_bad_email_settings_are_refused(overrides, env, message):
    with pytest.raises(SettingsError, match=message) as err:
        load(env=env, **{**SMTP, **overrides})
    assert "nothing was changed" in str(err.value)


def test_no_smtp_password_in_the_settings_file():
    with pytest.raises(SettingsError, match="no SMTP password in mattermost_config"):
        load(mattermost_config={"EmailSettings.SMTPPassword": "hunter2"})


def test_without_smtp_server_the_email_settings_stay_the_admins():
    assert not any(k.startswith("EmailSettings.SMTP") for k in desired_config(load()))
