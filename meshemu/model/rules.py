"""Calico's rules and the topology's cross-references, checked all at once.

Owns every semantic check on a parsed `Topology`: references between sections, address
overlaps, and the rules Calico itself enforces on IPPools, BGPPeers and Nodes. Each violation is
collected as a `Problem` with its location and a hint; nothing stops at the first one.
It must not decide anything the planner decides (addresses, blocks, sessions).
"""

from __future__ import annotations

import ipaddress
import itertools
import re

from meshemu.errors import Problem
from meshemu.model.addressing import IPNetwork, is_link_local, parse_network, parse_peer_ip
from meshemu.model.selector import SelectorError, parse_selector
from meshemu.model.topology import DNS_LABEL, Topology

IPV4_BLOCK_RANGE = (20, 32)
IPV6_BLOCK_RANGE = (116, 128)
DEFAULT_BLOCK_SIZE = {4: 26, 6: 122}
LABEL_KEY = re.compile(
    r"^([a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$"
)
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$")


def block_size_of(cidr: IPNetwork, block_size: int | None) -> int:
    return block_size if block_size is not None else DEFAULT_BLOCK_SIZE[cidr.version]


def check_topology(topo: Topology) -> list[Problem]:
    """Every problem in `topo`; an empty list means the planner may run."""
    problems: list[Problem] = []
    problems += _check_names(topo)
    problems += _check_subnets(topo)
    problems += _check_routers(topo)
    problems += _check_nodes(topo)
    problems += _check_pools(topo)
    problems += _check_peers(topo)
    return problems


def _check_names(topo: Topology) -> list[Problem]:
    problems = []
    for section, names in (
        ("subnets", topo.subnets),
        ("routers", topo.routers),
        ("nodes", topo.nodes),
        ("pools", topo.pools),
        ("bgp.peers", topo.bgp.peers),
    ):
        for name in names:
            if not DNS_LABEL.match(name):
                problems.append(
                    Problem(
                        f"{section}.{name}",
                        f"name {name!r} is not a DNS label",
                        "use lower-case letters, digits and '-' (it becomes part of namespace "
                        "and file names, so no spaces, dots, slashes or shell characters)",
                    )
                )
    clashes = set(topo.nodes) & set(topo.routers)
    for name in sorted(clashes):
        problems.append(
            Problem(f"routers.{name}", f"{name!r} is both a node and a router", "rename one")
        )
    return problems


def _check_subnets(topo: Topology) -> list[Problem]:
    problems = []
    prefixes: list[tuple[str, IPNetwork]] = []
    for name, subnet in topo.subnets.items():
        where = f"subnets.{name}"
        if subnet.ipv4 is None and subnet.ipv6 is None:
            problems.append(Problem(where, "has neither ipv4 nor ipv6", "give at least one prefix"))
        for family, prefix in (("ipv4", subnet.ipv4), ("ipv6", subnet.ipv6)):
            if prefix is None:
                continue
            if is_link_local(prefix):
                problems.append(
                    Problem(f"{where}.{family}", f"{prefix} is link-local", "use a routable range")
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
    problems = []
    for (loc_a, a), (loc_b, b) in itertools.combinations(prefixes, 2):
        if a.version == b.version and a.overlaps(b):
            problems.append(
                Problem(
                    loc_b, f"{b} overlaps {what} {a} at {loc_a}", f"give each {what} its own range"
                )
            )
    return problems


def _check_routers(topo: Topology) -> list[Problem]:
    problems = []
    for name, router in topo.routers.items():
        for index, subnet in enumerate(router.subnets):
            if subnet not in topo.subnets:
                problems.append(
                    Problem(
                        f"routers.{name}.subnets[{index}]",
                        f"unknown subnet {subnet!r}",
                        f"known subnets: {', '.join(sorted(topo.subnets))}",
                    )
                )
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


def _check_nodes(topo: Topology) -> list[Problem]:
    problems = []
    seen: dict[str, str] = {}
    for name, node in topo.nodes.items():
        where = f"nodes.{name}"
        subnet = topo.subnets.get(node.subnet)
        if subnet is None:
            problems.append(
                Problem(
                    f"{where}.subnet",
                    f"unknown subnet {node.subnet!r}",
                    f"known subnets: {', '.join(sorted(topo.subnets))}",
                )
            )
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
        for key, value in node.labels.items():
            if not LABEL_KEY.match(key):
                problems.append(
                    Problem(f"{where}.labels.{key}", f"{key!r} is not a Kubernetes label key", "")
                )
            if not LABEL_VALUE.match(value):
                problems.append(
                    Problem(
                        f"{where}.labels.{key}",
                        f"{value!r} is not a Kubernetes label value",
                        "at most 63 letters, digits, '-', '_' or '.', starting and ending "
                        "with a letter or digit",
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
        where = f"pools.{name}"
        problems += _check_selector(pool.node_selector, f"{where}.nodeSelector")
        try:
            cidr = parse_network(pool.cidr)
        except ValueError as err:
            problems.append(Problem(f"{where}.cidr", str(err), "write the network address"))
            continue
        cidrs.append((f"{where}.cidr", cidr))
        if is_link_local(cidr):
            problems.append(
                Problem(f"{where}.cidr", f"{cidr} overlaps the link-local range", "pick another")
            )
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


def _check_peers(topo: Topology) -> list[Problem]:
    problems: list[Problem] = []
    node_ips = {
        str(ip) for node in topo.nodes.values() for ip in (node.ipv4, node.ipv6) if ip is not None
    }
    for name, peer in topo.bgp.peers.items():
        where = f"bgp.peers.{name}"
        if peer.node is not None and peer.node_selector is not None:
            problems.append(Problem(where, "sets both node and nodeSelector", "keep one of them"))
        if peer.peer_ip is not None and peer.peer_selector is not None:
            problems.append(Problem(where, "sets both peerIP and peerSelector", "keep one of them"))
        if peer.peer_ip is None and peer.peer_selector is None:
            problems.append(
                Problem(where, "sets neither peerIP nor peerSelector", "say whom to peer with")
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
            # A peer that is not one of the cluster's nodes needs its AS; a node's AS is known.
            if peer.as_number is None and str(address) not in node_ips:
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
