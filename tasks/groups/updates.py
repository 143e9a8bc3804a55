"""settings.updates: Debian's unattended security upgrades between patch nights, and patch
night itself (which packages mean a reboot, which services are never restarted while
running, how long a reboot may take)."""

from __future__ import annotations

from dataclasses import dataclass, field

from tasks.groups import checks


@dataclass(frozen=True)
class Updates:
    unattended: bool = True
    unattended_reboot_time: str | None = None
    reboot_packages: list = field(default_factory=list)
    never_restart: list = field(default_factory=list)
    reboot_timeout: int = 600
    require_rehearsal_days: int | None = None  # patch night upgrades only after a passed rehearsal this recent


def build(get) -> tuple[Updates, list[str]]:
    reboot_time = get("unattended_upgrades_reboot_time") or None
    problems = checks.found(
        checks.time_of_day("unattended_upgrades_reboot_time", reboot_time, optional=True),
        checks.number("patch_reboot_timeout", get("patch_reboot_timeout"), 30, what="a number of seconds"),
        checks.number("patch_require_rehearsal_days", get("patch_require_rehearsal_days"), 1, what="a number of days")
        if get("patch_require_rehearsal_days") is not None else None)
    return Updates(unattended=bool(get("unattended_upgrades")), unattended_reboot_time=reboot_time,
                   reboot_packages=list(get("patch_reboot_packages") or []),
                   never_restart=list(get("patch_never_restart") or []),
                   reboot_timeout=get("patch_reboot_timeout"),
                   require_rehearsal_days=get("patch_require_rehearsal_days")), problems
