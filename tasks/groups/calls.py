"""settings.calls: the ports of Mattermost's Calls media (opened in the firewall while Calls is
allowed) and the address clients are told to send media to behind NAT."""

from __future__ import annotations

from dataclasses import dataclass

from tasks.groups import checks


@dataclass(frozen=True)
class Calls:
    udp_port: int = 8443
    tcp_port: int = 8443
    ice_host_override: str | None = None


def build(get) -> tuple[Calls, list[str]]:
    ice = get("calls_ice_host_override") or None
    problems = checks.found(
        checks.port("calls_udp_port", get("calls_udp_port")), checks.port("calls_tcp_port", get("calls_tcp_port")),
        f"calls_ice_host_override must be the server's public IP address or name, not {ice!r}"
        if ice and checks.host_name("calls_ice_host_override", ice) else None)
    return Calls(udp_port=get("calls_udp_port"), tcp_port=get("calls_tcp_port"), ice_host_override=ice), problems
