"""config.json: DataSource handling, owned keys merged, secrets masked, the password digest."""

import pytest


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


def test_password_digest_is_salted(mmhelper):
    a = mmhelper.password_digest("secret-password", "salt1")
    assert a == mmhelper.password_digest("secret-password", "salt1")
    assert a != mmhelper.password_digest("secret-password", "salt2")
    assert "secret" not in a


def test_owned_keys_of_a_section_the_version_dropped_are_not_owned(mmhelper):
    desired = {"NotificationLogSettings.FileLocation": {"$if_section": "/var/log/mattermost"},
               "LogSettings.FileLocation": "/var/log/mattermost"}
    v10 = {"NotificationLogSettings": {"FileLocation": ""}, "LogSettings": {"FileLocation": ""}}
    v11 = {"LogSettings": {"FileLocation": "/var/log/mattermost"}}
    assert mmhelper.config_differences(v10, desired) == ["LogSettings.FileLocation", "NotificationLogSettings.FileLocation"]
    assert mmhelper.merge_config(v10, desired) and v10["NotificationLogSettings"]["FileLocation"] == "/var/log/mattermost"
    assert mmhelper.config_differences(v11, desired) == []
    assert mmhelper.merge_config(v11, desired) == [] and "NotificationLogSettings" not in v11
