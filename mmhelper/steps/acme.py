"""TLS certificates from an ACME CA with certbot.
"""

import contextlib
import os
import subprocess

from mmhelper.parts.common import Failure


def acme_state(domain):
    """The certbot lineage for `domain`: present, from which ACME server, valid until."""
    renewal = f"/etc/letsencrypt/renewal/{domain}.conf"
    live = f"/etc/letsencrypt/live/{domain}/fullchain.pem"
    server, not_after = None, None
    with contextlib.suppress(OSError), open(renewal) as f:
        for line in f:
            key, _, value = line.partition("=")
            if key.strip() == "server":
                server = value.strip()
    if os.path.exists(live):
        out = subprocess.run(["openssl", "x509", "-noout", "-enddate", "-in", live], capture_output=True, text=True)
        not_after = out.stdout.strip().partition("=")[2] or None
    return {"present": os.path.exists(live) and server is not None, "server": server, "not_after": not_after}


def acme_issue(spec):
    """Obtain the certificate with certbot (webroot through nginx); renewals then run from
    certbot's timer and reload nginx. A failure says why; nothing else is changed."""
    env = dict(os.environ)
    if spec.get("ca_bundle"):
        env["REQUESTS_CA_BUNDLE"] = spec["ca_bundle"]
    os.makedirs(spec["webroot"], exist_ok=True)
    cmd = ["certbot", "certonly", "--non-interactive", "--agree-tos", "--email", spec["email"],
           "--server", spec["server"], "--webroot", "-w", spec["webroot"], "-d", spec["domain"],
           "--cert-name", spec["domain"], "--keep-until-expiring", "--deploy-hook", "systemctl reload nginx"]
    print(f"  asking {spec['server']} for a certificate for {spec['domain']}", flush=True)
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if result.returncode != 0:
        detail = [line.strip() for line in (result.stdout + result.stderr).splitlines() if line.strip()]
        reason = next((line for line in detail if "Detail:" in line or "Error" in line), detail[-1] if detail else "")
        raise Failure(f"no certificate for {spec['domain']} from {spec['server']} ({reason[:300]}); the self-signed "
                      "certificate stays in place, so the site keeps working - check that the name points at this "
                      "server and port 80 is reachable, see /var/log/letsencrypt/letsencrypt.log")
    print(f"certificate for {spec['domain']} obtained")
