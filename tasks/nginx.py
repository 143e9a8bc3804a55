"""nginx in front of Mattermost: TLS, the recommended proxy shape, the Debian default
site out of the way.

Certificates: the operator's own (nginx_tls_certificate), else one from ACME (acme_email;
certbot, webroot through nginx, renewed by certbot's timer which reloads nginx), else a
self-signed one. The self-signed certificate is always there as the fallback: on the run
that first asks ACME, nginx serves it until the ACME certificate exists, and keeps serving
it if issuance fails (the run then stops with the reason)."""

from __future__ import annotations

import re

from pyinfra import host
from pyinfra.api import StringCommand, operation

from tasks import security
from tasks.base import folders
from tasks.common import current, helper, managed_file, path_info, render, settings, streamed

SITE = "/etc/nginx/sites-available/mattermost.conf"
ENABLED = "/etc/nginx/sites-enabled/mattermost.conf"
DEFAULT_SITE = "/etc/nginx/sites-enabled/default"
CACHE_DIR = "/var/cache/nginx"  # proxy cache; nginx makes its mattermost/ folder inside
WEBROOT = "/var/www/letsencrypt"  # ACME http-01 challenges, served on port 80
ACME_CA = "/etc/mattermost/acme-server-ca.pem"
CERTBOT_DROPIN = "/etc/systemd/system/certbot.service.d/mattermost-deploy.conf"


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


def acme_certificate_present(now: dict, server: str) -> bool:
    acme = now.get("acme") or {}
    return bool(acme.get("present") and acme.get("server") == server)


@operation()
def acme_certificate(domain: str, server: str):
    """Obtain the ACME certificate unless a certbot lineage from `server` exists."""
    s, now = settings(), current()
    if acme_certificate_present(now, server):
        host.noop(f"certificate for {domain} from {server} is in place (valid until {now['acme'].get('not_after')})")
        return
    yield streamed(helper("acme-issue", {"domain": domain, "email": s.acme_email, "server": server,
                                         "webroot": WEBROOT, "ca_bundle": ACME_CA if s.acme_server_ca else None}))


# nginx of each Debian release, for a server where nginx is neither installed nor known to apt yet.
NGINX_OF_DEBIAN = {"12": "1.22.1", "13": "1.26.3"}


def http2_directive(nginx_version: str | None, debian_version: str | None) -> bool:
    """nginx 1.25.1 made `http2 on;` the way to turn HTTP/2 on; `listen ... http2` is
    deprecated there (a warning at every check) and the directive is unknown before."""
    version = nginx_version or NGINX_OF_DEBIAN.get(debian_version or "", "1.22.1")
    numbers = tuple(int(x) for x in re.findall(r"\d+", version.split("-")[0].split(":")[-1])[:3])
    return numbers >= (1, 25, 1)


def site(s, certificate: str, key: str, name: str, ops: list) -> None:
    now = current()
    ops.append(managed_file(name=name, path=SITE, content=render(
        "etc/nginx/sites-available/mattermost.conf.j2", s=s, certificate=certificate, certificate_key=key,
        webroot=WEBROOT, http2_on=http2_directive(now["nginx"].get("version"), now["os"].get("version_id")),
        never_ban=security.never_ban(s, now))))
    ops.append(site_enabled(name="Enable the Mattermost site, disable the default site"))
    nginx_serving(name="Reload nginx after checking its configuration", changed=any(op.will_change for op in ops))
    ops.clear()


def configure():
    s, now = settings(), current()
    ops = [folders(name="Create nginx's cache and ACME challenge folders",
                   wanted=[(CACHE_DIR, "root", "root", 0o755), (WEBROOT, "root", "root", 0o755)])]
    if s.self_signed:
        ops.append(self_signed_certificate(
            name=f"Make a self-signed certificate for {s.domain} (the fallback)",
            domain=s.domain, certificate=s.self_signed_certificate, key=s.self_signed_key))
    if s.acme_email and not acme_certificate_present(now, s.acme_directory_url):
        site(s, s.self_signed_certificate, s.self_signed_key, ops=ops,
             name="Configure the nginx site (self-signed until the ACME certificate exists)")
        if s.acme_server_ca:
            managed_file(name="Trust the ACME server's private CA (acme_server_ca)", path=ACME_CA,
                         content=s.acme_server_ca.strip() + "\n")
            managed_file(name="Let certbot's renewals trust it too", path=CERTBOT_DROPIN,
                         content=f"[Service]\nEnvironment=REQUESTS_CA_BUNDLE={ACME_CA}\n")
        acme_certificate(name=f"Obtain a certificate for {s.domain} from {s.acme_directory_url}",
                         domain=s.domain, server=s.acme_directory_url)
    kind = "your" if s.tls_certificate else "the ACME" if s.acme_email else "a self-signed"
    site(s, s.certificate, s.certificate_key, ops=ops, name=f"Configure the nginx site for Mattermost ({kind} certificate)")
