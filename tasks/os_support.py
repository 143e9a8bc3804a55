"""Which operating systems the deploy meets: the Debian releases it is tested on, refused by
name before any change otherwise (pure: tested on the state read's OS facts)."""

from __future__ import annotations

# Tested here on real containers: 13 (trixie) first, 12 (bookworm), and 11 (bullseye), whose
# servers `make os-upgrade` carries on to 12 and 13.
TESTED_DEBIAN = ("11", "12", "13")
UPGRADE_GUIDE = "https://www.debian.org/releases/bullseye/amd64/release-notes/ch-upgrading.en.html"


def support(os_info: dict, allow_untested: bool) -> tuple[str | None, str | None]:
    """(why the server is refused, or None; what every run says of it, or None)."""
    distro, version = os_info.get("id"), str(os_info.get("version_id") or "")
    major = version.split(".")[0]
    if distro == "debian" and major in TESTED_DEBIAN:
        return None, None
    if distro == "debian" and major.isdigit() and int(major) < int(TESTED_DEBIAN[0]):
        return (f"Debian {version} ({os_info.get('codename')}) is older than this deploy supports: upgrade it to Debian "
                f"11 by hand first (Debian's guide: {UPGRADE_GUIDE}), then `make os-upgrade` goes on to 12 and 13"), None
    name = f"{'Debian' if distro == 'debian' else distro or 'an unknown system'} {version}".strip()
    if distro in ("debian", "ubuntu") and allow_untested:
        return None, (f"{name} is not tested by this deploy (tested: Debian {', '.join(TESTED_DEBIAN)}): "
                      "allow_untested_os is set, so it goes on - at your own risk")
    if distro in ("debian", "ubuntu"):
        return (f"{name} is not tested by this deploy (tested on real containers: Debian {', '.join(TESTED_DEBIAN)}): "
                "set allow_untested_os = True for this host to go on anyway"), None
    return f"this deploy supports Debian (and, untested, Ubuntu), found {name}", None
