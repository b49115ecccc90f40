"""Calico's rules and the topology's cross-references, checked all at once.

Owns every semantic check on a parsed `Topology`: references between sections, address
overlaps, and the rules Calico itself enforces on IPPools, BGPPeers and Nodes. Each violation is
collected as a `Problem` with its location and a hint; nothing stops at the first one.
It must not decide anything the planner decides (addresses, blocks, sessions).
"""

from __future__ import annotations

import ipaddress
import re

from meshemu.errors import Problem
from meshemu.model.addressing import (
    SPECIAL_HINT,
    IPAddress,
    IPNetwork,
    host_capacity,
    parse_network,
    parse_peer_ip,
    special_range,
)
from meshemu.model.selector import SelectorError, parse_selector
from meshemu.model.topology import DNS_LABEL, DNS_SUBDOMAIN, Topology, loc_part, parse_duration

IPV4_BLOCK_RANGE = (20, 32)
IPV6_BLOCK_RANGE = (116, 128)
DEFAULT_BLOCK_SIZE = {4: 26, 6: 122}
# Kubernetes label syntax (apimachinery validation.IsQualifiedName / IsValidLabelValue).
# Always used with `fullmatch`: `$` would accept a key or value ending in a newline.
LABEL_KEY = re.compile(
    r"([a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?"
)
LABEL_VALUE = re.compile(r"([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?")
FAMILIES = {"ipv4": 4, "ipv6": 6}
# A BGP password is the TCP MD5 key (RFC 2385) of the session: Linux takes at most
# TCP_MD5SIG_MAXKEYLEN bytes (include/uapi/linux/tcp.h), and ExaBGP refuses a longer one too
# (configuration/neighbor/__init__.py, MAX_MD5_PASSWORD_LENGTH).
MD5_KEY_MAX_BYTES = 80
# The graceful restart capability carries the restart time in 12 bits (RFC 4724 section 3):
# ExaBGP would send a longer one cut, and BIRD spills it into the capability's flags
# (`bgp_write_capabilities`, proto/bgp/packets.c), so that 4096 s reads as a restart.
MAX_RESTART_SECONDS = 0x0FFF


def block_size_of(cidr: IPNetwork, block_size: int | None) -> int:
    return block_size if block_size is not None else DEFAULT_BLOCK_SIZE[cidr.version]


def check_topology(topo: Topology) -> list[Problem]:
    """Every problem in `topo`; an empty list means the planner may run."""
    problems: list[Problem] = []
    problems += _check_names(topo)
    problems += _check_subnets(topo)
    problems += _check_routers(topo)
    problems += _check_router_addresses(topo)
    problems += _check_router_bgp(topo)
    problems += _check_nodes(topo)
    problems += _check_capacity(topo)
    problems += _check_pools(topo)
    problems += _check_peers(topo)
    problems += _check_passwords(topo)
    problems += _check_restart_times(topo)
    problems += _check_bird_nodes(topo)
    return problems


def _check_names(topo: Topology) -> list[Problem]:
    problems = []
    for section, names in (
        ("subnets", topo.subnets),
        ("routers", topo.routers),
        ("nodes", topo.nodes),
        ("bgp.peers", topo.bgp.peers),
    ):
        for name in names:
            if not DNS_LABEL.fullmatch(name):
                problems.append(
                    Problem(
                        f"{section}.{loc_part(name)}",
                        f"name {name!r} is not a DNS label",
                        "use lower-case letters, digits and '-' (it becomes part of namespace "
                        "and file names, so no spaces, dots, slashes or shell characters)",
                    )
                )
    # A pool's name only labels its addresses in the plan; like every Kubernetes object name
    # (and the names the operator makes from a CIDR, `192.168.0.0-18`) it may hold dots.
    for name in topo.pools:
        if not DNS_SUBDOMAIN.fullmatch(name):
            problems.append(
                Problem(
                    f"pools.{loc_part(name)}",
                    f"name {name!r} is not a Kubernetes object name (a DNS subdomain)",
                    "use lower-case letters, digits, '-' and '.', starting and ending with a "
                    "letter or digit",
                )
            )
    clashes = set(topo.nodes) & set(topo.routers)
    for name in sorted(clashes):
        problems.append(
            Problem(
                f"routers.{loc_part(name)}", f"{name!r} is both a node and a router", "rename one"
            )
        )
    return problems


def _check_subnets(topo: Topology) -> list[Problem]:
    problems = []
    prefixes: list[tuple[str, IPNetwork]] = []
    for name, subnet in topo.subnets.items():
        where = f"subnets.{loc_part(name)}"
        if subnet.ipv4 is None and subnet.ipv6 is None:
            problems.append(Problem(where, "has neither ipv4 nor ipv6", "give at least one prefix"))
        for family, prefix in (("ipv4", subnet.ipv4), ("ipv6", subnet.ipv6)):
            if prefix is None:
                continue
            special = special_range(prefix)
            if special is not None:
                problems.append(
                    Problem(f"{where}.{family}", f"{prefix} overlaps {special}", SPECIAL_HINT)
                )
            limit = 29 if prefix.version == 4 else 125
            if prefix.prefixlen > limit:
                problems.append(
                    Problem(
                        f"{where}.{family}",
                        f"{prefix} is too small for nodes and a router",
                        f"use a /{limit} or larger",
                    )
                )
            prefixes.append((f"{where}.{family}", prefix))
    problems += _overlaps(prefixes, "subnet")
    return problems


def _overlaps(prefixes: list[tuple[str, IPNetwork]], what: str) -> list[Problem]:
    """Each prefix that overlaps an earlier-sorted one, in O(n log n).

    Two CIDR prefixes either nest or are disjoint, so after sorting by address (and the
    shorter prefix first), a prefix overlaps another exactly when it lies inside one that is
    still open on a stack of nested prefixes.
    """
    order = sorted(
        range(len(prefixes)),
        key=lambda i: (
            prefixes[i][1].version,
            int(prefixes[i][1].network_address),
            prefixes[i][1].prefixlen,
            i,
        ),
    )
    problems = []
    open_: list[tuple[str, IPNetwork]] = []
    for index in order:
        loc_b, b = prefixes[index]
        while open_ and not (
            open_[-1][1].version == b.version and b.subnet_of(open_[-1][1])  # type: ignore[arg-type]
        ):
            open_.pop()
        if open_:
            loc_a, a = open_[-1]
            problems.append(
                Problem(
                    loc_b, f"{b} overlaps {what} {a} at {loc_a}", f"give each {what} its own range"
                )
            )
        open_.append((loc_b, b))
    return problems


def _check_routers(topo: Topology) -> list[Problem]:
    problems = []
    for name, router in topo.routers.items():
        first_at: dict[str, int] = {}
        for index, subnet in enumerate(router.subnets):
            where = f"routers.{loc_part(name)}.subnets[{index}]"
            if subnet not in topo.subnets:
                problems.append(
                    Problem(
                        where,
                        f"unknown subnet {subnet!r}",
                        f"known subnets: {', '.join(sorted(topo.subnets))}",
                    )
                )
            if subnet in first_at:
                # Each listed subnet becomes one interface: a repeat would give the router two
                # interfaces into one subnet, with the same name.
                problems.append(
                    Problem(
                        where,
                        f"lists subnet {subnet!r} again (first at subnets[{first_at[subnet]}])",
                        "a router has one interface per subnet: list each subnet once",
                    )
                )
            first_at.setdefault(subnet, index)
    # Nodes in subnets no chain of routers joins could never reach each other, yet the plan
    # would expect their sessions up and their routes learned.
    group = {name: name for name in topo.subnets}

    def root(name: str) -> str:
        while group[name] != name:
            name = group[name]
        return name

    for router in topo.routers.values():
        known = [s for s in router.subnets if s in group]
        for other in known[1:]:
            group[root(other)] = root(known[0])
    used = sorted({n.subnet for n in topo.nodes.values() if n.subnet in group})
    islands: dict[str, list[str]] = {}
    for name in used:
        islands.setdefault(root(name), []).append(name)
    if len(islands) > 1:
        parts = " | ".join(", ".join(names) for names in islands.values())
        problems.append(
            Problem(
                "routers",
                f"no router joins the node subnets {parts}: their nodes cannot reach each other",
                f"add a router, e.g. routers: {{spine: {{subnets: [{', '.join(used)}]}}}}",
            )
        )
    return problems


def _check_router_addresses(topo: Topology) -> list[Problem]:
    """Fixed router addresses: on a subnet the router is on, inside its prefix, used once."""
    problems = []
    fixed = {
        str(a): f"nodes.{loc_part(n)}"
        for n, spec in topo.nodes.items()
        for a in (spec.ipv4, spec.ipv6)
        if a is not None
    }
    for name, router in topo.routers.items():
        for subnet, pair in router.addresses.items():
            where = f"routers.{loc_part(name)}.addresses.{loc_part(subnet)}"
            if subnet not in router.subnets:
                problems.append(
                    Problem(
                        where,
                        f"the router is not on subnet {subnet!r}",
                        f"give addresses only for its subnets: {', '.join(router.subnets)}",
                    )
                )
                continue
            spec = topo.subnets.get(subnet)
            for family, address in (("ipv4", pair.ipv4), ("ipv6", pair.ipv6)):
                if address is None or spec is None:
                    continue
                prefix = spec.ipv4 if family == "ipv4" else spec.ipv6
                hint = f"use a host address of {prefix}" if prefix else "leave it out"
                if prefix is None or address not in prefix or address in _ends_of(prefix):
                    problems.append(
                        Problem(
                            f"{where}.{family}",
                            f"{address} is not a host address of subnet {subnet} "
                            f"({prefix or f'no {family} prefix'})",
                            hint,
                        )
                    )
                elif str(address) in fixed:
                    problems.append(
                        Problem(
                            f"{where}.{family}",
                            f"{address} is already the address of {fixed[str(address)]}",
                            "give each router and node its own address",
                        )
                    )
                else:
                    fixed[str(address)] = where
    return problems


def _ends_of(prefix: IPNetwork) -> tuple[IPAddress, ...]:
    """The addresses of a prefix no host may take (IPv4's network and broadcast addresses)."""
    if prefix.version == 4:
        return (prefix.network_address, prefix.broadcast_address)
    return (prefix.network_address,)


def _check_router_bgp(topo: Topology) -> list[Problem]:
    """A router's BGP peers: other BGP routers it shares a subnet with."""
    problems = []
    for name, router in topo.routers.items():
        if router.bgp is None:
            continue
        if router.bgp.router_id is not None and int(router.bgp.router_id) == 0:
            problems.append(
                Problem(
                    f"routers.{loc_part(name)}.bgp.routerID",
                    "0.0.0.0 is no BGP identifier (RFC 4271 6.2: BIRD refuses it)",
                    "leave routerID out (the router's first IPv4 address) or give another",
                )
            )
        for index, peer in enumerate(router.bgp.peers):
            where = f"routers.{loc_part(name)}.bgp.peers[{index}].router"
            other = topo.routers.get(peer.router)
            if peer.router == name:
                problems.append(Problem(where, "a router cannot peer with itself", "drop it"))
            elif other is None or other.bgp is None:
                speakers = sorted(r for r, spec in topo.routers.items() if spec.bgp and r != name)
                problems.append(
                    Problem(
                        where,
                        f"{peer.router!r} is not a router with bgp"
                        if other is not None
                        else f"unknown router {peer.router!r}",
                        f"routers that speak BGP: {', '.join(speakers) or 'none'}"
                        + ("; give it a bgp section" if other is not None else ""),
                    )
                )
            elif not set(router.subnets) & set(other.subnets):
                problems.append(
                    Problem(
                        where,
                        f"{name} and {peer.router} share no subnet, so they cannot peer directly",
                        f"put both on one subnet (routers.{peer.router}.subnets)",
                    )
                )
            if peer.password is not None:
                found = password_problem(
                    peer.password, f"routers.{loc_part(name)}.bgp.peers[{index}].password"
                )
                if found is not None:
                    problems.append(found)
        if router.bgp.node_password is not None:
            found = password_problem(
                router.bgp.node_password, f"routers.{loc_part(name)}.bgp.nodePassword"
            )
            if found is not None:
                problems.append(found)
    return problems


def _check_peer_router(topo: Topology, name: str, where: str) -> list[Problem]:
    """A `peerRouter` BGPPeer: a BGP router, named alone, on the subnet of every node it
    applies to (a node peers with the router's address on its own subnet)."""
    peer = topo.bgp.peers[name]
    problems = []
    if peer.peer_ip is not None or peer.peer_selector is not None:
        problems.append(
            Problem(
                where,
                "sets peerRouter together with peerIP or peerSelector",
                "keep one of them: peerRouter names the router, which knows its own addresses",
            )
        )
    router = topo.routers.get(peer.peer_router or "")
    if router is None or router.bgp is None:
        speakers = sorted(r for r, spec in topo.routers.items() if spec.bgp)
        problems.append(
            Problem(
                f"{where}.peerRouter",
                f"{peer.peer_router!r} is not a router with bgp"
                if router is not None
                else f"unknown router {peer.peer_router!r}",
                f"routers that speak BGP: {', '.join(speakers) or 'none'}",
            )
        )
        return problems
    problems += _check_selector(peer.node_selector, f"{where}.nodeSelector")
    if problems:
        return problems
    selector = parse_selector(peer.node_selector) if peer.node_selector else None
    for node_name, node in topo.nodes.items():
        applies = (
            node_name == peer.node
            if peer.node is not None
            else selector.matches(node.labels)
            if selector is not None
            else True
        )
        if applies and node.subnet not in router.subnets:
            problems.append(
                Problem(
                    f"{where}.peerRouter",
                    f"router {peer.peer_router} is not on subnet {node.subnet} of node "
                    f"{node_name}, which this BGPPeer applies to",
                    f"add {node.subnet} to routers.{peer.peer_router}.subnets, narrow the "
                    "BGPPeer with node or nodeSelector, or peer by peerIP",
                )
            )
    return problems


def node_families(topo: Topology, name: str) -> set[int]:
    """The address families node `name` gets an address in (4, 6): wanted and offered."""
    node = topo.nodes[name]
    subnet = topo.subnets.get(node.subnet)
    if subnet is None:
        return set()
    wanted = set(node.families) if node.families is not None else set(FAMILIES)
    offered = {f for f, prefix in (("ipv4", subnet.ipv4), ("ipv6", subnet.ipv6)) if prefix}
    return {FAMILIES[f] for f in wanted & offered}


def _check_families(topo: Topology, name: str) -> list[Problem]:
    """A node must end up with at least one address, and get every family it asks for."""
    node = topo.nodes[name]
    where = f"nodes.{loc_part(name)}"
    subnet = topo.subnets.get(node.subnet)
    if node.families is not None and not node.families:
        return [
            Problem(
                f"{where}.families",
                "is empty: the node would have no address",
                "list ipv4, ipv6 or both, or leave families out to use all the subnet has",
            )
        ]
    if subnet is None or node.families is None:
        return []
    problems = []
    missing = [f for f in dict.fromkeys(node.families) if getattr(subnet, f) is None]
    left = node_families(topo, name)
    for family in missing:
        outcome = ": the node would have no address at all" if not left else ""
        problems.append(
            Problem(
                f"{where}.families",
                f"asks for {family} but subnet {node.subnet!r} has no {family} prefix{outcome}",
                f"add {family} to subnets.{node.subnet} or drop it from families",
            )
        )
    return problems


def _check_nodes(topo: Topology) -> list[Problem]:
    problems = []
    seen: dict[str, str] = {}
    for name, node in topo.nodes.items():
        where = f"nodes.{loc_part(name)}"
        subnet = topo.subnets.get(node.subnet)
        if subnet is None:
            problems.append(
                Problem(
                    f"{where}.subnet",
                    f"unknown subnet {node.subnet!r}",
                    f"known subnets: {', '.join(sorted(topo.subnets))}",
                )
            )
        problems += _check_families(topo, name)
        for family, address in (("ipv4", node.ipv4), ("ipv6", node.ipv6)):
            if address is None:
                continue
            if node.families is not None and family not in node.families:
                problems.append(
                    Problem(
                        f"{where}.{family}",
                        f"an {family} address is given but families leaves {family} out",
                        f"add {family} to families or drop the address",
                    )
                )
            prefix = None if subnet is None else getattr(subnet, family)
            if subnet is not None and prefix is None:
                problems.append(
                    Problem(
                        f"{where}.{family}",
                        f"subnet {node.subnet!r} has no {family} prefix",
                        f"add {family} to subnets.{node.subnet} or drop this address",
                    )
                )
            elif prefix is not None and (
                address not in prefix
                or address in (prefix.network_address, getattr(prefix, "broadcast_address", None))
            ):
                problems.append(
                    Problem(
                        f"{where}.{family}",
                        f"{address} is not a host address of subnet {node.subnet} ({prefix})",
                        "pick an address inside the subnet, or leave it out to have one assigned",
                    )
                )
            if str(address) in seen:
                problems.append(
                    Problem(f"{where}.{family}", f"{address} is also {seen[str(address)]}", "")
                )
            seen[str(address)] = where
        cluster_id = node.route_reflector_cluster_id
        if cluster_id is not None:
            try:
                ipaddress.IPv4Address(cluster_id)
            except ValueError:
                problems.append(
                    Problem(
                        f"{where}.routeReflectorClusterID",
                        f"{cluster_id!r} is not in IPv4 address form",
                        "Calico wants a cluster ID like 224.0.0.1 (four dotted numbers)",
                    )
                )
        problems += _check_labels(node.labels, f"{where}.labels")
    return problems


def _check_labels(labels: dict[str, str], where: str) -> list[Problem]:
    problems = []
    for key, value in labels.items():
        if not LABEL_KEY.fullmatch(key):
            problems.append(
                Problem(
                    f"{where}.{loc_part(key)}",
                    f"{key!r} is not a Kubernetes label key",
                    "an optional DNS-subdomain prefix and '/', then at most 63 letters, digits, "
                    "'-', '_' or '.', starting and ending with a letter or digit",
                )
            )
        if not LABEL_VALUE.fullmatch(value):
            problems.append(
                Problem(
                    f"{where}.{loc_part(key)}",
                    f"{value!r} is not a Kubernetes label value",
                    "at most 63 letters, digits, '-', '_' or '.', starting and ending "
                    "with a letter or digit",
                )
            )
    return problems


def _check_capacity(topo: Topology) -> list[Problem]:
    """Every node and router of a subnet needs an address the planner can give out."""
    takers: dict[tuple[str, int], int] = {}
    for node_name, node in topo.nodes.items():
        for version in node_families(topo, node_name):
            takers[(node.subnet, version)] = takers.get((node.subnet, version), 0) + 1
    routers: dict[str, int] = {}
    for router in topo.routers.values():
        for subnet_name in set(router.subnets):
            routers[subnet_name] = routers.get(subnet_name, 0) + 1
    problems = []
    for name, subnet in topo.subnets.items():
        for family, prefix in (("ipv4", subnet.ipv4), ("ipv6", subnet.ipv6)):
            if prefix is None:
                continue
            nodes = takers.get((name, prefix.version), 0)
            room = host_capacity(prefix)
            if nodes + routers.get(name, 0) > room:
                problems.append(
                    Problem(
                        f"subnets.{loc_part(name)}.{family}",
                        f"{nodes} nodes and {routers.get(name, 0)} routers need an address in "
                        f"{prefix}, which has room for {room}",
                        "use a larger prefix or spread the nodes over more subnets",
                    )
                )
    return problems


def _check_selector(text: str | None, where: str) -> list[Problem]:
    if text is None:
        return []
    try:
        parse_selector(text)
    except SelectorError as err:
        return [
            Problem(
                where,
                f"invalid selector {text!r}: {err.reason} at character {err.position}",
                _SELECTOR_HINT,
            )
        ]
    return []


_SELECTOR_HINT = "Calico selectors look like has(key), key == 'value', key in {'a','b'}, all()"


def _check_pools(topo: Topology) -> list[Problem]:
    problems: list[Problem] = []
    cidrs: list[tuple[str, IPNetwork]] = []
    for name, pool in topo.pools.items():
        where = f"pools.{loc_part(name)}"
        problems += _check_selector(pool.node_selector, f"{where}.nodeSelector")
        try:
            cidr = parse_network(pool.cidr)
        except ValueError as err:
            problems.append(Problem(f"{where}.cidr", str(err), "write the network address"))
            continue
        cidrs.append((f"{where}.cidr", cidr))
        special = special_range(cidr)
        if special is not None:
            problems.append(Problem(f"{where}.cidr", f"{cidr} overlaps {special}", SPECIAL_HINT))
        if cidr.version == 6 and pool.ipip_mode != "Never":
            problems.append(
                Problem(
                    f"{where}.ipipMode",
                    f"ipipMode {pool.ipip_mode} on IPv6 pool {cidr}: IP-in-IP is IPv4-only "
                    "and Calico rejects it",
                    "set ipipMode: Never and use vxlanMode: "
                    f"{pool.ipip_mode} for an overlay, or vxlanMode: Never to route IPv6 natively",
                )
            )
        if pool.ipip_mode != "Never" and pool.vxlan_mode != "Never":
            problems.append(
                Problem(
                    where,
                    f"ipipMode {pool.ipip_mode} and vxlanMode {pool.vxlan_mode} are both on",
                    "a pool uses one encapsulation: set one of them to Never",
                )
            )
        low, high = IPV4_BLOCK_RANGE if cidr.version == 4 else IPV6_BLOCK_RANGE
        size = block_size_of(cidr, pool.block_size)
        if not low <= size <= high:
            problems.append(
                Problem(
                    f"{where}.blockSize",
                    f"blockSize {size} is outside {low}-{high} for an IPv{cidr.version} pool",
                    f"Calico's default is {DEFAULT_BLOCK_SIZE[cidr.version]}",
                )
            )
        elif cidr.prefixlen > size:
            problems.append(
                Problem(
                    f"{where}.cidr",
                    f"{cidr} is smaller than one block (/{size})",
                    f"use a prefix of /{size} or shorter, or a larger blockSize",
                )
            )
        for subnet_name, subnet in topo.subnets.items():
            for prefix in (subnet.ipv4, subnet.ipv6):
                if prefix is not None and prefix.version == cidr.version and prefix.overlaps(cidr):
                    problems.append(
                        Problem(
                            f"{where}.cidr",
                            f"{cidr} overlaps subnet {subnet_name} ({prefix})",
                            "pod addresses must not collide with node addresses",
                        )
                    )
    problems += _overlaps(cidrs, "pool")
    return problems


def _automatic_prefixes(topo: Topology) -> set[IPNetwork]:
    """Subnet prefixes in which the planner gives some node an address of its own choosing."""
    out: set[IPNetwork] = set()
    for name, node in topo.nodes.items():
        subnet = topo.subnets.get(node.subnet)
        if subnet is None:
            continue
        for family in node_families(topo, name):
            fixed = node.ipv4 if family == 4 else node.ipv6
            prefix = subnet.ipv4 if family == 4 else subnet.ipv6
            if fixed is None and prefix is not None:
                out.add(prefix)
    return out


def _check_peers(topo: Topology) -> list[Problem]:
    problems: list[Problem] = []
    node_ips = {
        str(ip) for node in topo.nodes.values() for ip in (node.ipv4, node.ipv6) if ip is not None
    }
    automatic = _automatic_prefixes(topo)
    for name, peer in topo.bgp.peers.items():
        where = f"bgp.peers.{loc_part(name)}"
        if peer.node is not None and peer.node_selector is not None:
            problems.append(Problem(where, "sets both node and nodeSelector", "keep one of them"))
        if peer.peer_ip is not None and peer.peer_selector is not None:
            problems.append(Problem(where, "sets both peerIP and peerSelector", "keep one of them"))
        if peer.peer_router is not None:
            problems += _check_peer_router(topo, name, where)
            continue
        if peer.peer_ip is None and peer.peer_selector is None:
            problems.append(
                Problem(
                    where,
                    "sets neither peerIP nor peerSelector (nor peerRouter)",
                    "say whom to peer with",
                )
            )
        if peer.node is not None and peer.node not in topo.nodes:
            problems.append(
                Problem(
                    f"{where}.node",
                    f"unknown node {peer.node!r}",
                    f"known nodes: {', '.join(sorted(topo.nodes))}",
                )
            )
        problems += _check_selector(peer.node_selector, f"{where}.nodeSelector")
        problems += _check_selector(peer.peer_selector, f"{where}.peerSelector")
        if peer.peer_ip is not None:
            try:
                address, _port = parse_peer_ip(peer.peer_ip)
            except ValueError as err:
                problems.append(Problem(f"{where}.peerIP", str(err), ""))
                continue
            # Any address in any range, as libcalico-go accepts it (validator.go
            # validateIPPort): one in a special range (multicast ffee::10 in confd's own
            # tests) cannot be a lab node's, so it is an external peer whose session is
            # planned and stays down (phases/notes.py says why).
            # A peer that is not one of the cluster's nodes needs its AS; a node's AS is known.
            # An address in a subnet where the planner assigns node addresses may turn out to
            # be a node's: the planner resolves it (it alone decides those addresses).
            maybe_node = str(address) in node_ips or any(address in p for p in automatic)
            problems += _peer_in_pool(topo, address, f"{where}.peerIP")
            if peer.as_number is None and not maybe_node:
                problems.append(
                    Problem(
                        f"{where}.asNumber",
                        f"peer {address} is not a node of this cluster and has no asNumber",
                        "give the external peer's AS number",
                    )
                )
        elif peer.as_number is not None and peer.peer_selector is not None:
            problems.append(
                Problem(
                    f"{where}.asNumber",
                    "asNumber is set with peerSelector",
                    "the peers' AS comes from the selected nodes; drop asNumber",
                )
            )
    return problems


def _peer_in_pool(topo: Topology, address: IPAddress, where: str) -> list[Problem]:
    """A BGP peer at an address of an IP pool: that address belongs to a pod (Calico hands it
    out), so nothing else can be there, and traffic to it follows the pod routes."""
    for name, pool in topo.pools.items():
        try:
            network = parse_network(pool.cidr)
        except ValueError:
            continue  # reported where the pool is checked
        if address.version == network.version and address in network:
            return [
                Problem(
                    where,
                    f"{address} is inside IP pool {name} ({network}): Calico gives those "
                    "addresses to pods, so no BGP peer can be there",
                    "use the peer's real address (a router or node address outside the pools)",
                )
            ]
    return []


def password_problem(password: str, where: str) -> Problem | None:
    """Why `password` cannot be a TCP MD5 key, or None when it can.

    The key is the password's UTF-8 bytes (what BIRD uses for the same Secret: it reads its
    configuration as bytes), and `model.render` carries any such key to ExaBGP exactly. What is
    left to refuse: text with no UTF-8 form (a lone surrogate, from a `\\ud800` escape) and a key
    longer than Linux takes. The message never repeats the password: it is a secret.
    """
    try:
        size = len(password.encode("utf-8"))
    except UnicodeEncodeError:
        return Problem(
            where,
            "is not valid Unicode text (it holds half of a surrogate pair, as from a \\ud800 "
            "escape)",
            "write the password as plain characters",
        )
    bad = next((c for c in ('"', "\n", "\r", "\0") if c in password), None)
    if bad is not None or not password:
        # confd writes the password into `password "<text>";` for BIRD, whose strings have no
        # escapes and end at a quote or a line end (BIRD conf/cf-lex.l); a NUL cuts it short.
        what = "is empty" if bad is None else f"holds the character {bad!r}"
        return Problem(
            where,
            f"{what}: Calico's BIRD cannot hold it (confd writes it inside a BIRD string, "
            "which has no escapes), so no Calico node could use this password",
            "use a non-empty password without quotes, line breaks or NUL characters",
        )
    if size > MD5_KEY_MAX_BYTES:
        return Problem(
            where,
            f"is {size} bytes long in UTF-8; a BGP (TCP MD5) password is at most "
            f"{MD5_KEY_MAX_BYTES} bytes (Linux TCP_MD5SIG_MAXKEYLEN)",
            f"use a password of at most {MD5_KEY_MAX_BYTES} bytes "
            "(a character outside ASCII takes 2 to 4)",
        )
    return None


def _check_passwords(topo: Topology) -> list[Problem]:
    """Every BGP password the sessions use: the mesh's and each BGPPeer's.

    A bundle's passwords come from Secrets; `load` points these locations at the Secret's key,
    naming the BGPConfiguration or BGPPeer field that refers to it.
    """
    found: list[Problem | None] = []
    if topo.bgp.node_mesh_password is not None:
        found.append(password_problem(topo.bgp.node_mesh_password, "bgp.nodeMeshPassword"))
    for name, peer in topo.bgp.peers.items():
        if peer.password is not None:
            found.append(password_problem(peer.password, f"bgp.peers.{loc_part(name)}.password"))
    return [problem for problem in found if problem is not None]


def _check_restart_times(topo: Topology) -> list[Problem]:
    """Every graceful restart time the sessions advertise: the mesh's and each BGPPeer's."""
    found = [("bgp.nodeMeshMaxRestartTime", topo.bgp.node_mesh_max_restart_time)]
    for name, peer in topo.bgp.peers.items():
        found.append((f"bgp.peers.{loc_part(name)}.maxRestartTime", peer.max_restart_time))
    problems = []
    for where, text in found:
        seconds = parse_duration(text)
        if seconds is not None and seconds > MAX_RESTART_SECONDS:
            problems.append(
                Problem(
                    where,
                    f"{text} is more than the {MAX_RESTART_SECONDS} s BGP's graceful restart "
                    "capability can carry",
                    f"use at most {MAX_RESTART_SECONDS}s (68 minutes)",
                )
            )
    return problems


def _check_bird_nodes(topo: Topology) -> list[Problem]:
    """A BIRD node (`speaker: bird`) cannot be where BIRD programs IPIP pools' routes.

    With BGPConfiguration `programClusterRoutes` Enabled or EnabledIPIPOnly (BIRD owns IPIP,
    confd bgp_processor.go:1158-1192), confd's kernel filter sets `krt_tunnel` for every IPv4
    IPIP pool (extraStatementForKernelProgrammingIPIPNoEncap, bgp_processor.go:1211-1224; a
    disabled pool too: processIPPools does not look at `disabled`). Only Calico's BIRD fork
    knows that attribute: Debian's BIRD 1.6, which meshemu's BIRD nodes run, refuses the file.
    Felix-owned IPIP pools (Calico's default) and VXLAN pools are fine: the lab's route
    programmer writes Felix's routes on BIRD nodes too, and the kernel filter only rejects
    them. One problem per pool, at the node's `speaker` (or the lab's, when the node takes
    the lab's).
    """
    value = topo.bgp.program_cluster_routes
    # clusterRoutePolicyFromBGPConfig: BIRD's `ipip` share; without BGP no BIRD runs.
    if not topo.bgp.enabled or value not in ("Enabled", "EnabledIPIPOnly"):
        return []
    ipip = []
    for name, pool in topo.pools.items():
        # poolUsesVXLAN first, then poolUsesIPIP (processIPPool, bgp_processor.go:1115-1131)
        if pool.vxlan_mode != "Never" or pool.ipip_mode not in ("Always", "CrossSubnet"):
            continue
        try:
            if parse_network(pool.cidr).version == 4:  # krt_tunnel is IPv4's only
                ipip.append((name, pool.ipip_mode))
        except ValueError:
            continue  # reported by _check_pools
    problems: list[Problem] = []
    reported: set[tuple[str, str]] = set()
    for node_name, node in topo.nodes.items():
        if (node.speaker or topo.speaker) != "bird" or 4 not in node_families(topo, node_name):
            continue
        where = f"nodes.{loc_part(node_name)}.speaker" if node.speaker else "speaker"
        for pool_name, mode in ipip:
            if (where, pool_name) in reported:
                continue
            reported.add((where, pool_name))
            who = f"node {node_name} runs" if node.speaker else "the lab's nodes run"
            problems.append(
                Problem(
                    where,
                    f"{who} BIRD 1.6, and bgp.programClusterRoutes {value} makes BIRD program "
                    f"the routes of IPIP pool {pool_name} (ipipMode {mode}): confd's kernel "
                    "filter then sets krt_tunnel, which only Calico's BIRD fork knows; "
                    "Debian's BIRD 1.6 refuses that configuration",
                    "keep Felix programming IPIP routes, Calico's default: set "
                    "bgp.programClusterRoutes to EnabledNoEncapOnly (or Disabled), or use "
                    "speaker: exabgp for this node",
                )
            )
    return problems
