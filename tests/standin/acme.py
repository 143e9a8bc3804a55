"""STAND-IN ACME pieces for tests: the TLS certificate of pebble's own API (made here, with
a private test CA that certbot on the test server is told to trust) and pebble's config.
The certificates pebble ISSUES come from its own random CA, fetched from its management API."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

PEBBLE_NAME = "mmdeploy-pebble"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def ensure_pebble_files(folder: Path) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    if not (ca_file.exists() and cert_file.exists() and key_file.exists()):
        now = datetime.datetime.now(datetime.UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = (x509.CertificateBuilder().subject_name(_name("mmdeploy test ACME API CA")).issuer_name(
            _name("mmdeploy test ACME API CA")).public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=3650))
              .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
              .sign(ca_key, hashes.SHA256()))
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(_name(PEBBLE_NAME)).issuer_name(ca.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=825))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(PEBBLE_NAME), x509.DNSName("localhost")]),
                               critical=False)
                .sign(ca_key, hashes.SHA256()))
        ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        key_file.chmod(0o644)  # read by pebble in its container; a throwaway test key
    (folder / "config.json").write_text(json.dumps({"pebble": {
        "listenAddress": "0.0.0.0:14000", "managementListenAddress": "0.0.0.0:15000",
        "certificate": "/srv/pebble/cert.pem", "privateKey": "/srv/pebble/key.pem",
        "httpPort": 80, "tlsPort": 443,
        # Real CA certificates name where revocation is checked; pebble's then do too (nothing answers there).
        "ocspResponderURL": f"http://{PEBBLE_NAME}:4002",
        "externalAccountBindingRequired": False}}, indent=1))
    return {"dir": folder, "ca": ca_file}
