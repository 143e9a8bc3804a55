"""Adopting a hand install (Mattermost's tarball guide, wherever it lives and whatever its
unit is called) into the managed layout; which install that is, from what the discovery
found (mmhelper/parts/discover.py).
"""

import json
import os
import pwd
import shutil
import stat
import time

from mmhelper.parts import mysql
from mmhelper.parts.common import Failure, installed_version, link_release, read_password, run, write_private
from mmhelper.parts.config import get_dotted, parse_datasource
from mmhelper.parts.discover import listen_port
from mmhelper.parts.service import systemctl


def database_of(config):
    """(engine, parsed DataSource or None): "postgres" or "mysql" as config.json says (an
    old install's DriverName may be "mysql" with Go's MySQL DSN form)."""
    value = get_dotted(config, "SqlSettings.DataSource")[0]
    if get_dotted(config, "SqlSettings.DriverName")[0] == "mysql":
        return "mysql", mysql.parse_mysql_datasource(value)
    return "postgres", parse_datasource(value)


def _at(run_dir, path, default):
    """A path of config.json as Mattermost opens it: relative to the folder it runs in."""
    path = path or default
    return os.path.normpath(path if os.path.isabs(path) else os.path.join(run_dir or "/", path))


def config_facts(config_file, run_dir):
    """What an install's config.json says (no secrets), its relative paths resolved against
    the folder Mattermost runs in."""
    facts = {"config": None}
    if not config_file or not os.path.isfile(config_file):
        return facts
    with open(config_file) as f:
        try:
            config = json.load(f)
        except ValueError as e:
            facts["error"] = f"{config_file} is not valid JSON: {e}"
            return facts
    engine, ds = database_of(config)
    facts["config"] = config_file
    facts["engine"] = engine
    facts["datasource"] = {k: v for k, v in (ds or {}).items() if k != "password"} or None
    facts["has_password"] = bool(ds and ds["password"])
    facts["files_dir"] = get_dotted(config, "FileSettings.Directory")[0]
    facts["data_dir"] = _at(run_dir, facts["files_dir"], "./data/")
    facts["plugins_dir"] = _at(run_dir, get_dotted(config, "PluginSettings.Directory")[0], "./plugins")
    facts["client_plugins_dir"] = _at(run_dir, get_dotted(config, "PluginSettings.ClientDirectory")[0],
                                      "./client/plugins")
    facts["driver"] = get_dotted(config, "FileSettings.DriverName")[0]
    facts["s3"] = {k: get_dotted(config, f"FileSettings.AmazonS3{k}")[0] for k in ("Bucket", "Endpoint")}
    facts["port"] = listen_port(get_dotted(config, "ServiceSettings.ListenAddress")[0]) or 8065
    return facts


def candidate(path, units, config_file, run_dir, user):
    """One hand install as the workstation sees it: where, which units run it, its config
    and version (asked of its own binary, on a private copy of its config)."""
    facts = config_facts(config_file, run_dir)
    version = installed_version(path, user, config=config_file) if facts.get("config") else None
    return {"path": path, "units": units, "run_dir": run_dir, "version": version, "adoption": facts}


def hand_installs(found, install_dir, releases_dir, adopt_path, user):
    """The hand installs on this server, from the discovery's units, a real folder at
    install_dir, and the one the settings name (mattermost_adopt_path). Units that run the
    managed release (install_dir is the deploy's link) are not hand installs."""
    managed = os.path.islink(install_dir) and os.path.dirname(os.path.realpath(install_dir)) == \
        os.path.realpath(releases_dir)
    by_path = {}
    for unit in found["units"]:
        folder = unit["install_dir"]
        if not folder or (managed and os.path.realpath(folder) == os.path.realpath(install_dir)):
            continue
        if folder.rstrip("/") != (adopt_path or "").rstrip("/") and not unit["binary_exists"]:
            continue  # a unit left behind by an install that is gone
        by_path.setdefault(folder.rstrip("/"), []).append(unit)
    for extra in (install_dir if not managed and os.path.isdir(install_dir) else None, adopt_path):
        if extra and os.path.isdir(extra) and extra.rstrip("/") not in by_path:
            by_path[extra.rstrip("/")] = []
    out = []
    for path, units in sorted(by_path.items()):
        names = [u["name"] for u in units]
        with_file = [u for u in units if u["config"]["kind"] == "file"]
        if units and not with_file:
            out.append({"path": path, "units": names, "version": None, "run_dir": units[0]["working_directory"],
                        "adoption": {"config": None, "config_in_database": units[0]["config"]}})
            continue
        unit = with_file[0] if with_file else None
        config_file = unit["config"]["path"] if unit else os.path.join(path, "config", "config.json")
        run_dir = (unit["working_directory"] if unit else None) or (path if not unit else "/")
        out.append(candidate(path, names, config_file, run_dir, user))
    return out


def _copy_into(src, dest, user, copied):
    if os.path.isdir(dest) and os.listdir(dest):
        raise Failure(f"{dest} is not empty: adoption would mix two installs; move it away first")
    print(f"  copying {src} -> {dest}", flush=True)
    os.makedirs(dest, exist_ok=True)
    copied.append(dest)
    dest_mode = stat.S_IMODE(os.stat(dest).st_mode)
    # Copies, never hard links: Mattermost rewrites some stored files in place (O_TRUNC in
    # platform/shared/filestore/localstore.go), which would change the kept old folder too.
    # --reflink=auto makes the copy instant where the file system can share blocks.
    run(["cp", "-a", "--reflink=auto", "--", src + "/.", dest])
    run(["chown", "-R", f"{user.pw_uid}:{user.pw_gid}", dest])
    os.chmod(dest, dest_mode)  # cp -a carried the old folder's mode over


def adopt(spec):
    """Move a hand install (wherever it lives, whatever its unit is called) into the managed
    layout: its units stopped, config, data, plugins and logs copied into the state folders,
    the old folder renamed (kept until the operator deletes it), the old units disabled (their
    files kept, for the way back), and install_dir made the link to the verified release.
    Undone completely when a step fails."""
    source = spec.get("source") or spec["install_dir"]
    install_dir, state_dir, log_dir = spec["install_dir"], spec["state_dir"], spec["log_dir"]
    if not os.path.isdir(source) or (os.path.islink(source) and os.path.dirname(os.path.realpath(source)) ==
                                     os.path.realpath(spec["releases_dir"])):
        print(f"{source} is not a hand-installed folder; nothing to adopt")
        return
    real = os.path.realpath(source)  # a hand install reached through a link of its own: the folder moves
    config_file = spec.get("config_file") or os.path.join(source, "config", "config.json")
    if not os.path.exists(config_file):
        raise Failure(f"{config_file} is missing: not a Mattermost install this deploy can adopt")
    facts = config_facts(config_file, spec.get("run_dir") or source)
    with open(config_file) as f:
        engine, ds = database_of(json.load(f))
    if not ds:
        raise Failure(f"{config_file} has no DataSource this deploy can read (PostgreSQL URL or MySQL user:pw@tcp(...)/db)")
    if install_dir != source and os.path.lexists(install_dir) and not os.path.islink(install_dir):
        raise Failure(f"{install_dir} exists: the install in {source} cannot be linked there; move it away first")

    stamp = time.strftime("%Y%m%d-%H%M%S")
    kept = f"{real.rstrip('/')}.adopted-{stamp}"
    user = pwd.getpwnam(spec["user"])
    units = spec.get("units") or [spec.get("service", "mattermost") + ".service"]
    before = {u: (systemctl("is-active", u).stdout.strip(), systemctl("is-enabled", u).stdout.strip()) for u in units}
    copied, moved, disabled = [], [], []
    old_link = os.readlink(install_dir) if os.path.islink(install_dir) else None
    for unit in units:
        print(f"  stopping {unit} to take a consistent copy", flush=True)
        systemctl("stop", unit)
    try:
        config_dir = os.path.dirname(config_file)
        if os.path.realpath(config_dir) == os.path.realpath(os.path.join(source, "config")):
            pairs = [(config_dir, os.path.join(state_dir, "config"))]  # the folder, with what sits beside it
        else:
            dest = os.path.join(state_dir, "config")
            if os.path.isdir(dest) and os.listdir(dest):
                raise Failure(f"{dest} is not empty: adoption would mix two installs; move it away first")
            os.makedirs(dest, exist_ok=True)
            print(f"  copying {config_file} -> {dest}/config.json", flush=True)
            copied.append(dest)
            shutil.copy2(config_file, os.path.join(dest, "config.json"))
            run(["chown", f"{user.pw_uid}:{user.pw_gid}", os.path.join(dest, "config.json")])
            os.chmod(os.path.join(dest, "config.json"), 0o600)
            pairs = []
        pairs += [
            (facts["data_dir"], os.path.join(state_dir, "data")),
            (facts["plugins_dir"], os.path.join(state_dir, "plugins")),
            (facts["client_plugins_dir"], os.path.join(state_dir, "client-plugins")),
            (os.path.join(source, "logs"), log_dir),
        ]
        for src, dest in pairs:
            if os.path.isdir(src):
                _copy_into(src, dest, user, copied)
        # The password goes where the deploy keeps it; the role keeps working unchanged. (A
        # MySQL install keeps its DataSource in config.json until `make db-migrate`.)
        if engine == "postgres" and ds["password"] and read_password(spec["password_file"]) is None:
            write_private(spec["password_file"], ds["password"] + "\n")
        os.rename(real, kept)
        # The old units: kept for the way back, never started again. The deploy's own unit
        # file takes mattermost.service's place (a copy of the old one stays in the kept folder),
        # and drop-ins made for the old mattermost.service would change the new one: kept too.
        for unit in units:
            fragment = os.path.join("/etc/systemd/system", unit)
            if unit == spec.get("managed_unit", "mattermost.service"):
                if os.path.isfile(fragment):
                    shutil.copy2(fragment, os.path.join(kept, unit + ".orig"))
            elif before[unit][1] in ("enabled", "enabled-runtime", "linked", "alias"):
                systemctl("disable", unit)
                disabled.append(unit)
        dropins = os.path.join("/etc/systemd/system", spec.get("managed_unit", "mattermost.service") + ".d")
        if os.path.isdir(dropins):
            shutil.move(dropins, os.path.join(kept, os.path.basename(dropins) + ".orig"))
            moved.append((os.path.join(kept, os.path.basename(dropins) + ".orig"), dropins))
        systemctl("daemon-reload")
        if install_dir == source or not os.path.lexists(install_dir) or os.path.islink(install_dir):
            link_release(install_dir, os.path.join(spec["releases_dir"], spec["version"]))
        write_record(spec, {"from": source, "kept": kept, "config": config_file, "units": units,
                            "disabled": disabled, "at": stamp, "version": spec["version"]})
    except BaseException:
        print("  adoption failed: putting the old install back", flush=True)
        if os.path.islink(install_dir):
            os.unlink(install_dir)
        if old_link:
            os.symlink(old_link, install_dir)
        for src, dest in moved:
            if os.path.exists(src) and not os.path.exists(dest):
                shutil.move(src, dest)
        if os.path.isdir(kept) and not os.path.exists(real):
            os.rename(kept, real)
        for dest in copied:
            shutil.rmtree(dest, ignore_errors=True)
            os.makedirs(dest, exist_ok=True)
        for unit in disabled:
            systemctl("enable", unit)
        systemctl("daemon-reload")
        for unit, (active, _) in before.items():
            if active == "active":
                systemctl("start", unit)
        raise
    print(f"adopted {source}; the old folder is kept as {kept} - delete it once you are satisfied")
    for unit in disabled:
        print(f"  {unit} is stopped and disabled (its file is kept, for the way back)")


def write_record(spec, record):
    """What the adoption did, for the way back and for `make status`."""
    path = spec.get("record_file")
    if not path:
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(record, f, indent=1, sort_keys=True)
