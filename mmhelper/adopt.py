"""Adopting a hand install (Mattermost's tarball guide) into the managed layout.
"""

import json
import os
import pwd
import shutil
import stat
import time

from mmhelper import mysql
from mmhelper.common import Failure, link_release, read_password, run, systemctl, write_private
from mmhelper.config import get_dotted, parse_datasource


def database_of(config):
    """(engine, parsed DataSource or None): "postgres" or "mysql" as config.json says (an
    old install's DriverName may be "mysql" with Go's MySQL DSN form)."""
    value = get_dotted(config, "SqlSettings.DataSource")[0]
    if get_dotted(config, "SqlSettings.DriverName")[0] == "mysql":
        return "mysql", mysql.parse_mysql_datasource(value)
    return "postgres", parse_datasource(value)


def adoption_facts(install_dir):
    """What a hand-installed /opt/mattermost holds (no secrets)."""
    facts = {"config": None}
    config_file = os.path.join(install_dir, "config", "config.json")
    if os.path.exists(config_file):
        with open(config_file) as f:
            config = json.load(f)
        engine, ds = database_of(config)
        facts["config"] = config_file
        facts["engine"] = engine
        facts["datasource"] = {k: v for k, v in (ds or {}).items() if k != "password"} or None
        facts["has_password"] = bool(ds and ds["password"])
        facts["files_dir"] = get_dotted(config, "FileSettings.Directory")[0]
        facts["driver"] = get_dotted(config, "FileSettings.DriverName")[0]
        facts["s3"] = {k: get_dotted(config, f"FileSettings.AmazonS3{k}")[0] for k in ("Bucket", "Endpoint")}
    return facts


def adopt(spec):
    """Move a hand-installed /opt/mattermost (official tarball guide) into the managed
    layout: config, data, plugins and logs are copied into the state folders, the old
    folder is renamed (kept until the operator deletes it) and /opt/mattermost becomes
    the link to the verified release. Undone completely when a step fails."""
    install_dir, state_dir, log_dir = spec["install_dir"], spec["state_dir"], spec["log_dir"]
    if os.path.islink(install_dir) or not os.path.isdir(install_dir):
        print(f"{install_dir} is not a hand-installed folder; nothing to adopt")
        return
    old_config = os.path.join(install_dir, "config", "config.json")
    if not os.path.exists(old_config):
        raise Failure(f"{install_dir} has no config/config.json: not a Mattermost install this deploy can adopt")
    with open(old_config) as f:
        config = json.load(f)
    engine, ds = database_of(config)
    if not ds:
        raise Failure(f"{old_config} has no DataSource this deploy can read (PostgreSQL URL or MySQL user:pw@tcp(...)/db)")
    files_dir = get_dotted(config, "FileSettings.Directory")[0] or "./data/"
    data_src = os.path.normpath(os.path.join(install_dir, files_dir))
    if not data_src.startswith(install_dir.rstrip("/") + "/"):
        raise Failure(f"FileSettings.Directory is {files_dir}, outside {install_dir}: set "
                      "mattermost_config 'FileSettings.Directory' to it before adopting")

    stamp = time.strftime("%Y%m%d-%H%M%S")
    kept = f"{install_dir}.adopted-{stamp}"
    user = pwd.getpwnam(spec["user"])
    service = spec.get("service", "mattermost")
    was_active = systemctl("is-active", service).stdout.strip() == "active"
    copied = []
    print(f"  stopping {service} to take a consistent copy", flush=True)
    systemctl("stop", service)
    try:
        # Copies, never hard links: Mattermost rewrites some stored files in place (O_TRUNC in
        # platform/shared/filestore/localstore.go), which would change the kept old folder too.
        # --reflink=auto makes the copy instant where the file system can share blocks.
        pairs = [
            (os.path.join(install_dir, "config"), os.path.join(state_dir, "config")),
            (data_src, os.path.join(state_dir, "data")),
            (os.path.join(install_dir, "plugins"), os.path.join(state_dir, "plugins")),
            (os.path.join(install_dir, "client", "plugins"), os.path.join(state_dir, "client-plugins")),
            (os.path.join(install_dir, "logs"), log_dir),
        ]
        for src, dest in pairs:
            if not os.path.isdir(src):
                continue
            if os.path.isdir(dest) and os.listdir(dest):
                raise Failure(f"{dest} is not empty: adoption would mix two installs; move it away first")
            print(f"  copying {src} -> {dest}", flush=True)
            os.makedirs(dest, exist_ok=True)
            copied.append(dest)
            dest_mode = stat.S_IMODE(os.stat(dest).st_mode)
            run(["cp", "-a", "--reflink=auto", "--", src + "/.", dest])
            run(["chown", "-R", f"{user.pw_uid}:{user.pw_gid}", dest])
            os.chmod(dest, dest_mode)  # cp -a carried the old folder's mode over
        # The password goes where the deploy keeps it; the role keeps working unchanged. (A
        # MySQL install keeps its DataSource in config.json until `make db-migrate`.)
        if engine == "postgres" and ds["password"] and read_password(spec["password_file"]) is None:
            write_private(spec["password_file"], ds["password"] + "\n")
        unit = spec.get("unit_file")
        if unit and os.path.exists(unit):
            shutil.copy2(unit, os.path.join(install_dir, os.path.basename(unit) + ".orig"))
        os.rename(install_dir, kept)
        link_release(install_dir, os.path.join(spec["releases_dir"], spec["version"]))
    except BaseException:
        print("  adoption failed: putting the old install back", flush=True)
        if os.path.islink(install_dir):
            os.unlink(install_dir)
        if os.path.isdir(kept) and not os.path.exists(install_dir):
            os.rename(kept, install_dir)
        for dest in copied:
            shutil.rmtree(dest, ignore_errors=True)
            os.makedirs(dest, exist_ok=True)
        if was_active:
            systemctl("start", service)
        raise
    print(f"adopted {install_dir}; the old folder is kept as {kept} - delete it once you are satisfied")
