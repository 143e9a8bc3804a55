"""STAND-IN apt repository for tests: a flat repository on the stand-in upstream
(`deb [trusted=yes] http://mmdeploy-upstream:8080/NAME ./`, unsigned - tests only) with a
test package in several versions, so an OS upgrade is really pending on the test
server. Version 1.1 marks a reboot as required in its postinst, as kernel packages do."""

from __future__ import annotations

import email.utils
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

PACKAGE = "mmdeploy-testpkg"


def source_line(name: str) -> str:
    """The sources.list line of the repository `name` (each story publishes its own, so stories
    running at the same time never offer each other's versions)."""
    return f"deb [trusted=yes] http://mmdeploy-upstream:8080/{name} ./"

POSTINST = {
    "reboot": "#!/bin/sh\nset -e\ntouch /run/reboot-required\necho " + PACKAGE + " >> /run/reboot-required.pkgs\n",
    "slow": "#!/bin/sh\nset -e\nsleep 40\n",  # a window to kill patch night mid-upgrade
}


def build_deb(out_dir: Path, version: str, postinst: str | None = None) -> Path:
    deb = out_dir / f"{PACKAGE}_{version}_all.deb"
    if deb.exists():
        return deb
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "pkg"
        (root / "DEBIAN").mkdir(parents=True)
        (root / "usr/share/doc" / PACKAGE).mkdir(parents=True)
        (root / "usr/share/doc" / PACKAGE / "VERSION").write_text(version + "\n")
        (root / "DEBIAN/control").write_text(
            f"Package: {PACKAGE}\nVersion: {version}\nArchitecture: all\nMaintainer: tests <tests@example.invalid>\n"
            f"Section: misc\nPriority: optional\nDescription: stand-in package for patch night tests\n")
        if postinst:
            (root / "DEBIAN/postinst").write_text(POSTINST[postinst])
            (root / "DEBIAN/postinst").chmod(0o755)
        out_dir.mkdir(parents=True, exist_ok=True)
        built = Path(tmp) / deb.name
        subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(root), str(built)], check=True,
                       capture_output=True)
        shutil.copy(built, deb.with_suffix(f".{os.getpid()}.tmp"))
        os.replace(deb.with_suffix(f".{os.getpid()}.tmp"), deb)  # whole, even when two stories build it at once
    return deb


def publish(upstream_root: Path, versions: dict[str, str | None], name: str) -> None:
    """Make the repository `name` offer exactly these versions ({version: postinst kind})."""
    repo = upstream_root / name
    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir(parents=True)
    stanzas = []
    for version, postinst in versions.items():
        deb = build_deb(upstream_root.parent / "debs" / (postinst or "plain"), version, postinst)
        shutil.copy(deb, repo / deb.name)
        data = deb.read_bytes()
        control = subprocess.run(["dpkg-deb", "-f", str(deb)], capture_output=True, text=True, check=True).stdout
        stanzas.append(control.strip() + f"\nFilename: ./{deb.name}\nSize: {len(data)}\n"
                       f"SHA256: {hashlib.sha256(data).hexdigest()}\n")
    packages = "\n".join(stanzas).encode()
    (repo / "Packages").write_bytes(packages)
    date = email.utils.formatdate(usegmt=True)
    (repo / "Release").write_text(
        f"Origin: mmdeploy-standin\nLabel: mmdeploy-standin\nSuite: stable\nCodename: standin\nDate: {date}\n"
        f"SHA256:\n {hashlib.sha256(packages).hexdigest()} {len(packages)} Packages\n")
