"""Split roles: the settings' refusals, the pg_hba the database server gets, and the deploy's
own CA (real openssl: a certificate naming the server, verified against the CA)."""

from __future__ import annotations

import subprocess

import pytest

from tasks.db_tls import ensure_ca, server_certificate
from tasks.dbplace import place_settings

PW = "a-long-enough-password"


def settings(password=PW, **data):
    return place_settings(lambda key: data.get(key), password)


def test_one_server_is_the_default_and_refuses_split_settings():
    place, problems = settings()
    assert place.role == "all" and not place.remote and problems == []
    _, problems = settings(db_host="db.internal")
    assert problems and "mattermost_role" in problems[0]


def test_an_app_server_needs_the_host_and_the_password_from_the_workstation():
    place, problems = settings(mattermost_role="app", db_host="db.internal")
    assert problems == [] and place.remote and place.host == "db.internal" and place.ca_file.endswith("ca.crt")
    _, problems = settings(password=None, mattermost_role="app", db_host="db.internal")
    assert any("MATTERMOST_DB_PASSWORD" in p for p in problems)
    _, problems = settings(mattermost_role="app", db_host="https://db")
    assert any("db_host" in p for p in problems)
    _, problems = settings(mattermost_role="app", db_host="db", db_ca_file="/nonexistent/ca.pem")
    assert any("db_ca_file" in p for p in problems)


def test_a_database_server_needs_a_private_address_and_its_clients():
    place, problems = settings(mattermost_role="database", db_listen_address="10.0.0.5", db_clients=["10.0.0.4"])
    assert problems == [] and place.certificate_name == "10.0.0.5" and place.clients == ("10.0.0.4",)
    _, problems = settings(mattermost_role="database", db_listen_address="db.example.org", db_clients=["x y"])
    assert any("db_listen_address" in p for p in problems) and any("db_clients" in p for p in problems)
    _, problems = settings(mattermost_role="primary")
    assert problems and "mattermost_role" in problems[0]


def test_pg_hba_lets_the_clients_in_over_tls_only():
    from types import SimpleNamespace

    from tasks.db_server import hba_content
    place, _ = settings(mattermost_role="database", db_listen_address="10.0.0.5", db_clients=["10.0.0.4", "fd00::4"])
    hba = hba_content(SimpleNamespace(place=place, db_user="mmuser", db_name="mattermost"))
    assert "hostssl  mattermost,postgres  mmuser  10.0.0.4/32  scram-sha-256" in hba
    assert "hostssl  mattermost,postgres  mmuser  fd00::4/128  scram-sha-256" in hba
    assert "host     all       all   0.0.0.0/0     reject" in hba
    assert "trust" not in hba and "md5" not in hba


@pytest.mark.parametrize("name", ["10.0.0.5", "db.internal"])
def test_the_deploys_ca_issues_a_certificate_naming_the_server(tmp_path, name):
    ca = tmp_path / "ca"
    cert, key = server_certificate(str(ca), name)
    assert "BEGIN CERTIFICATE" in cert and "PRIVATE KEY" in key
    (tmp_path / "server.crt").write_text(cert)
    verify = subprocess.run(["openssl", "verify", "-CAfile", str(ca / "ca.crt"), "-verify_hostname" if "." in name
                             and not name[0].isdigit() else "-verify_ip", name, str(tmp_path / "server.crt")],
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr
    assert oct((ca / "ca.key").stat().st_mode & 0o777) == "0o600"
    # a second call reuses the same CA and certificate
    assert server_certificate(str(ca), name) == (cert, key) and ensure_ca(str(ca)).read_text() == \
        (ca / "ca.crt").read_text()
    # another name: another certificate from the same CA
    other, _ = server_certificate(str(ca), "other.internal")
    assert other != cert and "BEGIN CERTIFICATE" in other
