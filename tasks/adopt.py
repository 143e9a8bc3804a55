"""Adopting a server installed by hand per Mattermost's tarball guide: a real
/opt/mattermost folder with config/, data/ and plugins/ inside, and a unit pointing at it.

Config, data, plugins and logs move into the managed state folders (data by hard links,
so it is instant and the old folder stays complete); the old folder is kept, renamed,
until the operator deletes it; /opt/mattermost becomes the link to the verified release.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import operation
from pyinfra.api.exceptions import DeployError

from tasks.common import current, helper, settings, streamed
from tasks.settings import Settings


def adoption_pending(now: dict) -> bool:
    return now["install"]["kind"] == "dir"


def check_adoptable(s: Settings, facts: dict) -> None:
    """Refuse, before any change, a hand install this deploy would not carry over intact."""
    if not facts.get("config"):
        raise DeployError(f"{s.install_dir} on {s.host} is a folder without config/config.json: "
                          "not an install this deploy can adopt; move it away or finish it by hand")
    ds = facts.get("datasource")
    if not ds:
        raise DeployError(f"{facts['config']} has no DataSource this deploy can read (a PostgreSQL URL, or MySQL's "
                          "user:password@tcp(host:3306)/database?...): fix it by hand first (nothing was changed)")
    if facts.get("engine") == "mysql":
        # Adopted as it is: Mattermost keeps its MySQL until `make db-migrate` (the deploy leaves
        # SqlSettings alone meanwhile and upgrades nothing: Mattermost 11 no longer supports MySQL).
        pass
    elif ds["host"] not in ("localhost", "127.0.0.1", "::1"):
        raise DeployError(f"the hand install uses the database on {ds['host']}; this deploy manages a "
                          "local PostgreSQL - migrate the database first")
    elif (ds["user"], ds["database"]) != (s.db_user, s.db_name):
        raise DeployError(
            f"the hand install uses database {ds['database']!r} with role {ds['user']!r}: set "
            f"postgresql_db_name = {ds['database']!r} and postgresql_db_user = {ds['user']!r} "
            "for this host so they are kept (nothing was changed)")
    on_s3 = s.files.store == "s3" and (facts.get("s3") or {}).get("Bucket") == s.files.bucket
    if facts.get("driver") == "amazons3" and not on_s3:
        raise DeployError(f"the hand install keeps its files in the bucket {(facts.get('s3') or {}).get('Bucket')!r} at "
                          f"{(facts.get('s3') or {}).get('Endpoint')!r}: set files_store = \"s3\", files_s3_bucket and "
                          "files_s3_endpoint to it (and its keys in the environment) so it is kept (nothing was changed)")
    if facts.get("driver") not in (None, "local", "amazons3"):
        raise DeployError(f"the hand install stores files with driver {facts['driver']!r}; "
                          "add its FileSettings to mattermost_config before adopting")


@operation()
def hand_install_adopted():
    """Carry a hand-installed /opt/mattermost into the managed layout."""
    s, now = settings(), current()
    if not adoption_pending(now):
        host.noop(f"{s.install_dir} is managed (no hand install to adopt)")
        return
    yield streamed(helper("adopt", {
        "install_dir": s.install_dir, "state_dir": s.state_dir, "log_dir": s.log_dir,
        "releases_dir": s.releases_dir, "version": now["install"]["version"], "user": s.user,
        "password_file": s.password_file, "service": "mattermost",
        "unit_file": "/etc/systemd/system/mattermost.service",
    }))


def configure():
    s, now = settings(), current()
    if adoption_pending(now):
        check_adoptable(s, now["install"]["adoption"])
        name = f"Adopt the hand-installed Mattermost {now['install'].get('version')} in {s.install_dir}"
    else:
        name = f"Adopt a hand-installed {s.install_dir} if there is one"
    return hand_install_adopted(name=name)
