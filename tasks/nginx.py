"""nginx in front of Mattermost: TLS (a self-signed certificate until one is configured),
the recommended proxy shape, the Debian default site out of the way."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import StringCommand, operation

from tasks.base import folders
from tasks.common import current, managed_file, path_info, render, settings

SITE = "/etc/nginx/sites-available/mattermost.conf"
ENABLED = "/etc/nginx/sites-enabled/mattermost.conf"
DEFAULT_SITE = "/etc/nginx/sites-enabled/default"
CACHE_DIR = "/var/cache/nginx"  # proxy cache; nginx makes its mattermost/ folder inside


@operation()
def self_signed_certificate(domain: str, certificate: str, key: str):
    """A self-signed certificate for `domain`, made on the server (the key never leaves it)."""
    if path_info(certificate) and path_info(key):
        host.noop(f"certificate {certificate} exists")
        return
    san = f"IP:{domain}" if domain.replace(".", "").isdigit() else f"DNS:{domain}"
    yield StringCommand("install", "-d", "-m", "0755", certificate.rsplit("/", 1)[0])
    yield StringCommand(
        "(umask 077 &&", "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "825",
        "-subj", f"/CN={domain}", "-addext", f"subjectAltName={san}",
        "-keyout", key, "-out", certificate, "2>/dev/null)", "&&", "chmod", "644", certificate)


@operation()
def site_enabled():
    """Enable the Mattermost site and disable Debian's default site."""
    link = path_info(ENABLED)
    if link and link.get("target") == SITE and not path_info(DEFAULT_SITE):
        host.noop("the mattermost site is the only enabled site")
        return
    yield StringCommand("ln", "-sfn", SITE, ENABLED, "&&", "rm", "-f", DEFAULT_SITE)


@operation()
def nginx_serving(changed: bool):
    """Check the configuration, then reload (or start) nginx."""
    active = current()["nginx"]["active"] == "active"
    if active and not changed:
        host.noop("nginx serves the current configuration")
        return
    yield "nginx -t -q"
    # reload-or-restart, not start: installing the package may have started nginx since
    # the state was read, with Debian's default site.
    yield "systemctl enable -q nginx && systemctl reload-or-restart nginx"


def configure():
    s = settings()
    ops = [folders(name="Create nginx's cache folder", wanted=[(CACHE_DIR, "root", "root", 0o755)])]
    if s.self_signed:
        ops.append(self_signed_certificate(
            name=f"Make a self-signed certificate for {s.domain} (no certificate configured)",
            domain=s.domain, certificate=s.certificate, key=s.certificate_key))
    ops.append(managed_file(name="Configure the nginx site for Mattermost", path=SITE,
                            content=render("etc/nginx/sites-available/mattermost.conf.j2", s=s)))
    ops.append(site_enabled(name="Enable the Mattermost site, disable the default site"))
    nginx_serving(name="Reload nginx after checking its configuration",
                  changed=any(op.will_change for op in ops))
