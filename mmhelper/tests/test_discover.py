"""The discovery's parsing: unit files as systemd reads them, ExecStart forms, the config
flag and MM_CONFIG as Mattermost reads them, package, container, socket and cgroup listings."""

import json

import pytest

OFFICIAL = """[Unit]
Description=Mattermost
After=network.target

[Service]
Type=notify
ExecStart=/opt/mattermost/bin/mattermost
WorkingDirectory=/opt/mattermost
User=mattermost

[Install]
WantedBy=multi-user.target
"""


def test_unit_file_keys_with_continuations_and_comments(mmhelper):
    text = """[Service]
# ExecStart=/nowhere/bin/mattermost
ExecStart=/srv/mattermost/bin/mattermost \\
    --config /etc/mattermost/config.json
Environment="MM_LOGSETTINGS_CONSOLELEVEL=ERROR" TZ=UTC
User=mattermost
"""
    svc = mmhelper.service_settings([text])
    assert svc["exec_start"] == ["/srv/mattermost/bin/mattermost  --config /etc/mattermost/config.json"]
    assert svc["environment"] == {"MM_LOGSETTINGS_CONSOLELEVEL": "ERROR", "TZ": "UTC"}
    assert svc["user"] == "mattermost" and svc["working_directory"] is None


def test_dropins_apply_in_order_and_an_empty_execstart_resets(mmhelper):
    dropin = "[Service]\nExecStart=\nExecStart=/srv/chat/bin/mattermost -c /srv/chat/cfg.json\nWorkingDirectory=/srv/chat\n"
    env = "[Service]\nEnvironment=MM_CONFIG=/etc/mm.json\n"
    svc = mmhelper.service_settings([OFFICIAL, dropin, env])
    assert svc["exec_start"] == ["/srv/chat/bin/mattermost -c /srv/chat/cfg.json"]
    assert svc["working_directory"] == "/srv/chat" and svc["environment"] == {"MM_CONFIG": "/etc/mm.json"}
    # Keys outside [Service] do not count
    assert mmhelper.service_settings(["[Unit]\nExecStart=/x/bin/mattermost\n"])["exec_start"] == []


@pytest.mark.parametrize("line,expected", [
    ("/opt/mattermost/bin/mattermost", ("/opt/mattermost/bin/mattermost", [])),
    ("-/opt/mattermost/bin/mattermost server", ("/opt/mattermost/bin/mattermost", ["server"])),
    ("+!/srv/mm/bin/mattermost -c x.json", ("/srv/mm/bin/mattermost", ["-c", "x.json"])),
    ("@/srv/mm/bin/mattermost mattermost-chat --config '/etc/m m.json'",
     ("/srv/mm/bin/mattermost", ["--config", "/etc/m m.json"])),
])
def test_execstart_prefixes_and_quoting(mmhelper, line, expected):
    assert mmhelper.exec_argv(line) == expected


@pytest.mark.parametrize("line,cwd,expected", [
    ("/srv/mattermost/bin/mattermost", None, ("/srv/mattermost/bin/mattermost", [], None)),
    ("bin/mattermost -c cfg.json", "/srv/mm", ("/srv/mm/bin/mattermost", ["-c", "cfg.json"], "/srv/mm")),
    ("/usr/bin/env MM_CONFIG=/etc/m.json /opt/mm/bin/mattermost", None, ("/opt/mm/bin/mattermost", [], None)),
    ("/bin/sh -c 'cd /srv/mm && exec ./bin/mattermost --config=/etc/m.json'", None,
     ("/srv/mm/bin/mattermost", ["--config=/etc/m.json"], "/srv/mm")),
    ("/opt/mattermost/bin/platform", None, ("/opt/mattermost/bin/platform", [], None)),  # Mattermost 3.x
    ("/usr/sbin/nginx -g 'daemon off;'", None, None),
    ("/opt/mattermost/bin/mmctl --local system status", None, None),
])
def test_a_command_that_runs_the_server(mmhelper, line, cwd, expected):
    assert mmhelper.server_command(*mmhelper.exec_argv(line), working_directory=cwd) == expected


@pytest.mark.parametrize("args,env,dsn", [
    ([], {}, "config.json"),
    (["-c", "/etc/a.json"], {"MM_CONFIG": "/etc/b.json"}, "/etc/a.json"),  # the flag wins
    (["--config", "/etc/a.json"], {}, "/etc/a.json"),
    (["--config=/etc/a.json"], {}, "/etc/a.json"),
    (["-c=/etc/a.json"], {}, "/etc/a.json"),
    (["-c/etc/a.json"], {}, "/etc/a.json"),
    ([], {"MM_CONFIG": "postgres://mmuser:secret@localhost/mattermost?sslmode=disable"},
     "postgres://mmuser:secret@localhost/mattermost?sslmode=disable"),
])
def test_config_flag_then_mm_config_then_default(mmhelper, args, env, dsn):
    assert mmhelper.config_dsn(args, env) == dsn


def test_config_in_the_database_and_its_password_hidden(mmhelper):
    assert mmhelper.config_store_kind("postgres://u:p@h/db") == "database"
    assert mmhelper.config_store_kind("mysql://u:p@tcp(h:3306)/db") == "database"
    assert mmhelper.config_store_kind("/etc/mattermost/config.json") == "file"
    assert mmhelper.redact_dsn("postgres://mmuser:s3cr3t@localhost:5432/mm?x=1") == "postgres://mmuser:***@localhost:5432/mm?x=1"
    assert mmhelper.redact_dsn("mysql://mmuser:p@ss@tcp(localhost:3306)/mm") == "mysql://mmuser:***@tcp(localhost:3306)/mm"


def test_relative_config_resolved_as_mattermost_does(mmhelper):
    files = {"/opt/mattermost/config/config.json", "/srv/mm/config/config.json", "/srv/mm/config/other.json"}
    dirs = {"/opt/mattermost/config", "/srv/mm/config", "/srv/mm", "/opt/mattermost", "/"}

    def exists(path, kind):
        return path in files if kind == "file" else path in dirs if kind == "dir" else path in files | dirs

    resolve = mmhelper.resolve_config_file
    # the official unit: WorkingDirectory=/opt/mattermost
    assert resolve("config.json", "/opt/mattermost", "/opt/mattermost/bin/mattermost", exists) == \
        "/opt/mattermost/config/config.json"
    # no WorkingDirectory (runs in /): found next to the binary
    assert resolve("config.json", None, "/srv/mm/bin/mattermost", exists) == "/srv/mm/config/config.json"
    assert resolve("other.json", "/", "/srv/mm/bin/mattermost", exists) == "/srv/mm/config/other.json"
    # not there yet: in the config folder found
    assert resolve("new.json", "/srv/mm", "/srv/mm/bin/mattermost", exists) == "/srv/mm/config/new.json"
    assert resolve("/etc/mattermost/config.json", "/", "/srv/mm/bin/mattermost", exists) == "/etc/mattermost/config.json"


def test_environment_file(mmhelper):
    text = '# comment\nMM_CONFIG="/etc/mattermost/config.json"\nexport TZ=UTC\n\nBROKEN\n'
    assert mmhelper.environment_file(text) == {"MM_CONFIG": "/etc/mattermost/config.json", "TZ": "UTC"}


def test_install_folder_of_a_binary(mmhelper):
    assert mmhelper.install_dir_of("/srv/mattermost/bin/mattermost") == "/srv/mattermost"
    assert mmhelper.install_dir_of("/usr/local/mattermost") == "/usr/local"


def test_packages_and_gitlab(mmhelper):
    listing = "mattermost installed 10.5.2-0\nmattermost-omnibus config-files 10.5.2-0\ngitlab-ce installed 17.11.1-ce.0\n"
    assert mmhelper.installed_packages(listing) == {"mattermost": "10.5.2-0", "gitlab-ce": "17.11.1-ce.0"}
    assert mmhelper.gitlab_runs_mattermost("external_url 'https://git.example.org'\n"
                                           "mattermost_external_url 'https://chat.example.org'\n")
    assert mmhelper.gitlab_runs_mattermost("mattermost['enable'] = true\n")
    assert not mmhelper.gitlab_runs_mattermost("# mattermost_external_url 'https://chat.example.org'\n")


def test_containers_from_docker_and_podman(mmhelper):
    docker = "\n".join(json.dumps(row) for row in [
        {"Names": "chat", "Image": "mattermost/mattermost-team-edition:9.11", "State": "running",
         "Ports": "0.0.0.0:8065->8065/tcp"},
        {"Names": "chat-db", "Image": "postgres:15-alpine", "State": "running", "Ports": "5432/tcp"},
        {"Names": "old", "Image": "registry.example.org:5000/mattermost/mattermost-enterprise-edition@sha256:ab",
         "State": "exited", "Ports": ""},
        {"Names": "web", "Image": "nginx:stable", "State": "running", "Ports": ""},
    ])
    rows = mmhelper.container_rows(docker)
    assert [(r["name"], r["state"]) for r in rows] == [("chat", "running"), ("old", "exited")]
    podman = json.dumps([{"Names": ["mm"], "Image": "docker.io/mattermost/mattermost-team-edition:latest",
                          "State": "running", "Ports": [{"host_port": 8065, "container_port": 8065}]}])
    assert mmhelper.container_rows(podman) == [{"name": "mm", "image": "docker.io/mattermost/mattermost-team-edition:latest",
                                                "state": "running", "ports": "8065->8065"}]
    assert not mmhelper.mattermost_image("mattermost/mattermost-push-proxy:6")


def test_listening_sockets_and_their_unit(mmhelper):
    tcp = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F81 00000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 43210 1 0 100 0 0 10 0
   1: 0100007F:1F81 0100007F:D2A4 01 00000000:00000000 00:00000000 00000000   999        0 43999 1 0 20 4 30 10 -1
   2: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 11111 1 0 100 0 0 10 0
"""
    assert mmhelper.listening_inodes(tcp, 8065) == {"43210"}
    assert mmhelper.listening_inodes(tcp, 22) == {"11111"}
    assert mmhelper.unit_of_cgroup("0::/system.slice/mattermost-server.service\n") == "mattermost-server.service"
    assert mmhelper.unit_of_cgroup("0::/user.slice/user-0.slice/session-3.scope\n") == "session-3.scope"
    assert mmhelper.unit_of_cgroup("0::/\n") is None
    assert mmhelper.listen_port(":8065") == 8065 and mmhelper.listen_port("[::]:9000") == 9000
    assert mmhelper.listen_port("") is None


def test_the_last_error_of_a_unit_journal(mmhelper):
    lines = [
        "Starting mattermost-server.service - Mattermost...",
        '{"level":"info","ts":1.7e9,"caller":"app/server.go:1","msg":"Starting Server..."}',
        '{"level":"error","ts":1.7e9,"caller":"commands/server.go:1","msg":"Error starting server",'
        '"error":"listen tcp :8065: bind: address already in use"}',
        "mattermost-server.service: Main process exited, code=exited, status=1/FAILURE",
        "mattermost-server.service: Failed with result 'exit-code'.",
        "Failed to start mattermost-server.service - Mattermost.",
    ]
    assert mmhelper.last_error(lines) == "Error starting server: listen tcp :8065: bind: address already in use"
    assert mmhelper.last_error(lines[:1] + lines[3:]) == \
        "mattermost-server.service: Main process exited, code=exited, status=1/FAILURE"
    assert mmhelper.last_error([]) == "its journal says nothing more"
