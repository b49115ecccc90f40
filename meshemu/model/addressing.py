"""Small pure helpers on addresses shared by the rules, the planner and the agent."""

from __future__ import annotations

import ipaddress
import re

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_BRACKETED = re.compile(r"^\[(?P<ip>[0-9a-fA-F:.]+)\](?::(?P<port>\d+))?$")
_V4_PORT = re.compile(r"^(?P<ip>\d{1,3}(?:\.\d{1,3}){3})(?::(?P<port>\d+))?$")

LINK_LOCAL = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))


def parse_peer_ip(text: str) -> tuple[IPAddress, int | None]:
    """Parse a BGPPeer `peerIP`: `10.0.0.1`, `10.0.0.1:166`, `fd00::1` or `[fd00::1]:50`.

    Raises ValueError with a message fit for a user.
    """
    text = text.strip()
    match = _BRACKETED.match(text) or _V4_PORT.match(text)
    ip_text, port_text = (match["ip"], match["port"]) if match else (text, None)
    try:
        address = ipaddress.ip_address(ip_text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not an IP address (write 10.0.0.1, 10.0.0.1:179, fd00::1 "
            "or [fd00::1]:179)"
        ) from None
    port = None
    if port_text is not None:
        port = int(port_text)
        if not 1 <= port <= 65535:
            raise ValueError(f"port {port} in {text!r} is outside 1-65535")
    return address, port


def parse_network(text: str) -> IPNetwork:
    """A CIDR that must have no host bits set; the error says what the masked form is."""
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as err:
        try:
            masked = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ValueError(f"{text!r} is not an IPv4 or IPv6 CIDR ({err})") from None
        raise ValueError(
            f"{text!r} has host bits set; Calico stores the masked prefix {masked}"
        ) from None


def is_link_local(network: IPNetwork) -> bool:
    return any(network.version == ll.version and network.overlaps(ll) for ll in LINK_LOCAL)


def host_addresses(network: IPNetwork) -> list[IPAddress]:
    """Usable host addresses of a small subnet, in order (first 1024 at most)."""
    out: list[IPAddress] = []
    for address in network.hosts():
        out.append(address)
        if len(out) >= 1024:
            break
    return out
