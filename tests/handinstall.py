"""A Mattermost server installed BY HAND, following Mattermost's tarball install guide
step by step - the production server's situation before this deploy, and the baseline
of the upgrade benchmark. The release is the real one the stand-in upstream serves (real
Mattermost built from source, in the real tarball layout). Test-only: it drives a test
container with `docker exec`."""

import json

from tests import testhost
from tests.standin.build import UPSTREAM_HOST

OFFICIAL_UNIT = """[Unit]
Description=Mattermost
After=network.target
After=postgresql.service
BindsTo=postgresql.service

[Service]
Type=notify
ExecStart=/opt/mattermost/bin/mattermost
TimeoutStartSec=3600
KillMode=mixed
Restart=always
RestartSec=10
WorkingDirectory=/opt/mattermost
User=mattermost
Group=mattermost
LimitNOFILE=49152

[Install]
WantedBy=multi-user.target
"""


def sh(target: str, command: str) -> str:
    code, out = testhost.exec_on(target, command)
    if code != 0:
        raise RuntimeError(f"{command!r} failed on {target} ({code}): {out}")
    return out


def install(target: str, version: str, site_url: str, password: str) -> None:
    """The steps of Mattermost's tarball install guide, as an admin typed them."""
    tarball = f"{UPSTREAM_HOST}/releases/{version}/mattermost-{version}-linux-amd64.tar.gz"
    sh(target, "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null")
    sh(target, f"""runuser -u postgres -- psql -X -q \
        -c "CREATE DATABASE mattermost;" \
        -c "CREATE USER mmuser WITH PASSWORD '{password}';" \
        -c "GRANT ALL PRIVILEGES ON DATABASE mattermost TO mmuser;" \
        -c "ALTER DATABASE mattermost OWNER TO mmuser;" """)
    sh(target, f"""set -e
        curl -sfo /tmp/mm.tar.gz {tarball}
        tar -xzf /tmp/mm.tar.gz -C /opt
        mkdir /opt/mattermost/data
        useradd --system --user-group mattermost
        chown -R mattermost:mattermost /opt/mattermost
        chmod -R g+w /opt/mattermost""")
    sh(target, f"""python3 - <<'EOF'
import json
p = '/opt/mattermost/config/config.json'
c = json.load(open(p))
c['ServiceSettings']['SiteURL'] = '{site_url}'
c['SqlSettings']['DataSource'] = 'postgres://mmuser:{password}@localhost:5432/mattermost?sslmode=disable&connect_timeout=10'
c['TeamSettings']['SiteName'] = 'Hand Installed Chat'
c['ServiceSettings']['EnableLocalMode'] = True  # the admin uses mmctl --local, as Mattermost's docs show
c['PluginSettings']['EnableUploads'] = True  # and installs a plugin of their own
json.dump(c, open(p, 'w'), indent=4)
EOF""")
    sh(target, f"cat > /etc/systemd/system/mattermost.service <<'EOF'\n{OFFICIAL_UNIT}EOF\n"
               "systemctl daemon-reload && systemctl enable --now mattermost")
    out = sh(target, "curl -sf http://127.0.0.1:8065/api/v4/system/ping")
    if '"OK"' not in out:
        raise RuntimeError(f"the hand install does not answer: {out}")


SEED = """
import json, sys, urllib.request
base = "http://127.0.0.1:8065/api/v4"
def call(method, path, body=None, token=None, raw=None, ctype="application/json"):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(base + path, data=data, method=method, headers={"Content-Type": ctype})
    if token:
        req.add_header("Authorization", "Bearer " + token)
    with urllib.request.urlopen(req) as r:
        return r.headers.get("Token"), json.loads(r.read() or b"null")
token, me = call("POST", "/users/login", {"login_id": "alice", "password": sys.argv[1]})
_, channel = call("GET", "/teams/name/acme/channels/name/town-square", token=token)
boundary = "seedboundary"
body = (f"--{boundary}\\r\\nContent-Disposition: form-data; name=\\"files\\"; filename=\\"report.txt\\"\\r\\n"
        "Content-Type: text/plain\\r\\n\\r\\nquarterly report, uploaded before adoption\\n\\r\\n"
        f"--{boundary}--\\r\\n").encode()
_, files = call("POST", "/files?channel_id=" + channel["id"], token=token, raw=body,
                ctype="multipart/form-data; boundary=" + boundary)
_, post = call("POST", "/posts", {"channel_id": channel["id"], "message": "written before adoption",
                                  "file_ids": [files["file_infos"][0]["id"]]}, token=token)
print(json.dumps({"post_id": post["id"], "file_id": files["file_infos"][0]["id"]}))
"""


def leave_user_data(target: str, password: str) -> dict:
    """What users and the admin left behind, made through the real server: a team, a user,
    a post with an uploaded file (over the API on 127.0.0.1:8065, as a browser would), and a
    plugin folder. Returns the post and file ids."""
    mmctl = ("cd /opt/mattermost && MMCTL_LOCAL_SOCKET_PATH=/var/tmp/mattermost_local.socket "
             "runuser -u mattermost -- bin/mmctl --local")
    sh(target, f"{mmctl} team create --name acme --display-name Acme && "
               f"{mmctl} user create --username alice --email alice@example.org --password {password} && "
               f"{mmctl} team users add acme alice")
    ids = json.loads(sh(target, f"python3 - {password} <<'EOF'\n{SEED}\nEOF").strip().splitlines()[-1])
    # A web-app-only plugin, installed and enabled the way an admin does (mmctl plugin add).
    manifest = json.dumps({"id": "com.example.demo", "name": "Demo", "version": "1.2.3",
                           "webapp": {"bundle_path": "webapp/dist/main.js"}})
    sh(target, f"""set -e
        rm -rf /tmp/plugin && mkdir -p /tmp/plugin/com.example.demo/webapp/dist
        echo '{manifest}' > /tmp/plugin/com.example.demo/plugin.json
        echo 'console.log("demo plugin")' > /tmp/plugin/com.example.demo/webapp/dist/main.js
        tar -C /tmp/plugin -czf /tmp/demo-plugin.tar.gz com.example.demo && chmod 644 /tmp/demo-plugin.tar.gz
        {mmctl} plugin add /tmp/demo-plugin.tar.gz && {mmctl} plugin enable com.example.demo""")
    return ids
