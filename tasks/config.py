"""config.json: the deploy merges only the keys it owns (tasks.common.desired_config plus
the operator's mattermost_config) into the existing file. Everything an admin sets in
the System Console survives every run. 0600, owned by the service user."""

from __future__ import annotations

import json

from pyinfra import host, logger, state
from pyinfra.api import operation

from tasks.common import current, desired_config, helper, managed_file, settings
from tasks.release import decision


@operation()
def owned_keys_merged(force: bool = False):
    """Merge the owned keys into config.json when one differs (or the file is new)."""
    s, now = settings(), current()
    config = now["config"]
    if config.get("error"):
        raise ValueError(config["error"])
    if config["exists"] and not config["differs"] and not force:
        host.noop("config.json has every owned key as wanted")
        return
    if state.config.DIFF:
        wanted = desired_config(s)
        for key in config["differs"]:
            value = wanted[key]
            if isinstance(value, dict) and "$if_section" in value:
                value = value["$if_section"]
            shown = "postgres://...:********@..." if isinstance(value, dict) else json.dumps(value)
            logger.info(f"    {key}: {json.dumps(config['current'].get(key))} -> {shown}")
    yield helper("merge-config", {
        "desired_file": s.managed_config_file,
        "config_file": s.config_file,
        "seed_file": f"{s.release_dir(decision().target)}/config.dist/config.json",
        "password_file": s.password_file,
        "user": s.user,
    })


def configure(password_op):
    s = settings()
    managed_file(
        name="Write the settings the deploy owns (/etc/mattermost/managed-config.json)",
        path=s.managed_config_file, content=json.dumps(desired_config(s), indent=2, sort_keys=True) + "\n")
    return owned_keys_merged(
        name="Merge the owned settings into config.json (System Console changes are kept)",
        force=password_op.will_change)
