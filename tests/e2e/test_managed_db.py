"""A managed PostgreSQL: the database is a DSN, the provider's CA file and a role without
superuser rights - nothing the deploy logs in to over SSH. Played by a Debian 13 container
that the test sets up as a provider would (its own CA, TLS only, scram-sha-256, the role
with CREATEDB and the database made beforehand); the Mattermost server (mattermost_role
"app", db_ca_file = the provider's CA) converges against it, says what it cannot do there,
serves, backs up and restores through it; a wrong CA is refused before any change."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests import testhost
from tests.e2e import chat
from tests.e2e.conftest import KEEP, deploy, https_get, planned_changes, server_fingerprint, sh

MANAGED, APP = "e2e-managedpg", "e2e-mgapp"
PORT = 24462
PASSWORD = "managed-db-password-for-tests-53"  # the test database's password, test only
PROVIDER = testhost.LOCAL / "provider-ca-e2e"
VERSION = None  # the default policy (esr)


def env() -> dict:
    return {"MATTERMOST_DB_PASSWORD": PASSWORD}


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def provider_ca(name: str) -> None:
    """The provider's own CA and the server certificate it publishes for its database host."""
    shutil.rmtree(PROVIDER, ignore_errors=True)
    PROVIDER.mkdir(parents=True)
    ca, key = PROVIDER / "ca.crt", PROVIDER / "ca.key"
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key),
            "-out", str(ca), "-days", "30", "-subj", "/CN=Managed PostgreSQL provider CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
    (PROVIDER / "ext").write_text(f"subjectAltName=DNS:{name}\nextendedKeyUsage=serverAuth\n")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
            str(PROVIDER / "server.key"), "-out", str(PROVIDER / "server.csr"), "-subj", f"/CN={name}")
    openssl("x509", "-req", "-in", str(PROVIDER / "server.csr"), "-CA", str(ca), "-CAkey", str(key),
            "-CAcreateserial", "-out", str(PROVIDER / "server.crt"), "-days", "30", "-extfile", str(PROVIDER / "ext"))
    # another CA, to show that a certificate from the wrong one is refused
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
            str(PROVIDER / "other.key"), "-out", str(PROVIDER / "other-ca.crt"), "-days", "30", "-subj", "/CN=Other")


def as_provider(command: str) -> str:
    code, out = testhost.exec_on(MANAGED, command)
    assert code == 0, f"{command!r}: {out}"
    return out


def provision_managed(name: str) -> None:
    """What the provider does: PostgreSQL with TLS and passwords only, a role and its database."""
    as_provider("DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null")
    major = as_provider("ls /etc/postgresql").split()[0]
    conf = f"/etc/postgresql/{major}/main"
    for part in ("server.crt", "server.key"):
        testhost._put_file(testhost.client().containers.get(testhost.container_name(MANAGED)),
                           f"{conf}/{part}", (PROVIDER / part).read_bytes(), 0o600)
    as_provider(f"chown postgres:postgres {conf}/server.crt {conf}/server.key")
    as_provider(f"printf \"listen_addresses = '*'\\nssl = on\\nssl_cert_file = '{conf}/server.crt'\\n"
                f"ssl_key_file = '{conf}/server.key'\\n\" > {conf}/conf.d/provider.conf")
    as_provider(f"printf 'local all postgres peer\\nhostssl all all 0.0.0.0/0 scram-sha-256\\n' > {conf}/pg_hba.conf")
    as_provider("systemctl restart postgresql")
    as_provider(f"runuser -u postgres -- psql -Xq -c \"CREATE ROLE mmuser LOGIN CREATEDB PASSWORD '{PASSWORD}'\" "
                "-c 'CREATE DATABASE mattermost OWNER mmuser'")


@pytest.fixture(scope="module")
def servers():
    for n in (MANAGED, APP):
        testhost.stop_server(n)
    name = testhost.container_name(MANAGED)
    provider_ca(name)
    testhost.start_server(MANAGED, ssh_port=22339)
    provision_managed(name)
    testhost.start_server(APP, ssh_port=22340, https_port=PORT, extra_data={
        "mattermost_role": "app", "db_host": name, "db_ca_file": str(PROVIDER / "ca.crt")})
    yield name
    if not KEEP:
        for n in (MANAGED, APP):
            testhost.stop_server(n)


def test_mattermost_runs_on_the_managed_database(servers):
    converged = deploy(APP, env=env())
    assert converged.ok, converged.output[-5000:]
    assert f"the database at {servers} is not run by this deploy" in converged.output
    assert PASSWORD not in converged.output
    assert json.loads(https_get(PORT)[2])["status"] == "OK"
    rows = as_provider("runuser -u postgres -- psql -XAt -c \"SELECT DISTINCT s.ssl FROM pg_stat_activity a JOIN "
                       "pg_stat_ssl s USING (pid) WHERE a.usename = 'mmuser'\"")
    assert rows.split() == ["t"]
    assert planned_changes(APP, env=env()) == []


def test_a_wrong_ca_is_refused_before_any_change(servers):
    """On a converged server: the login is tried with the new CA in the state read, before any change."""
    before = server_fingerprint(APP)
    refused = deploy(APP, "--data", f"db_ca_file={PROVIDER / 'other-ca.crt'}", env=env())
    assert not refused.ok
    assert "cannot log in to mattermost at" in refused.output and "certificate verify failed" in refused.output, \
        refused.output[-3000:]
    assert "nothing was changed" in refused.output and PASSWORD not in refused.output
    assert server_fingerprint(APP) == before
    assert "BEGIN CERTIFICATE" in sh(APP, "cat /etc/mattermost/db-ca.crt")


def test_backup_and_restore_without_a_superuser(servers):
    chat.mmctl(APP, "team create --name acme --display-name Acme")
    chat.create_user(APP, "olga", team="acme")
    olga = chat.login(PORT, "olga")
    channel = olga.channels.get_channel_by_name_and_team_name("acme", "town-square")
    kept = olga.posts.create_post({"channel_id": channel["id"], "message": "kept by the backup"})["id"]
    backup = deploy(APP, "verbs/backup.py", env=env())
    assert backup.ok, backup.output[-3000:]
    gone = olga.posts.create_post({"channel_id": channel["id"], "message": "after the backup"})["id"]
    restored = deploy(APP, "verbs/restore.py", "--data", "restore_backup=latest", env=env())
    assert restored.ok, restored.output[-3000:]
    olga = chat.login(PORT, "olga")
    assert olga.posts.get_post(kept)["message"] == "kept by the backup"
    count = as_provider(f"runuser -u postgres -- psql -XAt -d mattermost -c \"SELECT count(*) FROM posts WHERE id = "
                        f"'{gone}'\"").strip()
    assert count == "0"
    owners = as_provider("runuser -u postgres -- psql -XAt -c \"SELECT datname || ':' || pg_get_userbyid(datdba) FROM "
                         "pg_database WHERE datname LIKE 'mattermost%'\"").split()
    assert sorted(owners) == ["mattermost:mmuser", "mattermost_before_restore:mmuser"], owners
