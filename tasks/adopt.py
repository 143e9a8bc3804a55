"""A server that exists is never replaced: every Mattermost the state read found (a hand
install wherever it lives and whatever its unit is called, a package, GitLab's bundled one,
a container, a database with no install, a process on Mattermost's port) is adopted or
refused by name before any change; a fresh install only where none of these signs exists.

Adopting a hand install (Mattermost's tarball guide): config, data, plugins and logs are
copied into the managed state folders; the old folder is kept, renamed, until the operator
deletes it; the old units are stopped and disabled (their files kept, for the way back);
/opt/mattermost becomes the link to the verified release.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyinfra import host, logger
from pyinfra.api import operation
from pyinfra.api.exceptions import DeployError

from tasks.common import current, helper, settings, streamed
from tasks.settings import Settings

MANAGED_UNIT = "mattermost.service"
RECORD_FILE = "adopted.json"  # in the deploy's state folder: what the adoption did


@dataclass(frozen=True)
class Verdict:
    action: str  # "managed", "adopt" or "fresh"
    says: str  # the operation's name, as the dry run and the run list it
    details: str | None = None  # what was found, said in a line of its own


def adoption_pending(now: dict) -> bool:
    return now["install"]["kind"] == "dir"


def _enabled(unit: dict) -> bool:
    return unit.get("enabled") in ("enabled", "enabled-runtime", "linked", "linked-runtime", "alias")


def _running(unit: dict) -> bool:
    return unit.get("active") in ("active", "activating", "reloading", "deactivating")


def _unit_text(unit: dict) -> str:
    state = "running" if _running(unit) else "stopped"
    return f"{unit['name']} ({state}, {'enabled' if _enabled(unit) else 'disabled'}; ExecStart {unit['binary']})"


def _install_text(found: dict) -> str:
    units = ", ".join(found.get("units") or []) or "no unit"
    return f"{found['path']} (Mattermost {found.get('version') or 'of unknown version'}, {units})"


def refusals(s: Settings, now: dict) -> list[str]:
    """Why this server's Mattermost cannot be adopted or left alone, one sentence each with
    what the operator can do next; empty when the run may go on."""
    install = now["install"]
    found = install.get("existing") or {}
    out = []
    for package in found.get("packages") or []:
        out.append(
            f"Mattermost's Debian package {package['name']} {package['version']} is installed (packages.mattermost.com): "
            "apt owns that install and this deploy would fight it over the same files; keep that server on its package "
            "(`apt upgrade`), or move its content to a server converged by this deploy with Mattermost's bulk export "
            "(`mmctl export create` there, `mmctl import process` here)")
    gitlab = found.get("gitlab")
    if gitlab and (gitlab.get("enabled") or gitlab.get("data")):
        out.append(
            f"GitLab Omnibus ({gitlab['package']} {gitlab['version']}) runs its bundled Mattermost "
            "(/etc/gitlab/gitlab.rb, /var/opt/gitlab/mattermost): GitLab manages it (`gitlab-ctl`, GitLab's backups); "
            "move it to its own server first (GitLab's guide 'Migrating Mattermost'), then converge that server")
    containers = found.get("containers") or {}
    for c in containers.get("found") or []:
        ports = f", ports {c['ports']}" if c.get("ports") else ""
        out.append(
            f"a {containers['tool'].capitalize()} container runs Mattermost: {c['name']} (image {c['image']}, "
            f"{c['state'] or 'state unknown'}{ports}): this deploy does not take over a container; remove it if it is "
            "unused, or move its content here with Mattermost's bulk export (`mmctl export create`, then "
            "`mmctl import process`)")
    if install["kind"] == "link":
        for unit in found.get("units") or []:
            if unit["name"] != MANAGED_UNIT and (unit["install_dir"] or "").rstrip("/") == s.install_dir and \
                    (_enabled(unit) or _running(unit)):
                out.append(f"the unit {_unit_text(unit)} also runs the managed Mattermost in {s.install_dir}: after a "
                           f"reboot either may win; `systemctl disable --now {unit['name']}` (keep its file if you like)")
        for other in install.get("hand_installs") or []:
            units = [u for u in found.get("units") or [] if u["name"] in other["units"]]
            if any(_enabled(u) or _running(u) for u in units):
                out.append(f"a second Mattermost runs beside the managed one: {_install_text(other)}; stop and disable "
                           f"its unit (`systemctl disable --now {' '.join(other['units'])}`) or move it to its own server")
    elif install["kind"] == "several":
        listed = "; ".join(_install_text(i) for i in install.get("hand_installs") or [])
        out.append(f"more than one Mattermost install is on this server: {listed}; set mattermost_adopt_path to the one "
                   "to adopt, and stop and disable the others' units")
    elif s.adopt_path and (install["kind"] != "dir" or install["path"] != s.adopt_path):
        out.append(f"mattermost_adopt_path names {s.adopt_path}, which holds no Mattermost install (no bin/mattermost "
                   "and config/config.json there): correct the setting, or remove it to let the search decide")
    elif install["kind"] == "dir":
        out += adoption_refusals(s, install, found)
    else:
        out += fresh_refusals(s, now, found)
    out += listener_refusals(s, install, found)
    return out


def adoption_refusals(s: Settings, install: dict, found: dict) -> list[str]:
    """What keeps the one hand install found from being adopted (before any change)."""
    facts = install.get("adoption") or {}
    where = install["path"]
    if facts.get("config_in_database"):
        db = facts["config_in_database"]
        return [f"the install in {where} keeps its configuration in the database (MM_CONFIG={db['dsn']}): this deploy "
                "merges its settings into a config.json; move it to a file first with the install's own command "
                f"(`cd {where} && bin/mattermost config migrate \"$MM_CONFIG\" {where}/config/config.json`), point the "
                "unit at that file (remove MM_CONFIG), restart it, then run the deploy again"]
    if facts.get("error"):
        return [f"{facts['error']}: fix it by hand first"]
    if not facts.get("config"):
        return [f"{where} is a folder without config/config.json: not an install this deploy can adopt; move it away "
                "or finish it by hand"]
    if not install.get("version"):
        return [f"the hand install in {where} does not tell its version (bin/mattermost version failed); fix it "
                "before adopting"]
    others = [u for u in found.get("units") or [] if u["name"] not in install.get("units", [])
              and (u["install_dir"] or "").rstrip("/") != where and (_enabled(u) or _running(u)) and u["binary_exists"]]
    if others:
        return [f"another unit runs Mattermost: {', '.join(_unit_text(u) for u in others)}; stop and disable it before "
                f"adopting {where}"]
    try:
        check_adoptable(s, facts)
    except DeployError as e:
        return [str(e)]
    return []


def fresh_refusals(s: Settings, now: dict, found: dict) -> list[str]:
    """A fresh install only where no Mattermost database waits for its install."""
    if s.place.remote:
        return []  # the database is elsewhere; the Mattermost server's own engines are not Mattermost's
    out = []
    for db in found.get("databases") or []:
        engine = "MariaDB/MySQL" if db["engine"] == "mysql" else "PostgreSQL"
        posts = f" with {db['posts']} posts" if db.get("posts") is not None else ""
        out.append(
            f"a Mattermost database {db['name']!r} in {engine}{posts} and no install that uses it: a fresh install would "
            f"start an empty server beside it. If its install is somewhere the search cannot see, set "
            f"mattermost_adopt_path to that folder; if the install is gone, install the same Mattermost version by hand "
            f"on it first (then the deploy adopts it); to start afresh, move the database away (dump it, then drop it)")
    return out


def listener_refusals(s: Settings, install: dict, found: dict) -> list[str]:
    """A process on Mattermost's port that is not a Mattermost the deploy can see."""
    ours = {MANAGED_UNIT} if install["kind"] == "link" else set(install.get("units") or [])
    ours |= {u for i in install.get("hand_installs") or [] for u in i.get("units") or []} if install["kind"] != "link" \
        else set()
    out = []
    for port, procs in sorted((found.get("listeners") or {}).items()):
        for proc in procs:
            if proc.get("unit") in ours:
                continue
            exe = proc.get("exe") or "?"
            what = f"pid {proc['pid']} ({proc.get('cmdline') or exe}{', unit ' + proc['unit'] if proc.get('unit') else ''})"
            if exe.rsplit("/", 1)[-1] in ("mattermost", "platform") and not (proc.get("unit") or "").endswith(".service"):
                folder = exe.rsplit("/bin/", 1)[0]
                out.append(f"a Mattermost runs outside systemd on port {port}: {what}; stop it, then set "
                           f"mattermost_adopt_path = {folder!r} so the deploy adopts it")
            else:
                out.append(f"port {port} is held by {what}, which is not a Mattermost this deploy can see: stop it or "
                           "move it to another port (Mattermost needs this one), then run the deploy again")
    return out


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


def looked_at(found: dict, ports: list[str]) -> str:
    """What the search looked at and found nothing in, as the dry run says it."""
    parts = ["no unit", f"no process on {' or '.join(ports) or '8065'}", "no package"]
    containers = found.get("containers")
    if containers is None:
        parts.append("no container (no Docker or Podman)")
    elif containers.get("error"):
        parts.append(f"containers not listed ({containers['tool']}: {containers['error']})")
    else:
        parts.append("no container")
    parts.append("no Mattermost database")
    return ", ".join(parts) + "".join(f"; {note}" for note in found.get("databases_not_read") or [])


def verdict(s: Settings, now: dict) -> Verdict:
    """What the deploy does with the Mattermost this server has; DeployError when it must
    refuse (before any change), naming each reason."""
    problems = refusals(s, now)
    if problems:
        raise DeployError(f"{s.host}: " + "; and ".join(problems) + " (nothing was changed)")
    install = now["install"]
    found = install.get("existing") or {}
    if install["kind"] == "link":
        return Verdict("managed", f"{s.install_dir} is managed (no hand install to adopt)")
    if install["kind"] == "dir":
        facts = install["adoption"]
        units = ", ".join(install.get("units") or []) or "no unit"
        config = facts["config"]
        db = facts.get("datasource") or {}
        engine = "MySQL/MariaDB" if facts.get("engine") == "mysql" else "PostgreSQL"
        return Verdict("adopt", f"Adopt the hand-installed Mattermost {install['version']} in {install['path']}",
                       f"the hand install in {install['path']}: unit {units}; config {config}; {engine} database "
                       f"{db.get('database')}")
    return Verdict("fresh", "No Mattermost on this server: install it fresh",
                   f"looked for Mattermost: {looked_at(found, sorted(found.get('listeners') or {}))}")


@operation()
def hand_install_adopted():
    """Carry a hand install (any folder, any unit name) into the managed layout."""
    s, now = settings(), current()
    if not adoption_pending(now):
        host.noop(f"{s.install_dir} is managed (no hand install to adopt)" if now["install"]["kind"] == "link"
                  else "nothing to adopt: a fresh install")
        return
    install = now["install"]
    yield streamed(helper("adopt", {
        "source": install["path"], "config_file": install["adoption"]["config"], "run_dir": install.get("run_dir"),
        "units": install.get("units") or [], "managed_unit": MANAGED_UNIT,
        "install_dir": s.install_dir, "state_dir": s.state_dir, "log_dir": s.log_dir,
        "releases_dir": s.releases_dir, "version": install["version"], "user": s.user,
        "password_file": s.password_file, "record_file": f"{s.deploy_state_dir}/{RECORD_FILE}",
    }))


def checked() -> Verdict:
    """The verdict, once per run; deploy.py asks right after the state read, so a refusal
    comes before any operation is even declared."""
    cached = getattr(host, "_mm_existing", None)
    if cached is None:
        cached = verdict(settings(), current())
        host._mm_existing = cached
    return cached


def configure():
    verdict = checked()
    if verdict.details:
        logger.info(f"    [{host.name}] {verdict.details}")
    return hand_install_adopted(name=verdict.says)
