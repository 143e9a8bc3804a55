"""Converge a Debian/Ubuntu server to a running, safe Mattermost.

    pyinfra inventory.py deploy.py            # apply (make deploy)
    pyinfra inventory.py deploy.py --dry --diff   # what would change (make diff)

Reads the server's state once, then, in order: base packages and folders, the verified
release, adoption of a hand install, PostgreSQL, config.json, the service, nginx.
The release is verified before anything that touches the running service.
"""

from tasks import adopt, base, config, database, nginx, release, service
from tasks.common import current, settings

settings()  # bad settings or a missing secret stop here, before any change
current()  # one round trip: what the server is now

base.configure()
release.configure()
adopt.configure()
password = database.configure()
merged = config.configure(password)
service.configure(merged, password)
nginx.configure()
