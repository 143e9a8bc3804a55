"""A Mattermost server installed BY HAND, following Mattermost's tarball install guide
step by step - the production server's situation before this deploy, and the baseline
of the upgrade benchmark. Test-only: it drives a test container with `docker exec`."""

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
json.dump(c, open(p, 'w'), indent=4)
EOF""")
    sh(target, f"cat > /etc/systemd/system/mattermost.service <<'EOF'\n{OFFICIAL_UNIT}EOF\n"
               "systemctl daemon-reload && systemctl enable --now mattermost")
    out = sh(target, "curl -sf http://127.0.0.1:8065/api/v4/system/ping")
    if '"OK"' not in out:
        raise RuntimeError(f"the hand install does not answer: {out}")


def leave_user_data(target: str, uploaded: str, password: str) -> None:
    """What users and the admin left behind: an uploaded file, a plugin, a post."""
    sh(target, f"""set -e
        install -d -o mattermost -g mattermost $(dirname {uploaded})
        echo 'quarterly report, uploaded before adoption' > {uploaded}
        install -d /opt/mattermost/plugins/com.example.demo /opt/mattermost/client/plugins/com.example.demo
        echo '{{"id": "com.example.demo", "version": "1.2.3"}}' > /opt/mattermost/plugins/com.example.demo/plugin.json
        echo 'console.log(1)' > /opt/mattermost/client/plugins/com.example.demo/main.js
        chown -R mattermost:mattermost /opt/mattermost/plugins /opt/mattermost/client/plugins""")
    sh(target, f"PGPASSWORD={password} psql -X -q -h localhost -U mmuser -d mattermost "
               "-c \"INSERT INTO posts (id, createat, userid, channelid, message) "
               "VALUES ('post1', 1, 'u1', 'c1', 'written before adoption')\"")


