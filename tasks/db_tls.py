"""The deploy's own CA for PostgreSQL's TLS, kept on the workstation (`db_ca_dir`, by default
.local/db-ca, git-ignored): a CA key that never leaves it, and per database server a key and
certificate naming that server (Mattermost checks the name: sslmode=verify-full).

Made with openssl on the workstation the first time a database server needs them (also in a
dry run: it changes no server). A certificate is re-issued when its name changes or it has
less than 60 days left; the CA lasts 20 years. Back up `db_ca_dir` with the inventory.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import tempfile
from pathlib import Path

CA_DAYS = 7300
CERT_DAYS = 825
RENEW_SECONDS = 60 * 86400


def _openssl(*args: str, input: str | None = None) -> str:
    proc = subprocess.run(["openssl", *args], capture_output=True, text=True, input=input)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {proc.stderr.strip()}")
    return proc.stdout


def ensure_ca(ca_dir: str) -> Path:
    """The CA certificate's path, creating the CA when missing (key 0600, folder 0700)."""
    folder = Path(ca_dir)
    cert, key = folder / "ca.crt", folder / "ca.key"
    if cert.exists() and key.exists():
        return cert
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(folder, 0o700)
    old = os.umask(0o077)
    try:
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", str(key), "-out", str(cert), "-days", str(CA_DAYS),
                 "-subj", "/CN=Mattermost deploy database CA",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    finally:
        os.umask(old)
    return cert


def _san(name: str) -> str:
    try:
        ipaddress.ip_address(name)
        return f"IP:{name}"
    except ValueError:
        return f"DNS:{name}"


def _current(cert: Path, name: str) -> bool:
    if not cert.exists():
        return False
    text = _openssl("x509", "-in", str(cert), "-noout", "-ext", "subjectAltName")
    wanted = _san(name).replace("IP:", "IP Address:")
    if wanted not in text:
        return False
    return subprocess.run(["openssl", "x509", "-in", str(cert), "-noout", "-checkend", str(RENEW_SECONDS)],
                          capture_output=True).returncode == 0


def server_certificate(ca_dir: str, name: str) -> tuple[str, str]:
    """(certificate PEM, key PEM) for a database server called `name`, issued by the CA."""
    ca_cert = ensure_ca(ca_dir)
    folder = Path(ca_dir)
    safe = name.replace(":", "_")
    cert, key = folder / f"{safe}.crt", folder / f"{safe}.key"
    if not _current(cert, name):
        old = os.umask(0o077)
        try:
            with tempfile.TemporaryDirectory(dir=folder) as tmp:
                csr, new_key, new_cert = Path(tmp, "req.csr"), Path(tmp, "key"), Path(tmp, "crt")
                _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                         "-keyout", str(new_key), "-out", str(csr), "-subj", f"/CN={name}")
                ext = Path(tmp, "ext")
                ext.write_text(f"subjectAltName={_san(name)}\nbasicConstraints=critical,CA:FALSE\n"
                               "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
                _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(folder / "ca.key"),
                         "-CAcreateserial", "-out", str(new_cert), "-days", str(CERT_DAYS), "-extfile", str(ext))
                os.replace(new_key, key)
                os.replace(new_cert, cert)
        finally:
            os.umask(old)
    return cert.read_text(), key.read_text()
