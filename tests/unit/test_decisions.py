"""Decision functions of the tasks: what to do, given the server's state report."""

import copy
import runpy

import pytest
from pyinfra.api.exceptions import DeployError

from tasks import adopt, base, database, release, service
from tasks.config import desired_config
from tasks.settings import ROOT, load_settings
from tasks.state import managed_paths

DEFAULTS = {k: v for k, v in runpy.run_path(str(ROOT / "group_data" / "all.py")).items() if not k.startswith("__")}
S = load_settings(DEFAULTS, "chat.example.org", environ={})

# A converged server as the helper's `state` reports it (shape taken from a real run).
CONVERGED = {
    "helper_version": 1,
    "os": {"id": "debian", "version_id": "12", "codename": "bookworm"},
    "packages_missing": [],
    "user_exists": True,
    "paths": {},
    "install": {"kind": "link", "target": "/opt/mattermost-releases/11.7.6", "version": "11.7.6"},
    "releases": ["11.7.6"],
    "staging_leftovers": [],
    "password": {"exists": True, "salt": "5a1t", "digest": database.password_digest("server-side-password", "5a1t")},
    "config": {"exists": True, "differs": [], "current": {}},
    "db": {"server_active": True, "role_exists": True, "db_exists": True, "db_owner": "mmuser", "login_ok": True},
    "service": {"enabled": "enabled", "active": "active", "need_reload": False},
    "nginx": {"active": "active"},
    "health": {"ok": True, "error": None, "version": "11.7.6"},
}
FRESH = {
    **CONVERGED,
    "packages_missing": ["postgresql", "nginx"],
    "user_exists": False,
    "install": {"kind": "missing"},
    "releases": [],
    "password": {"exists": False, "salt": "5a1t", "digest": None},
    "config": {"exists": False, "differs": [], "current": {}},
    "db": {"server_active": False},
    "service": {"enabled": "not-found", "active": "inactive", "need_reload": False},
    "health": {"ok": False, "error": "service not running", "version": None},
}
HAND_INSTALL = {
    **FRESH,
    "install": {"kind": "dir", "version": "11.7.6", "adoption": {
        "config": "/opt/mattermost/config/config.json",
        "datasource": {"user": "mmuser", "host": "localhost", "port": 5432, "database": "mattermost",
                       "params": "sslmode=disable"},
        "has_password": True, "files_dir": "./data/", "driver": "local"}},
}


def test_password_generated_only_when_none_anywhere():
    assert database.password_action(FRESH, None) == "generate"
    assert database.password_action(CONVERGED, None) is None
    # adopting a hand install keeps its password instead of making a new one
    assert database.password_action(HAND_INSTALL, None) is None


def test_workstation_password_uploaded_only_when_it_differs():
    assert database.password_action(CONVERGED, "server-side-password") is None
    assert database.password_action(CONVERGED, "a-new-password-from-env") == "upload"
    assert database.password_action(FRESH, "a-new-password-from-env") == "upload"


def test_database_ok_needs_role_db_owner_and_login():
    assert database.database_ok(CONVERGED, "mmuser")
    assert not database.database_ok(CONVERGED, "otheruser")
    for broken in ({"login_ok": False}, {"role_exists": False}, {"db_exists": False}, {"db_owner": "postgres"}):
        state = copy.deepcopy(CONVERGED)
        state["db"].update(broken)
        assert not database.database_ok(state, "mmuser")
    assert not database.database_ok(FRESH, "mmuser")


@pytest.mark.parametrize("change,reason", [
    ({}, None),
    ({"service": {"enabled": "enabled", "active": "failed", "need_reload": False}}, "it is failed"),
    ({"health": {"ok": False, "error": "HTTP 500, status UNHEALTHY", "version": "11.7.6"}}, "unhealthy"),
    ({"health": {"ok": True, "error": None, "version": "11.7.5"}}, "it runs 11.7.5, not 11.7.6"),
])
def test_restart_reason(change, reason):
    state = {**CONVERGED, **change}
    got = service.restart_reason(state, "11.7.6", changed=False)
    assert got == reason if reason is None else reason in got
    assert service.restart_reason(CONVERGED, "11.7.6", changed=True) is not None


def test_release_in_use_only_for_managed_link():
    assert service.release_in_use(CONVERGED) == "11.7.6"
    assert service.release_in_use(HAND_INSTALL) is None
    assert service.release_in_use(FRESH) is None


def test_versions_to_fetch_adoption_keeps_its_version_first():
    from tasks.versions import Decision

    same = Decision("11.7.6", "11.7.6", "11.7.6", "up to date")
    assert release.versions_to_fetch(CONVERGED, same) == ["11.7.6"]
    assert release.versions_to_fetch(HAND_INSTALL, same) == ["11.7.6"]
    newer = Decision("11.7.7", "11.7.7", "11.7.7", "upgrade 11.7.6 -> 11.7.7")
    assert release.versions_to_fetch(HAND_INSTALL, newer) == ["11.7.6", "11.7.7"]
    assert release.installed_version(HAND_INSTALL) == "11.7.6"
    assert release.installed_version(FRESH) is None


def test_fetch_spec_uses_settings_only():
    spec = release.fetch_spec(S, "11.7.6")
    assert spec["url"] == "https://releases.mattermost.com/11.7.6/mattermost-11.7.6-linux-amd64.tar.gz"
    assert spec["sig_url"] == spec["url"] + ".sig"
    assert spec["checksum_url"] is None and spec["sha256"] is None
    assert spec["fingerprint"] == "A1B31D46F0F3A10B02CF2D44F8F2C31744774B28"
    assert spec["links"]["config"] == "/var/lib/mattermost/config"
    pinned = load_settings({**DEFAULTS, "mattermost_release_sha256": {"11.7.6": "ab" * 32}}, "h", environ={})
    assert release.fetch_spec(pinned, "11.7.6")["sha256"] == "ab" * 32


def test_adoption_checks():
    facts = HAND_INSTALL["install"]["adoption"]
    assert adopt.adoption_pending(HAND_INSTALL) and not adopt.adoption_pending(CONVERGED)
    adopt.check_adoptable(S, facts)
    for change, message in [
        ({"config": None}, "without config/config.json"),
        ({"datasource": None}, "no DataSource this deploy can read"),
        ({"datasource": {**facts["datasource"], "host": "db.internal"}}, "database on db.internal"),
        ({"datasource": {**facts["datasource"], "user": "mattermost"}}, "postgresql_db_user = 'mattermost'"),
        ({"driver": "amazons3", "s3": {"Bucket": "chat", "Endpoint": "s3.example.org"}},
         "keeps its files in the bucket 'chat'"),
        ({"driver": "azure"}, "driver 'azure'"),
    ]:
        with pytest.raises(DeployError, match=message):
            adopt.check_adoptable(S, {**facts, **change})
    # An old install on MySQL/MariaDB is adopted as it is (any user and database name, local or
    # not): its DataSource stays until `make db-migrate`.
    adopt.check_adoptable(S, {**facts, "engine": "mysql", "datasource": {
        "user": "mm", "host": "db.internal", "port": 3306, "socket": None, "database": "chat", "params": "",
        "net": "tcp"}})


def test_mysql_servers_get_no_upgrade_and_a_new_postgresql_password():
    on_mysql = {**HAND_INSTALL, "install": {**HAND_INSTALL["install"], "version": "5.39.0", "adoption": {
        **HAND_INSTALL["install"]["adoption"], "engine": "mysql"}},
        "database_engine": {"engine": "mysql", "datasource": None}}
    # the hand install's password is MySQL's: PostgreSQL gets its own
    assert database.password_action(on_mysql, None) == "generate"
    assert database.password_action(HAND_INSTALL, None) is None

def test_folders_differ_on_owner_mode_or_type():
    ok = {"type": "dir", "owner": "mattermost", "group": "mattermost", "mode": 0o750}
    assert not base.folder_differs(ok, "mattermost", "mattermost", 0o750)
    assert base.folder_differs(None, "mattermost", "mattermost", 0o750)
    assert base.folder_differs({**ok, "mode": 0o755}, "mattermost", "mattermost", 0o750)
    assert base.folder_differs({**ok, "owner": "root"}, "mattermost", "mattermost", 0o750)
    assert base.folder_differs({**ok, "type": "link"}, "mattermost", "mattermost", 0o750)
    paths = [w[0] for w in base.wanted_folders(S)]
    assert all(p in managed_paths(S) for p in paths), "every folder must be in the state query"


def test_owned_config_keys():
    owned = desired_config(S)
    assert owned["ServiceSettings.ListenAddress"] == "127.0.0.1:8065"
    assert owned["ServiceSettings.SiteURL"] == "https://chat.example.org"
    assert owned["LogSettings.EnableDiagnostics"] is False
    assert owned["ServiceSettings.LocalModeSocketLocation"].startswith("/run/mattermost/")
    assert "$datasource" in owned["SqlSettings.DataSource"]
    custom = load_settings({**DEFAULTS, "mattermost_config": {"TeamSettings.SiteName": "Acme"}}, "h", environ={})
    assert desired_config(custom)["TeamSettings.SiteName"] == "Acme"
