"""Where the deploy goes.

Production: edit `mattermost_servers` - the server's name as you reach it over SSH, and
`ssh_user` (root, or a sudo user with `"_sudo": True`). Host data here overrides the
defaults in group_data/all.py.

The built-in local test server (a Debian 12 container, see tests/testhost.py) is chosen
without editing this file: `MMDEPLOY_TARGET=<name>` (set by `make demo` and the tests)
reads .local/hosts/<name>.json, which points at the stand-in upstream; `MMDEPLOY_TARGET=db,app`
takes several (a database server and its Mattermost server).
"""

import json
import os
from pathlib import Path

target = os.environ.get("MMDEPLOY_TARGET")

if not target:
    mattermost_servers = [
        ("chat.example.org", {"ssh_user": "root"}),
    ]
else:
    # One name, or several separated by commas (a database server and its Mattermost server).
    mattermost_servers = []
    for _name in target.split(","):
        _file = Path(__file__).parent / ".local" / "hosts" / f"{_name}.json"
        if not _file.exists():
            raise SystemExit(f"No local test server {_name!r} ({_file} is missing): start it with "
                             f"`make demo` or `.venv/bin/python -m tests.testhost up {_name}`")
        _host = json.loads(_file.read_text())
        mattermost_servers.append((f"local-{_name}", {
            "ssh_hostname": "127.0.0.1",
            "ssh_port": _host["ssh_port"],
            "ssh_user": "root",
            "ssh_key": _host["ssh_key"],
            # The test server's host keys, pinned when it was started (tests/testhost.py).
            "ssh_known_hosts_file": _host.get("known_hosts") or "/dev/null",
            "ssh_strict_host_key_checking": "yes" if _host.get("known_hosts") else "no",
            **_host["data"],
        }))
