"""What the deploy does with the Mattermost a server already has: adopt, leave alone, install
fresh, or refuse by name - decided from the state read's discovery alone."""

import copy

import pytest
from pyinfra.api.exceptions import DeployError

from tasks import adopt
from tasks.settings import load_settings
from tests.unit.test_decisions import CONVERGED, DEFAULTS, FRESH

S = load_settings(DEFAULTS, "chat.example.org", environ={})
NOTHING = {"units": [], "listeners": {"8065": []}, "packages": [], "gitlab": None, "containers": None,
           "databases": [], "databases_not_read": []}
HAND_UNIT = {"name": "mattermost-server.service", "fragment": "/etc/systemd/system/mattermost-server.service",
             "dropins": [], "binary": "/srv/mattermost/bin/mattermost", "binary_exists": True, "args": [],
             "working_directory": "/srv/mattermost", "user": "mattermost", "install_dir": "/srv/mattermost",
             "enabled": "enabled", "active": "active", "main_pid": 4242,
             "config": {"kind": "file", "path": "/srv/mattermost/config/config.json", "exists": True,
                        "given": "config.json"}}
FACTS = {"config": "/srv/mattermost/config/config.json", "engine": "mysql",
         "datasource": {"user": "mmuser", "database": "mattermost", "host": "localhost", "port": 3306, "net": "tcp",
                        "params": "charset=utf8mb4,utf8", "socket": None},
         "has_password": True, "files_dir": "./data/", "data_dir": "/srv/mattermost/data", "driver": "local",
         "port": 8065}
HAND = {"path": "/srv/mattermost", "units": ["mattermost-server.service"], "run_dir": "/srv/mattermost",
        "version": "5.39.0", "adoption": FACTS}


def state(kind="missing", units=(), listeners=(), hand=(), **found):
    now = copy.deepcopy(FRESH if kind != "link" else CONVERGED)
    existing = {**copy.deepcopy(NOTHING), "units": list(units), "listeners": {"8065": list(listeners)}, **found}
    install = {"kind": kind, "existing": existing, "hand_installs": list(hand)}
    if kind == "link":
        install.update(CONVERGED["install"])
    if kind == "dir":
        install.update(hand[0])
    now["install"] = install
    return now


def refused(now, settings=S) -> str:
    with pytest.raises(DeployError) as e:
        adopt.verdict(settings, now)
    assert "(nothing was changed)" in str(e.value)
    return str(e.value)


def test_a_fresh_install_says_what_was_looked_at():
    v = adopt.verdict(S, state())
    assert v.action == "fresh"
    assert v.says == "No Mattermost on this server: install it fresh"
    assert v.details == ("looked for Mattermost: no unit, no process on 8065, no package, no container (no Docker "
                         "or Podman), no Mattermost database")
    v = adopt.verdict(S, state(containers={"tool": "docker", "error": None, "found": []}))
    assert "no package, no container, no Mattermost database" in v.details


def test_a_hand_install_anywhere_is_adopted_with_its_unit_and_config():
    listener = {"pid": 4242, "exe": "/srv/mattermost/bin/mattermost", "cmdline": "/srv/mattermost/bin/mattermost",
                "unit": "mattermost-server.service"}
    v = adopt.verdict(S, state("dir", [HAND_UNIT], [listener], [HAND]))
    assert v.action == "adopt"
    assert v.says == "Adopt the hand-installed Mattermost 5.39.0 in /srv/mattermost"
    assert v.details == ("the hand install in /srv/mattermost: unit mattermost-server.service; config "
                         "/srv/mattermost/config/config.json; MySQL/MariaDB database mattermost")


def test_the_managed_server_is_left_alone_with_its_old_unit_disabled():
    ours = {"pid": 7, "exe": "/opt/mattermost-releases/11.7.6/bin/mattermost", "cmdline": "", "unit": "mattermost.service"}
    old = {**HAND_UNIT, "binary": "/opt/mattermost/bin/mattermost", "install_dir": "/opt/mattermost",
           "enabled": "disabled", "active": "inactive"}
    assert adopt.verdict(S, state("link", [old], [ours])).action == "managed"
    # ... but not while the old unit could start it a second time
    old["enabled"] = "enabled"
    assert "also runs the managed Mattermost in /opt/mattermost" in refused(state("link", [old], [ours]))
    assert "systemctl disable --now mattermost-server.service" in refused(state("link", [old], [ours]))


@pytest.mark.parametrize("found,words", [
    ({"packages": [{"name": "mattermost", "version": "10.5.2-0"}]},
     "Mattermost's Debian package mattermost 10.5.2-0 is installed"),
    ({"gitlab": {"package": "gitlab-ce", "version": "17.11.1-ce.0", "enabled": True, "data": True}},
     "GitLab Omnibus (gitlab-ce 17.11.1-ce.0) runs its bundled Mattermost"),
    ({"containers": {"tool": "docker", "error": None, "found": [
        {"name": "chat", "image": "mattermost/mattermost-team-edition:9.11", "state": "running",
         "ports": "0.0.0.0:8065->8065/tcp"}]}},
     "a Docker container runs Mattermost: chat (image mattermost/mattermost-team-edition:9.11, running"),
    ({"databases": [{"engine": "mysql", "name": "mattermost", "posts": 19}]},
     "a Mattermost database 'mattermost' in MariaDB/MySQL with 19 posts and no install that uses it"),
])
def test_what_cannot_be_adopted_is_refused_by_name(found, words):
    assert words in refused(state(**found))


def test_a_process_on_the_port_is_refused_by_name():
    stranger = {"pid": 99, "exe": "/usr/bin/python3.11", "cmdline": "python3 -m http.server 8065", "unit": "fake.service"}
    message = refused(state(listeners=[stranger]))
    assert "port 8065 is held by pid 99 (python3 -m http.server 8065, unit fake.service), which is not a Mattermost" \
        in message
    by_hand = {"pid": 12, "exe": "/home/admin/mm/bin/mattermost", "cmdline": "./bin/mattermost", "unit": "session-2.scope"}
    assert "a Mattermost runs outside systemd on port 8065" in refused(state(listeners=[by_hand]))
    assert "mattermost_adopt_path = '/home/admin/mm'" in refused(state(listeners=[by_hand]))


def test_two_installs_need_a_choice():
    other = {**HAND, "path": "/opt/mattermost", "units": ["mattermost.service"]}
    message = refused(state("several", [HAND_UNIT], [], [HAND, other]))
    assert "more than one Mattermost install is on this server: /srv/mattermost (Mattermost 5.39.0, " \
           "mattermost-server.service); /opt/mattermost" in message
    assert "set mattermost_adopt_path" in message


def test_config_in_the_database_is_refused_with_the_way():
    hand = {**HAND, "version": None, "adoption": {"config": None, "config_in_database": {
        "kind": "database", "engine": "postgres", "dsn": "postgres://mmuser:***@localhost/mattermost"}}}
    message = refused(state("dir", [HAND_UNIT], [], [hand]))
    assert "keeps its configuration in the database (MM_CONFIG=postgres://mmuser:***@localhost/mattermost)" in message
    assert "bin/mattermost config migrate" in message


def test_adopt_path_must_hold_an_install():
    settings = load_settings({**DEFAULTS, "mattermost_adopt_path": "/home/chat/mattermost/"}, "chat.example.org",
                             environ={})
    assert settings.adopt_path == "/home/chat/mattermost"
    assert "mattermost_adopt_path names /home/chat/mattermost, which holds no Mattermost install" in refused(
        state(), settings)
    with pytest.raises(Exception, match="mattermost_adopt_path must be an absolute path"):
        load_settings({**DEFAULTS, "mattermost_adopt_path": "srv/mm"}, "chat.example.org", environ={})


def test_a_database_on_another_server_is_not_a_reason_to_refuse():
    # a managed server's leftover MySQL database (after `make db-migrate`) is left alone
    leftover = {"databases": [{"engine": "mysql", "name": "mattermost", "posts": 19}]}
    ours = {"pid": 7, "exe": "/opt/mattermost-releases/11.7.6/bin/mattermost", "cmdline": "", "unit": "mattermost.service"}
    assert adopt.verdict(S, state("link", [], [ours], **leftover)).action == "managed"


@pytest.mark.parametrize("os_info,allow,refused,warned", [
    ({"id": "debian", "version_id": "13", "codename": "trixie"}, False, None, None),
    ({"id": "debian", "version_id": "11", "codename": "bullseye"}, False, None, None),
    ({"id": "debian", "version_id": "10", "codename": "buster"}, False, "upgrade it to Debian 11 by hand first", None),
    ({"id": "debian", "version_id": "9", "codename": "stretch"}, True, "older than this deploy supports", None),
    ({"id": "ubuntu", "version_id": "24.04", "codename": "noble"}, False, "set allow_untested_os = True", None),
    ({"id": "ubuntu", "version_id": "24.04", "codename": "noble"}, True, None, "ubuntu 24.04 is not tested"),
    ({"id": "debian", "version_id": "14", "codename": "forky"}, False, "Debian 14 is not tested", None),
    ({"id": "alpine", "version_id": "3.20"}, True, "supports Debian", None),
])
def test_the_systems_the_deploy_meets(os_info, allow, refused, warned):
    from tasks.os_support import support

    why, warning = support(os_info, allow)
    assert (why is None) == (refused is None) and (refused is None or refused in why), why
    assert (warning is None) == (warned is None) and (warned is None or warned in warning), warning
