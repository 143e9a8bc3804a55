"""STAND-IN release signing keys for tests: GPG keys made on the workstation at test time
(never committed), playing the part of Mattermost's release signing key."""

import os
import subprocess
from pathlib import Path


def _gpg(home: Path, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--quiet", *args],
        check=True, capture_output=True, text=True, **kwargs,
    )


def ensure_key(home: Path, uid: str, *, faked_time: str | None = None, expire: str = "2y") -> str:
    """Create (once) a signing key in its own GnuPG home; return its fingerprint.

    `faked_time` (e.g. "20200101T000000") makes a key whose validity lies in the past,
    so an expired signing key can be tested for real."""
    home.mkdir(parents=True, exist_ok=True)
    os.chmod(home, 0o700)
    fpr_file = home / "fingerprint"
    if fpr_file.exists():
        return fpr_file.read_text().strip()
    extra = [f"--faked-system-time={faked_time}!"] if faked_time else []
    _gpg(home, *extra, "--passphrase", "", "--quick-gen-key", uid, "rsa2048", "sign", expire)
    listing = _gpg(home, "--with-colons", "--list-secret-keys").stdout
    fpr = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    fpr_file.write_text(fpr + "\n")
    return fpr


def export_public(home: Path, fpr: str, dest: Path) -> None:
    dest.write_text(_gpg(home, "--armor", "--export", fpr).stdout)


def sign_detached(home: Path, fpr: str, path: Path, *, faked_time: str | None = None) -> Path:
    sig = path.with_name(path.name + ".sig")
    sig.unlink(missing_ok=True)
    extra = [f"--faked-system-time={faked_time}!"] if faked_time else []
    _gpg(home, *extra, "--local-user", fpr, "--detach-sign", "--output", str(sig), str(path))
    return sig
