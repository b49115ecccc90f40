"""The resolved, frozen lab plan: everything decided before the kernel is touched.

Owns turning a validated `Topology` into a `LabPlan`: namespace and interface names, node and
router addresses, gateways and router static routes, IPAM blocks and pod addresses, every
node's BGP sessions (`model.sessions`), and the *expected* RIB (`model.bgp.propagate`) and FIB
(`model.routes`) of every node: the oracle `verify` compares the running lab against.
Also the plan's JSON form, whose field names CI jobs rely on.
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass, field
from typing import Any

import networkx as nx

from meshemu.errors import ConfigError, Problem
from meshemu.model import names
from meshemu.model.addressing import IPAddress, host_addresses, parse_network
from meshemu.model.bgp import Adjacency, Link, Path, Speaker, propagate, router_id_for
from meshemu.model.ipam import NodeInput, PoolInput, allocate
from meshemu.model.routes import FibRoute, PoolRule, RouteContext, route_for
from meshemu.model.rules import block_size_of
from meshemu.model.sessions import Session, SessionNode, plan_sessions
from meshemu.model.topology import Topology


@dataclass(frozen=True)
class SubnetPlan:
    name: str
    index: int
    ipv4: str | None
    ipv6: str | None
    bridge: str


@dataclass(frozen=True)
class RouterInterface:
    subnet: str
    ifname: str
    fabric_ifname: str
    ipv4: str | None
    ipv6: str | None
    mac: str


@dataclass(frozen=True)
class StaticRoute:
    prefix: str
    via: str


@dataclass(frozen=True)
class RouterPlan:
    name: str
    netns: str
    interfaces: tuple[RouterInterface, ...]
    routes: tuple[StaticRoute, ...]


@dataclass(frozen=True)
class PodPlan:
    name: str
    node: str
    netns: str
    host_ifname: str
    ipv4: str | None
    ipv6: str | None
    pool4: str | None
    pool6: str | None


@dataclass(frozen=True)
class Block:
    cidr: str
    pool: str


@dataclass(frozen=True)
class RibEntry:
    """A best path in a node's Loc-RIB, as the plan expects it."""

    prefix: str
    next_hop: str
    origin_node: str
    learned_from: str | None
    as_path: tuple[int, ...]
    originator_id: str | None
    cluster_list: tuple[str, ...]
    paths: int  # how many candidate paths the node holds for the prefix


@dataclass(frozen=True)
class Vtep:
    family: int
    address: str
    mac: str


@dataclass(frozen=True)
class NodePlan:
    name: str
    index: int
    netns: str
    subnet: str
    ipv4: str | None
    ipv6: str | None
    ipv4_prefix: str | None  # the node's subnet prefix (Calico: prefix of bgp.ipv4Address)
    ipv6_prefix: str | None
    gateway4: str | None
    gateway6: str | None
    uplink: str
    uplink_mac: str
    fabric_ifname: str
    as_number: int
    router_id: str
    cluster_id: str | None
    listen_port: int
    labels: tuple[tuple[str, str], ...]
    blocks: tuple[Block, ...]
    pods: tuple[PodPlan, ...]
    ipip_tunnel_address: str | None
    vteps: tuple[Vtep, ...]
    sessions: tuple[Session, ...]
    # Peer addresses of the sessions that can come up in the lab (both ends configured, an
    # active side that connects to a listening port, matching AS numbers and passwords).
    expected_up: tuple[str, ...]
    rib: tuple[RibEntry, ...]
    fib: tuple[FibRoute, ...]

    def address(self, family: int) -> str | None:
        return self.ipv4 if family == 4 else self.ipv6


@dataclass(frozen=True)
class PoolPlan:
    name: str
    cidr: str
    block_size: int
    ipip_mode: str
    vxlan_mode: str
    nat_outgoing: bool
    node_selector: str
    disable_bgp_export: bool
    disabled: bool
    rule: str

    def route_rule(self) -> PoolRule:
        return PoolRule(self.name, self.cidr, self.ipip_mode, self.vxlan_mode)


@dataclass(frozen=True)
class LabPlan:
    name: str
    description: str
    fabric_netns: str
    as_number: int
    mesh: bool
    subnets: tuple[SubnetPlan, ...]
    routers: tuple[RouterPlan, ...]
    nodes: tuple[NodePlan, ...]
    pools: tuple[PoolPlan, ...]
    hold_time: int
    unsupported: tuple[tuple[str, str], ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    def node(self, name: str) -> NodePlan:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        """The machine form; field names are a contract (see the README)."""
        return plan_to_json(self)


def _mac_for(lab: str, node: str, family: int) -> str:
    import hashlib

    digest = hashlib.sha1(f"{lab}.{node}.vtep{family}".encode()).digest()
    # Locally administered, unicast.
    octets = [0x66, *digest[:5]]
    return ":".join(f"{b:02x}" for b in octets)


@dataclass(frozen=True)
class Sticky:
    """What a running lab has already handed out, kept by every later plan of it.

    Like Calico's block affinities and pod IPs: a live change moves only what it must. Saved
    in the lab's state folder (`to_json`), so the running lab's plan can be rebuilt exactly.
    """

    addresses: dict[str, tuple[str, dict[int, str]]]  # node -> (subnet, family -> address)
    affinity: dict[str, list[tuple[str, str]]]  # node -> [(pool, block)]
    pods: dict[str, list[dict[int, tuple[str, str]]]]  # node -> per pod: family -> (pool, ip)

    @classmethod
    def of(cls, plan: LabPlan) -> Sticky:
        pods_before = _pods_before(plan) or {}
        return cls(
            addresses={
                n.name: (n.subnet, {f: a for f in (4, 6) if (a := n.address(f)) is not None})
                for n in plan.nodes
            },
            affinity={n.name: [(b.pool, b.cidr) for b in n.blocks] for n in plan.nodes},
            pods=pods_before,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "addresses": {
                n: {"subnet": subnet, "ipv4": a.get(4), "ipv6": a.get(6)}
                for n, (subnet, a) in self.addresses.items()
            },
            "affinity": {n: [list(x) for x in blocks] for n, blocks in self.affinity.items()},
            "pods": {
                n: [{f"ipv{f}": list(v) for f, v in pod.items()} for pod in pods]
                for n, pods in self.pods.items()
            },
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Sticky:
        return cls(
            addresses={
                n: (v["subnet"], {f: v[f"ipv{f}"] for f in (4, 6) if v.get(f"ipv{f}")})
                for n, v in data["addresses"].items()
            },
            affinity={n: [(p, b) for p, b in blocks] for n, blocks in data["affinity"].items()},
            pods={
                n: [{int(k[3:]): (v[0], v[1]) for k, v in pod.items()} for pod in pods]
                for n, pods in data["pods"].items()
            },
        )


def build_plan(
    topo: Topology, previous: LabPlan | None = None, sticky: Sticky | None = None
) -> LabPlan:
    """Decide the whole lab; raise ConfigError for valid-looking input that cannot be planned.

    `previous` (or its `Sticky` record): the plan of the running lab this topology changes;
    nodes keep their addresses and block affinities and pods their addresses.
    """
    if sticky is None and previous is not None:
        sticky = Sticky.of(previous)
    problems: list[Problem] = []
    subnets = tuple(
        SubnetPlan(
            name=name,
            index=index,
            ipv4=str(spec.ipv4) if spec.ipv4 else None,
            ipv6=str(spec.ipv6) if spec.ipv6 else None,
            bridge=names.bridge_ifname(index),
        )
        for index, (name, spec) in enumerate(topo.subnets.items())
    )
    subnet_by_name = {s.name: s for s in subnets}

    # Addresses: fixed ones first, then routers, then nodes take the next free host addresses.
    kept_address: dict[tuple[str, int], str] = {}
    if sticky is not None:
        for old_name, (old_subnet, old_addresses) in sticky.addresses.items():
            spec = topo.nodes.get(old_name)
            if spec is not None and spec.subnet == old_subnet:
                for family, old_address in old_addresses.items():
                    kept_address[(old_name, family)] = old_address
    taken: set[str] = {
        str(a) for n in topo.nodes.values() for a in (n.ipv4, n.ipv6) if a is not None
    } | set(kept_address.values())
    free: dict[tuple[str, int], list[IPAddress]] = {}
    for subnet in subnets:
        for family, prefix in ((4, subnet.ipv4), (6, subnet.ipv6)):
            if prefix is not None:
                free[(subnet.name, family)] = [
                    a for a in host_addresses(parse_network(prefix)) if str(a) not in taken
                ]

    def take(subnet: str, family: int, where: str) -> str | None:
        pool = free.get((subnet, family))
        if pool is None:
            return None
        if not pool:
            problems.append(
                Problem(
                    where,
                    f"subnet {subnet} has no free IPv{family} address left",
                    "use a larger prefix",
                )
            )
            return None
        return str(pool.pop(0))

    routers: list[RouterPlan] = []
    first_router_addr: dict[tuple[str, int], str] = {}
    graph: nx.Graph = nx.Graph()
    for r_index, (rname, rspec) in enumerate(topo.routers.items()):
        interfaces = []
        for sname in rspec.subnets:
            subnet = subnet_by_name[sname]
            v4 = take(sname, 4, f"routers.{rname}")
            v6 = take(sname, 6, f"routers.{rname}")
            for family, addr in ((4, v4), (6, v6)):
                if addr is not None:
                    first_router_addr.setdefault((sname, family), addr)
            interfaces.append(
                RouterInterface(
                    subnet=sname,
                    ifname=names.router_ifname(subnet.index),
                    fabric_ifname=names.fabric_port_ifname("r", r_index, subnet.index),
                    ipv4=v4,
                    ipv6=v6,
                    mac=names.mac_address(topo.name, f"{rname}.{sname}"),
                )
            )
            graph.add_edge(("router", rname), ("subnet", sname))
        routers.append(RouterPlan(rname, names.node_netns(topo.name, rname), tuple(interfaces), ()))
    routers = [_with_static_routes(r, routers, subnets, graph) for r in routers]

    node_addr: dict[str, dict[int, str | None]] = {}
    for name, spec in topo.nodes.items():
        wanted = set(spec.families or ("ipv4", "ipv6"))
        node_addr[name] = {
            family: (
                str(fixed)
                if fixed is not None
                else kept_address[(name, family)]
                if (name, family) in kept_address and f"ipv{family}" in wanted
                else take(spec.subnet, family, f"nodes.{name}")
                if f"ipv{family}" in wanted
                else None
            )
            for family, fixed in ((4, spec.ipv4), (6, spec.ipv6))
        }

    # IPAM.
    pool_plans = tuple(
        PoolPlan(
            name=name,
            cidr=str(parse_network(p.cidr)),
            block_size=block_size_of(parse_network(p.cidr), p.block_size),
            ipip_mode=p.ipip_mode,
            vxlan_mode=p.vxlan_mode,
            nat_outgoing=p.nat_outgoing,
            node_selector=p.node_selector,
            disable_bgp_export=p.disable_bgp_export,
            disabled=p.disabled,
            rule=PoolRule(name, p.cidr, p.ipip_mode, p.vxlan_mode).rule_text(),
        )
        for name, p in topo.pools.items()
    )
    allocations, ipam_problems = allocate(
        [
            PoolInput(
                p.name,
                parse_network(p.cidr),
                p.block_size,
                p.node_selector,
                p.ipip_mode != "Never",
                p.vxlan_mode != "Never",
                p.disabled,
            )
            for p in pool_plans
        ],
        [
            NodeInput(
                name,
                dict(spec.labels),
                spec.pods,
                frozenset(f for f in (4, 6) if node_addr[name][f] is not None),
            )
            for name, spec in topo.nodes.items()
        ],
        affinity=sticky.affinity if sticky is not None else None,
        pods_before=sticky.pods if sticky is not None else None,
    )
    problems += ipam_problems
    if problems:
        raise ConfigError(problems)

    session_nodes = [
        SessionNode(
            name=name,
            ipv4=_maybe_ip(node_addr[name][4]),
            ipv6=_maybe_ip(node_addr[name][6]),
            as_number=spec.as_number or topo.bgp.as_number,
            cluster_id=spec.route_reflector_cluster_id,
            labels=dict(spec.labels),
            listen_port=spec.listen_port or topo.bgp.listen_port,
        )
        for name, spec in topo.nodes.items()
    ]
    try:
        sessions = plan_sessions(session_nodes, topo.bgp)
    except ValueError as err:
        raise ConfigError([Problem("bgp", str(err), "")]) from None

    # Expected RIB: run BGP over the sessions that can come up in the lab.
    speakers = {
        n.name: Speaker(
            name=n.name,
            router_id=router_id_for(node_addr[n.name][4], n.name),
            as_number=n.as_number,
            cluster_id=n.cluster_id,
            addresses={f: a for f, a in node_addr[n.name].items() if a is not None},
        )
        for n in session_nodes
    }
    by_name_sn = {n.name: n for n in session_nodes}
    adjacencies = _adjacencies(sessions, by_name_sn)
    exported_pools = {p.name for p in pool_plans if not p.disable_bgp_export}
    originated: dict[str, list[Path]] = {}
    for name in topo.nodes:
        for pool_name, block in allocations[name].blocks:
            if pool_name in exported_pools:
                originated.setdefault(name, []).append(
                    Path(prefix=str(block), next_hop=node_addr[name][block.version] or "")
                )
    ribs = propagate(speakers, adjacencies, originated)
    owner_of_block = {
        str(block): name for name in topo.nodes for _, block in allocations[name].blocks
    }

    vtep_by_node_ip: dict[str, str] = {}
    for name in topo.nodes:
        for family, address in allocations[name].vxlan_tunnel.items():
            node_ip = node_addr[name][family]
            if node_ip is not None:
                vtep_by_node_ip[node_ip] = str(address)
    rules = [p.route_rule() for p in pool_plans]

    node_plans = []
    for index, (name, spec) in enumerate(topo.nodes.items()):
        alloc = allocations[name]
        subnet = subnet_by_name[spec.subnet]
        gateway = {f: first_router_addr.get((spec.subnet, f)) for f in (4, 6)}
        ctx = RouteContext(
            node_subnet={
                f: p
                for f, p in ((4, subnet.ipv4), (6, subnet.ipv6))
                if p is not None and node_addr[name][f] is not None
            },
            gateway={f: g for f, g in gateway.items() if g is not None},
            vteps=vtep_by_node_ip,
        )
        pods = tuple(
            PodPlan(
                name=f"pod{i + 1}",
                node=name,
                netns=names.pod_netns(topo.name, name, f"pod{i + 1}"),
                host_ifname=names.pod_host_ifname(topo.name, name, f"pod{i + 1}"),
                ipv4=str(addrs[4][1]) if 4 in addrs else None,
                ipv6=str(addrs[6][1]) if 6 in addrs else None,
                pool4=addrs[4][0] if 4 in addrs else None,
                pool6=addrs[6][0] if 6 in addrs else None,
            )
            for i, addrs in enumerate(alloc.pod_addresses)
        )
        rib_entries = []
        fib: list[FibRoute] = []
        for prefix, (chosen, candidates) in sorted(
            ribs.get(name, {}).items(), key=lambda kv: _net_key(kv[0])
        ):
            origin = owner_of_block.get(prefix, "?")
            rib_entries.append(
                RibEntry(
                    prefix=prefix,
                    next_hop=chosen.next_hop,
                    origin_node=origin,
                    learned_from=chosen.learned_from,
                    as_path=chosen.as_path,
                    originator_id=chosen.originator_id,
                    cluster_list=chosen.cluster_list,
                    paths=len(candidates),
                )
            )
            if chosen.learned_from is not None:
                fib.append(route_for(prefix, chosen.next_hop, rules, ctx))
        for pool_name, block in alloc.blocks:
            fib.append(
                FibRoute(
                    str(block),
                    "blackhole",
                    reason=f"own block of pool {pool_name}: unused addresses are dropped here, "
                    "not sent back to the default route",
                )
            )
        for pod in pods:
            for pod_ip in (pod.ipv4, pod.ipv6):
                if pod_ip is not None:
                    plen = 32 if ":" not in pod_ip else 128
                    fib.append(
                        FibRoute(
                            f"{pod_ip}/{plen}",
                            "unicast",
                            None,
                            pod.host_ifname,
                            False,
                            f"pod {pod.name} on this node",
                        )
                    )
        fib.sort(key=lambda r: (_net_key(r.prefix), r.type))
        vteps = tuple(
            Vtep(f, str(a), _mac_for(topo.name, name, f))
            for f, a in sorted(alloc.vxlan_tunnel.items())
        )
        node_plans.append(
            NodePlan(
                name=name,
                index=index,
                netns=names.node_netns(topo.name, name),
                subnet=spec.subnet,
                ipv4=node_addr[name][4],
                ipv6=node_addr[name][6],
                ipv4_prefix=subnet.ipv4 if node_addr[name][4] else None,
                ipv6_prefix=subnet.ipv6 if node_addr[name][6] else None,
                gateway4=gateway[4],
                gateway6=gateway[6],
                uplink=names.UPLINK,
                uplink_mac=names.mac_address(topo.name, name),
                fabric_ifname=names.fabric_port_ifname("n", index),
                as_number=by_name_sn[name].as_number,
                router_id=speakers[name].router_id,
                cluster_id=spec.route_reflector_cluster_id,
                listen_port=by_name_sn[name].listen_port,
                labels=tuple(sorted(spec.labels.items())),
                blocks=tuple(Block(str(b), p) for p, b in alloc.blocks),
                pods=pods,
                ipip_tunnel_address=str(alloc.ipip_tunnel) if alloc.ipip_tunnel else None,
                vteps=vteps,
                sessions=sessions[name],
                expected_up=tuple(sorted(a.link.peer_ip for a in adjacencies if a.speaker == name)),
                rib=tuple(rib_entries),
                fib=tuple(fib),
            )
        )
    notes = _notes(node_plans, adjacencies, sessions)
    for node in node_plans:
        asked = topo.nodes[node.name].pods
        if asked and not node.pods:
            notes.append(
                f"{node.name}: no enabled IP pool selects this node, so it runs none of its "
                f"{asked} pods (Calico could give them no address)"
            )
    return LabPlan(
        name=topo.name,
        description=topo.description,
        fabric_netns=names.fabric_netns(topo.name),
        as_number=topo.bgp.as_number,
        mesh=topo.bgp.node_to_node_mesh_enabled,
        subnets=subnets,
        routers=tuple(routers),
        nodes=tuple(node_plans),
        pools=pool_plans,
        hold_time=topo.bgp.hold_time,
        unsupported=tuple(topo.unsupported),
        notes=tuple(notes),
    )


def _pods_before(previous: LabPlan | None) -> dict[str, list[dict[int, tuple[str, str]]]] | None:
    """Each running pod's pool and address per family, which a live change keeps."""
    if previous is None:
        return None
    out: dict[str, list[dict[int, tuple[str, str]]]] = {}
    for node in previous.nodes:
        pods = []
        for pod in node.pods:
            kept: dict[int, tuple[str, str]] = {}
            if pod.pool4 is not None and pod.ipv4 is not None:
                kept[4] = (pod.pool4, pod.ipv4)
            if pod.pool6 is not None and pod.ipv6 is not None:
                kept[6] = (pod.pool6, pod.ipv6)
            pods.append(kept)
        out[node.name] = pods
    return out


def _maybe_ip(text: str | None) -> IPAddress | None:
    return ipaddress.ip_address(text) if text is not None else None


def _net_key(prefix: str) -> tuple[int, int, int]:
    network = ipaddress.ip_network(prefix)
    return (network.version, int(network.network_address), network.prefixlen)


def session_can_establish(
    mine: Session, theirs: Session, me: SessionNode, peer: SessionNode
) -> bool:
    """Both ends configured, AS numbers agree, and an active side connects to a listening port."""
    if mine.peer_as != theirs.local_as or theirs.peer_as != mine.local_as:
        return False
    if (mine.password or None) != (theirs.password or None):
        return False
    i_connect = not mine.passive and mine.peer_port == peer.listen_port
    they_connect = not theirs.passive and theirs.peer_port == me.listen_port
    return i_connect or they_connect


def _adjacencies(
    sessions: dict[str, tuple[Session, ...]], nodes: dict[str, SessionNode]
) -> list[Adjacency]:
    out = []
    for name, mine in sessions.items():
        for session in mine:
            if session.peer_node is None:
                continue
            back = next(
                (s for s in sessions.get(session.peer_node, ()) if s.peer_ip == session.local_ip),
                None,
            )
            if back is None:
                continue
            if not session_can_establish(session, back, nodes[name], nodes[session.peer_node]):
                continue
            out.append(
                Adjacency(
                    speaker=name,
                    peer=session.peer_node,
                    link=Link(
                        peer_ip=session.peer_ip,
                        peer_as=session.peer_as,
                        local_as=session.local_as,
                        rr_client=session.rr_client,
                        keep_next_hop=session.keep_next_hop,
                        allow_local_as=session.allow_local_as or 0,
                    ),
                )
            )
    return out


def _notes(
    nodes: list[NodePlan], adjacencies: list[Adjacency], sessions: dict[str, tuple[Session, ...]]
) -> list[str]:
    notes = []
    up = {(a.speaker, a.link.peer_ip) for a in adjacencies}
    for node in nodes:
        for session in sessions[node.name]:
            if session.peer_node is None:
                notes.append(
                    f"{node.name}: session to external peer {session.peer_ip} has no speaker in "
                    "the lab and stays down"
                )
            elif (node.name, session.peer_ip) not in up:
                notes.append(
                    f"{node.name}: session to {session.peer_node} ({session.peer_ip}:"
                    f"{session.peer_port}) cannot come up: the other side has no matching "
                    "session, or neither side connects to a port the other listens on"
                )
    for node in nodes:
        # Unencapsulated routes whose BGP next hop is in another subnet resolve through the
        # default router, which knows no pod routes: say so, not only in each route's reason.
        next_hop = {r.prefix: r.next_hop for r in node.rib if r.learned_from is not None}
        via_router = [
            r
            for r in node.fib
            if r.prefix in next_hop
            and r.via is not None
            and r.via != next_hop[r.prefix]
            and r.via in (node.gateway4, node.gateway6)
        ]
        if via_router:
            notes.append(
                f"{node.name}: {', '.join(r.prefix for r in via_router)} "
                f"{'is' if len(via_router) == 1 else 'are'} across subnets in a pool without "
                f"encapsulation (mode Never), so traffic goes to the default router "
                f"{', '.join(sorted({r.via or '' for r in via_router}))}, which knows no pod "
                "routes: those pods are unreachable unless the routers learn pod routes"
            )
    block_count = {n.name: len(n.blocks) for n in nodes}
    for node in nodes:
        learned = {r.origin_node for r in node.rib if r.learned_from is not None}
        missing = sorted(
            other.name
            for other in nodes
            if other.name != node.name and block_count[other.name] and other.name not in learned
        )
        if missing:
            notes.append(f"{node.name}: learns no routes from {', '.join(missing)}")
    return notes


def _with_static_routes(
    router: RouterPlan, routers: list[RouterPlan], subnets: tuple[SubnetPlan, ...], graph: nx.Graph
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
        for prefix, via in ((subnet.ipv4, hop_iface.ipv4), (subnet.ipv6, hop_iface.ipv6)):
            if prefix is not None and via is not None:
                routes.append(StaticRoute(prefix, via))
    return RouterPlan(router.name, router.netns, router.interfaces, tuple(routes))


def plan_to_json(plan: LabPlan) -> dict[str, Any]:
    def session_json(s: Session) -> dict[str, Any]:
        return {
            "peer_ip": s.peer_ip,
            "peer_port": s.peer_port,
            "peer_as": s.peer_as,
            "local_as": s.local_as,
            "local_ip": s.local_ip,
            "family": f"ipv{s.family}",
            "kind": s.kind,
            "passive": s.passive,
            "rr_client": s.rr_client,
            "cluster_id": s.cluster_id,
            "password": s.password is not None,
            "peer_node": s.peer_node,
            "source": s.source,
            "source_address": s.source_address,
            "keep_next_hop": s.keep_next_hop,
            "graceful_restart_time": s.graceful_restart_time,
            "allow_local_as": s.allow_local_as,
            "reason": s.reason,
        }

    def route_json(r: FibRoute) -> dict[str, Any]:
        return {
            "prefix": r.prefix,
            "via": r.via,
            "dev": r.dev,
            "onlink": r.onlink,
            "type": r.type,
            "reason": r.reason,
        }

    return {
        "name": plan.name,
        "description": plan.description,
        "fabric_netns": plan.fabric_netns,
        "as_number": plan.as_number,
        "node_to_node_mesh": plan.mesh,
        "hold_time": plan.hold_time,
        "subnets": [asdict(s) for s in plan.subnets],
        "routers": [asdict(r) for r in plan.routers],
        "pools": [asdict(p) for p in plan.pools],
        "nodes": [
            {
                "name": n.name,
                "netns": n.netns,
                "ipv4": n.ipv4,
                "ipv6": n.ipv6,
                "subnet": n.subnet,
                "mac": n.uplink_mac,
                "subnet_ipv4": n.ipv4_prefix,
                "subnet_ipv6": n.ipv6_prefix,
                "gateway4": n.gateway4,
                "gateway6": n.gateway6,
                "as_number": n.as_number,
                "router_id": n.router_id,
                "cluster_id": n.cluster_id,
                "listen_port": n.listen_port,
                "labels": dict(n.labels),
                "blocks": [b.cidr for b in n.blocks],
                "block_pools": {b.cidr: b.pool for b in n.blocks},
                "ipip_tunnel_address": n.ipip_tunnel_address,
                "vteps": [asdict(v) for v in n.vteps],
                "pods": [asdict(p) for p in n.pods],
                "sessions": [session_json(s) for s in n.sessions],
                "expected_established": list(n.expected_up),
                "rib": [asdict(r) for r in n.rib],
                "fib": [route_json(r) for r in n.fib],
            }
            for n in plan.nodes
        ],
        "unsupported": [{"location": loc, "reason": why} for loc, why in plan.unsupported],
        "notes": list(plan.notes),
    }
