"""Passes 1-3: subnets, routers (interface addresses, static routes) and node addresses.

Owns who gets which address in a subnet: fixed node and router addresses and the addresses a
running lab already gave its nodes (`Sticky`) are reserved first; then routers, in input order,
take their fixed address or the next free host addresses, then nodes without one. The first
router on a subnet is its nodes' default router. Addresses are taken lazily from the subnet, so
any subnet size works (a /16 holds 65,534 nodes) in time proportional to the addresses handed
out.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import networkx as nx

from meshemu.errors import Problem
from meshemu.model import names
from meshemu.model.addressing import IPAddress
from meshemu.model.labplan import RouterInterface, RouterPlan, StaticRoute, Sticky, SubnetPlan
from meshemu.model.topology import Topology

FAMILIES = (4, 6)


def plan_subnets(topo: Topology) -> tuple[SubnetPlan, ...]:
    """Pass 1: the subnets in input order, each with its bridge in the fabric namespace."""
    return tuple(
        SubnetPlan(
            name=name,
            index=index,
            ipv4=str(spec.ipv4) if spec.ipv4 else None,
            ipv6=str(spec.ipv6) if spec.ipv6 else None,
            bridge=names.bridge_ifname(index),
        )
        for index, (name, spec) in enumerate(topo.subnets.items())
    )


@dataclass(frozen=True)
class NodeAddresses:
    """Pass 3's result: each node's address per family (absent: the node has none)."""

    by_node: Mapping[str, Mapping[int, str]]

    def of(self, node: str, family: int) -> str | None:
        return self.by_node[node].get(family)

    def families(self, node: str) -> frozenset[int]:
        return frozenset(self.by_node[node])


class _Hosts:
    """The free host addresses of one subnet prefix, handed out in order."""

    def __init__(self, prefix: str, taken: set[str]) -> None:
        self.network = ipaddress.ip_network(prefix)
        self._hosts: Iterator[IPAddress] = iter(self.network.hosts())
        self.taken = taken

    def take(self) -> str | None:
        for address in self._hosts:
            text = str(address)
            if text not in self.taken:
                self.taken.add(text)
                return text
        return None


def _prefix(subnet: SubnetPlan, family: int) -> str | None:
    return subnet.ipv4 if family == 4 else subnet.ipv6


def _wanted(topo: Topology, node: str) -> frozenset[int]:
    spec = topo.nodes[node]
    return frozenset(int(f[3:]) for f in (spec.families or ("ipv4", "ipv6")))


def kept_addresses(
    topo: Topology, subnets: Sequence[SubnetPlan], sticky: Sticky | None
) -> dict[tuple[str, int], str]:
    """The addresses a running lab's nodes keep: same subnet, still inside its prefix.

    (A node added with a fixed address that a running node keeps is the caller's to refuse:
    `scenario.changes` names the step that does it.)
    """
    if sticky is None:
        return {}
    by_name = {s.name: s for s in subnets}
    kept: dict[tuple[str, int], str] = {}
    for name, (subnet, addresses) in sticky.addresses.items():
        spec = topo.nodes.get(name)
        if spec is None or spec.subnet != subnet or subnet not in by_name:
            continue
        for family, address in addresses.items():
            prefix = _prefix(by_name[subnet], family)
            if family not in _wanted(topo, name) or prefix is None:
                continue
            try:
                inside = ipaddress.ip_address(address) in ipaddress.ip_network(prefix)
            except ValueError:
                inside = False
            if inside:
                kept[(name, family)] = address
    return kept


def _reserved(topo: Topology, kept: Mapping[tuple[str, int], str]) -> set[str]:
    fixed = {str(a) for n in topo.nodes.values() for a in (n.ipv4, n.ipv6) if a is not None}
    fixed |= {
        str(a)
        for r in topo.routers.values()
        for pair in r.addresses.values()
        for a in (pair.ipv4, pair.ipv6)
        if a is not None
    }
    return fixed | set(kept.values())


def plan_routers(
    topo: Topology, subnets: Sequence[SubnetPlan], kept: Mapping[tuple[str, int], str]
) -> tuple[tuple[RouterPlan, ...], list[Problem]]:
    """Pass 2: each router's interfaces (next free addresses) and its static routes."""
    problems: list[Problem] = []
    by_name = {s.name: s for s in subnets}
    taken = _reserved(topo, kept)
    hosts = {
        (s.name, f): _Hosts(p, taken) for s in subnets for f in FAMILIES if (p := _prefix(s, f))
    }
    routers = []
    graph: nx.Graph = nx.Graph()
    for r_index, (rname, rspec) in enumerate(topo.routers.items()):
        interfaces = []
        for sname in rspec.subnets:
            subnet = by_name[sname]
            address: dict[int, str | None] = {}
            fixed = rspec.addresses.get(sname)
            for family in FAMILIES:
                free = hosts.get((sname, family))
                pinned = None if fixed is None else fixed.ipv4 if family == 4 else fixed.ipv6
                if pinned is not None and free is not None:
                    address[family] = str(pinned)  # (`rules` checked it is in the subnet)
                    continue
                address[family] = free.take() if free is not None else None
                if free is not None and address[family] is None:
                    problems.append(_full(f"routers.{rname}", sname, family))
            interfaces.append(
                RouterInterface(
                    subnet=sname,
                    ifname=names.router_ifname(subnet.index),
                    fabric_ifname=names.fabric_port_ifname("r", r_index, subnet.index),
                    ipv4=address[4],
                    ipv6=address[6],
                    mac=names.mac_address(topo.name, f"{rname}.{sname}"),
                )
            )
            graph.add_edge(("router", rname), ("subnet", sname))
        routers.append(RouterPlan(rname, names.node_netns(topo.name, rname), tuple(interfaces), ()))
    return tuple(_with_static_routes(r, routers, subnets, graph) for r in routers), problems


def _full(where: str, subnet: str, family: int) -> Problem:
    return Problem(
        where, f"subnet {subnet} has no free IPv{family} address left", "use a larger prefix"
    )


def _with_static_routes(
    router: RouterPlan,
    routers: Sequence[RouterPlan],
    subnets: Sequence[SubnetPlan],
    graph: nx.Graph,
) -> RouterPlan:
    """Routes to subnets this router is not on, via the next router on the shortest path."""
    attached = {i.subnet for i in router.interfaces}
    by_name = {r.name: r for r in routers}
    routes = []
    for subnet in subnets:
        if subnet.name in attached or not graph.has_node(("subnet", subnet.name)):
            continue
        try:
            path = nx.shortest_path(graph, ("router", router.name), ("subnet", subnet.name))
        except nx.NetworkXNoPath:
            continue
        # path: router, subnet(shared), next router, ...
        shared, next_router = path[1][1], path[2][1]
        hop_iface = next(i for i in by_name[next_router].interfaces if i.subnet == shared)
        for family in FAMILIES:
            prefix, via = _prefix(subnet, family), hop_iface.address(family)
            if prefix is not None and via is not None:
                routes.append(StaticRoute(prefix, via))
    return RouterPlan(router.name, router.netns, router.interfaces, tuple(routes))


def gateways(routers: Sequence[RouterPlan]) -> dict[tuple[str, int], str]:
    """(subnet, family) -> the address of the first router on it: its nodes' default router."""
    out: dict[tuple[str, int], str] = {}
    for router in routers:
        for interface in router.interfaces:
            for family in FAMILIES:
                address = interface.address(family)
                if address is not None:
                    out.setdefault((interface.subnet, family), address)
    return out


def plan_node_addresses(
    topo: Topology,
    subnets: Sequence[SubnetPlan],
    routers: Sequence[RouterPlan],
    kept: Mapping[tuple[str, int], str],
) -> tuple[NodeAddresses, list[Problem]]:
    """Pass 3: per node and family, its fixed address, the one it keeps, or the next free one
    of its subnet (after the routers'); none where the node leaves the family out."""
    problems: list[Problem] = []
    taken = _reserved(topo, kept) | {
        a for r in routers for i in r.interfaces for f in FAMILIES if (a := i.address(f))
    }
    by_name = {s.name: s for s in subnets}
    hosts = {
        (s.name, f): _Hosts(p, taken) for s in subnets for f in FAMILIES if (p := _prefix(s, f))
    }
    out: dict[str, dict[int, str]] = {}
    for name, spec in topo.nodes.items():
        wanted = _wanted(topo, name)
        out[name] = {}
        for family, fixed in ((4, spec.ipv4), (6, spec.ipv6)):
            address: str | None
            if fixed is not None:
                address = str(fixed)
            elif family not in wanted or _prefix(by_name[spec.subnet], family) is None:
                address = None
            elif (name, family) in kept:
                address = kept[(name, family)]
            else:
                address = hosts[(spec.subnet, family)].take()
                if address is None:
                    problems.append(_full(f"nodes.{name}", spec.subnet, family))
            if address is not None:
                out[name][family] = address
    return NodeAddresses(out), problems
