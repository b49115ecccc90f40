"""Small pure helpers on addresses shared by the rules, the planner and the agent.

Owns parsing of address text the way meshemu accepts it (no interface scope, no IPv4-mapped
IPv6 but as a BGP peer's IPv4 address, ASCII digits only), the list of ranges no lab address
may come from, and which kind of address an external BGP peer in one of them is.
"""

from __future__ import annotations

import ipaddress
import re

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# re.ASCII: `\d` would otherwise match other scripts' digits, and `int()` reads them.
_BRACKETED = re.compile(r"\[(?P<ip>[0-9a-fA-F:.]+)\](?::(?P<port>\d+))?", re.ASCII)
_V4_PORT = re.compile(r"(?P<ip>\d{1,3}(?:\.\d{1,3}){3})(?::(?P<port>\d+))?", re.ASCII)

LINK_LOCAL = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))

# Ranges that cannot hold a lab's subnets, pools or node addresses: the kernel treats them
# specially (loopback, multicast, link-local) or they are not unicast addresses at all. Calico
# itself only rejects link-local pools (libcalico-go lib/validator/v3/validator.go,
# `overlapsV4LinkLocal`); the others would be accepted by Calico and then fail in the kernel, so
# meshemu rejects them there. A BGPPeer's peerIP may be in any of them (Calico's validateIPPort
# only parses it): such a peer is outside the lab, planned and never reached (`special_kind`).
# Each range: (network, description for a problem, one word for the kind of address).
SPECIAL_RANGES: tuple[tuple[IPNetwork, str, str], ...] = (
    (
        ipaddress.ip_network("0.0.0.0/8"),
        "the unspecified ('this network') range 0.0.0.0/8",
        "unspecified",
    ),
    (ipaddress.ip_network("127.0.0.0/8"), "the loopback range 127.0.0.0/8", "loopback"),
    (LINK_LOCAL[0], "the link-local range 169.254.0.0/16", "link-local"),
    (ipaddress.ip_network("224.0.0.0/4"), "the multicast range 224.0.0.0/4", "multicast"),
    (
        ipaddress.ip_network("240.0.0.0/4"),
        "the reserved range 240.0.0.0/4 (and broadcast)",
        "reserved",
    ),
    (ipaddress.ip_network("::/128"), "the unspecified address ::", "unspecified"),
    (ipaddress.ip_network("::1/128"), "the loopback address ::1", "loopback"),
    (ipaddress.ip_network("::ffff:0:0/96"), "the IPv4-mapped range ::ffff:0:0/96", "IPv4-mapped"),
    (LINK_LOCAL[1], "the link-local range fe80::/10", "link-local"),
    (ipaddress.ip_network("ff00::/8"), "the multicast range ff00::/8", "multicast"),
)
SPECIAL_HINT = (
    "use a private unicast range: 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16 for IPv4, "
    "fd00::/8 for IPv6"
)
_BROADCAST = ipaddress.IPv4Address("255.255.255.255")


def special_range(network: IPNetwork) -> str | None:
    """The special range `network` overlaps (described for a user), or None."""
    for special, description, _kind in SPECIAL_RANGES:
        if special.version == network.version and network.overlaps(special):
            return description
    return None


def special_kind(address: IPAddress) -> str | None:
    """What kind of non-unicast address `address` is ("multicast", "loopback", ...), or None
    for an ordinary unicast address."""
    if address == _BROADCAST:
        return "broadcast"
    for special, _description, kind in SPECIAL_RANGES:
        if address.version == special.version and address in special:
            return kind
    return None


def ipv4_mapped(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an `::ffff:a.b.c.d` address stands for, else None."""
    return address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None


def parse_peer_ip(text: str) -> tuple[IPAddress, int | None]:
    """Parse a BGPPeer `peerIP`: `10.0.0.1`, `10.0.0.1:166`, `fd00::1` or `[fd00::1]:50`.

    Accepts what libcalico-go accepts (lib/validator/v3/validator.go `processIPPort`: an
    address Go's net.ParseIP reads, optionally with a port 1-65535), in any range; an
    IPv4-mapped IPv6 address is returned as its IPv4 address, as Calico uses it.
    Raises ValueError with a message fit for a user.
    """
    text = text.strip()
    match = _BRACKETED.fullmatch(text) or _V4_PORT.fullmatch(text)
    ip_text, port_text = (match["ip"], match["port"]) if match else (text, None)
    if "%" in ip_text:
        raise ValueError(f"{text!r} carries an interface scope (%...): write the address alone")
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
    # Go's net.ParseIP reads `::ffff:a.b.c.d` as the IPv4 address a.b.c.d (To4 is not nil and
    # String prints it dotted), so confd keys such a BGPPeer as an IPv4 peer (client.go
    # updatePeersV1, peer_v4/<a.b.c.d>) and renders it in bird.cfg.
    mapped = ipv4_mapped(address)
    return (mapped if mapped is not None else address), port


def parse_network(text: str) -> IPNetwork:
    """A CIDR that must have no host bits set; the error says what the masked form is."""
    if "%" in text:
        raise ValueError(f"{text!r} carries an interface scope (%...): write the prefix alone")
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


def host_capacity(network: IPNetwork) -> int:
    """How many host addresses `network` has (without the IPv4 network and broadcast address
    and the IPv6 subnet-router anycast address, as the planner hands them out)."""
    if network.version == 4 and network.prefixlen <= 30:
        hosts = network.num_addresses - 2
    elif network.version == 6 and network.prefixlen <= 126:
        hosts = network.num_addresses - 1
    else:
        hosts = network.num_addresses
    return hosts
