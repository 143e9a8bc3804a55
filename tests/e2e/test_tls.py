"""TLS from ACME against pebble (Let's Encrypt's test server, Debian's package) on the test
network: certbot on the test server obtains a certificate through nginx (http-01, really
validated by pebble over Docker's DNS), nginx serves it and the chain verifies against
pebble's CA; a re-run changes nothing; a forced renewal reloads nginx; a failed issuance
is a clear error and the self-signed certificate keeps the site up."""

import json
import socket
import ssl
import time

import pytest

from tests import testhost
from tests.e2e.conftest import KEEP, deploy, https_get, planned_changes, sh

TARGET = "e2e-tls"
PORT = 24435
DOMAIN = testhost.container_name(TARGET)  # resolvable by pebble through Docker's DNS


@pytest.fixture(scope="module")
def pebble():
    c = testhost.client()
    testhost.ensure_upstream(c)
    info = testhost.ensure_pebble(c)
    testhost.stop_server(TARGET)
    testhost.start_server(TARGET, ssh_port=22305, https_port=PORT, extra_data={
        "mattermost_domain": DOMAIN, "mattermost_site_url": f"https://{DOMAIN}",
        "acme_email": "ops@example.org", "acme_directory_url": info["directory"],
        "acme_server_ca": info["server_ca"]})
    yield info
    if not KEEP:
        testhost.stop_server(TARGET)


def pebble_root(info) -> str:
    """The CA pebble issues from (made at its start), from its management API."""
    code, out = testhost.exec_on_container(
        testhost.UPSTREAM, "python3 -c \"import ssl,urllib.request; print(urllib.request.urlopen("
        f"'{info['management']}/roots/0', context=ssl._create_unverified_context()).read().decode())\"")
    assert code == 0 and "BEGIN CERTIFICATE" in out, out
    return out


def served_certificate(cafile: str | None) -> dict:
    """The certificate nginx serves for DOMAIN, verified against `cafile` when given."""
    if cafile:
        context = ssl.create_default_context(cafile=cafile)
    else:
        context = ssl._create_unverified_context()
    with socket.create_connection(("127.0.0.1", PORT), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=DOMAIN) as tls:
        der = tls.getpeercert(binary_form=True)
        info = tls.getpeercert() if cafile else {}
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    return {"serial": cert.serial_number, "issuer": cert.issuer.rfc4514_string(), "info": info}


def issuer_soon(expected: str, timeout: float = 10) -> str:
    """The issuer nginx serves, once it contains `expected`: a reload swaps workers within
    moments, not at once."""
    deadline = time.time() + timeout
    while True:
        issuer = served_certificate(None)["issuer"]
        if expected in issuer or time.time() > deadline:
            return issuer
        time.sleep(0.2)


def test_certificate_obtained_served_and_verified(pebble, tmp_path):
    run = deploy(TARGET)
    assert run.ok, run.output[-5000:]
    assert f"certificate for {DOMAIN} obtained" in run.output
    root = tmp_path / "pebble-root.pem"
    root.write_text(pebble_root(pebble))
    served = served_certificate(str(root))  # raises unless the chain verifies for DOMAIN
    assert "Pebble" in served["issuer"]
    status, _, body = https_get(PORT)
    assert status == 200 and json.loads(body)["status"] == "OK"
    renewal = sh(TARGET, f"cat /etc/letsencrypt/renewal/{DOMAIN}.conf")
    assert f"server = {pebble['directory']}" in renewal and "renew_hook = systemctl reload nginx" in renewal


def test_rerun_changes_nothing(pebble):
    assert planned_changes(TARGET) == []


def test_forced_renewal_reloads_nginx(pebble):
    before = served_certificate(None)["serial"]
    sh(TARGET, "REQUESTS_CA_BUNDLE=/etc/mattermost/acme-server-ca.pem "
               "certbot renew --force-renewal --no-random-sleep-on-renew -q")
    live = sh(TARGET, f"openssl x509 -noout -serial -in /etc/letsencrypt/live/{DOMAIN}/cert.pem").split("=")[1]
    assert int(live, 16) != before, "certbot did not renew"
    deadline = time.time() + 10  # a reload swaps nginx's workers within moments, not at once
    while served_certificate(None)["serial"] != int(live, 16):
        assert time.time() < deadline, "nginx still serves the old certificate: the renewal did not reload it"
        time.sleep(0.2)
    assert planned_changes(TARGET) == []


def test_failed_issuance_is_an_error_and_the_site_stays_up(pebble):
    other = "chat.unresolvable.invalid"
    run = deploy(TARGET, "--data", f"mattermost_domain={other}", "--data", f"mattermost_site_url=https://{other}")
    failed = [line for line in run.output.splitlines() if line.startswith("FAILED:")]
    assert run.returncode != 0 and len(failed) == 1
    assert f"no certificate for {other}" in failed[0] and "self-signed certificate stays in place" in failed[0]
    assert other in issuer_soon(other), "nginx does not serve the self-signed fallback"
    status, _, _ = https_get(PORT)
    assert status == 200
    # back to the real name: the ACME certificate serves again, nothing else changes afterwards
    assert deploy(TARGET).ok
    assert "Pebble" in issuer_soon("Pebble")
    assert planned_changes(TARGET) == []
