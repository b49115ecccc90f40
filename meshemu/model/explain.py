"""Why a node has each of its BGP sessions and kernel routes, in words a learner follows (pure).

Owns `explain_node`: from a validated `Topology` and its `LabPlan`, one `Explanation` per node
(optionally narrowed to a peer, a prefix or an address) whose every sentence names the Calico
field that decided it (`BGPConfiguration spec.nodeToNodeMeshEnabled`, `BGPPeer <p>
spec.peerSelector`, `Node <n> spec.bgp.routeReflectorClusterID`, `IPPool <p> spec.ipipMode`,
`Node <n> spec.bgp.ipv4Address`, ...). Nothing is decided here: the planner decided every session
(`model.sessions`, `phases.peering`) and every route (`model.routes.route_for`, `phases.fib`);
this module reads its decisions back and says which inputs made them. The one thing it works out
again is which rule of a BGPPeer made a node-specific session (forward or automatic reverse
peering), from the BGPPeer's own selectors, in the order the planner applies them.
Also `route_path` (how a kernel route carries traffic: direct, ipip, vxlan, router, ...), which
`model.impact` shares. No I/O; observed state is added by `verify.explain`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from meshemu.errors import ConfigError, Problem
from meshemu.model.labplan import LabPlan, NodePlan, PoolPlan, RibEntry
from meshemu.model.names import IPIP_DEVICE
from meshemu.model.phases.fabric import installed_routes
from meshemu.model.routes import FibRoute, pool_of
from meshemu.model.selector import parse_selector
from meshemu.model.sessions import Session
from meshemu.model.topology import PeerSpec, Topology
from meshemu.model.wire import Wire

T = TypeVar("T")

# How a route carries a packet (also the pod-pair paths of `model.impact`).
PATHS = ("local", "blackhole", "direct", "ipip", "vxlan", "router", "none")
PATH_WORDS = {
    "local": "to a pod on this node",
    "blackhole": "dropped (own block)",
    "direct": "directly over the subnet, unencapsulated",
    "ipip": "IP-in-IP through tunl0",
    "vxlan": "VXLAN",
    "router": "through the default router, unencapsulated",
    "none": "no route",
}


@dataclass(frozen=True)
class Reason(Wire):
    """One step of an explanation and the Calico field (with its value here) that decided it."""

    text: str
    field: str = ""  # e.g. "IPPool ipv4-pool spec.ipipMode"; "" for a consequence of the others
    value: str = ""


@dataclass(frozen=True)
class SessionWhy(Wire):
    """One session of the node, why it exists, and how it behaves."""

    peer_ip: str
    peer_name: str | None
    family: int
    kind: str  # mesh | global | node
    rule: str  # mesh | peerIP | peerSelector | peerRouter | reverse
    source: str  # "mesh" or the BGPPeer's name
    comes_up: bool
    summary: str
    reasons: tuple[Reason, ...]
    observed: str | None = None  # the running lab's state of it (verify.explain)


@dataclass(frozen=True)
class RouteWhy(Wire):
    """One expected kernel route of the node, why it is there, and the path it gives."""

    prefix: str
    route: str  # the route as `ip route` would show it
    path: str  # one of PATHS
    source: str | None  # who programs it (felix | bgp | local), when the plan says
    summary: str
    reasons: tuple[Reason, ...]
    observed: str | None = None


@dataclass(frozen=True)
class Explanation(Wire):
    lab: str
    node: str
    target: str | None
    facts: tuple[Reason, ...]  # the node itself: role, AS, subnet, pools
    sessions: tuple[SessionWhy, ...]
    routes: tuple[RouteWhy, ...]
    absent: tuple[Reason, ...] = ()  # why something asked for is not there
    notes: tuple[str, ...] = ()  # the plan's notes about this node
    differences: tuple[str, ...] = ()  # a running lab: where it differs from the plan
    observed: bool = False  # whether a running lab was read


# -- paths ---------------------------------------------------------------------------------------


def route_path(node: NodePlan, route: FibRoute) -> str:
    """How `route` of `node` carries a packet (one of PATHS)."""
    if route.type == "blackhole":
        return "blackhole"
    if route.dev == IPIP_DEVICE:
        return "ipip"
    if route.dev is not None and route.dev.startswith("vxlan"):
        return "vxlan"
    if route.via is None:
        return "local"
    family = ipaddress.ip_network(route.prefix).version
    return "router" if route.via == node.gateway(family) else "direct"


def router_addresses(plan: LabPlan) -> dict[str, str]:
    """Every address of the lab's routers -> the router's name."""
    return {a: r.name for r in plan.routers for i in r.interfaces for a in (i.ipv4, i.ipv6) if a}


def longest_match(
    items: Iterable[T],
    prefix: Callable[[T], str],
    network: ipaddress.IPv4Network | ipaddress.IPv6Network,
) -> T | None:
    """The item whose prefix is the longest that contains `network` (the kernel's choice)."""
    best: T | None = None
    best_len = -1
    for item in items:
        candidate = ipaddress.ip_network(prefix(item))
        if candidate.version != network.version or candidate.prefixlen <= best_len:
            continue
        if network.subnet_of(candidate):  # type: ignore[arg-type]
            best, best_len = item, candidate.prefixlen
    return best


def route_source(route: FibRoute) -> str | None:
    """Who programs the route (felix | bgp | local) when the plan records it (a later field of
    `FibRoute`; plans without it say nothing)."""
    value = getattr(route, "source", None)
    return value if isinstance(value, str) and value else None


# -- the explanation -----------------------------------------------------------------------------


def explain_node(
    topo: Topology, plan: LabPlan, node_name: str, target: str | None = None
) -> Explanation:
    """The explanation of `node_name` (all of it, or what concerns `target`: a peer's name or
    address, a prefix, an address, a node or NODE/POD). ConfigError (exit 2) for an unknown
    node or a target that names nothing in the lab."""
    names = [n.name for n in plan.nodes]
    if node_name not in names:
        raise ConfigError(
            [Problem("NODE", f"unknown node {node_name!r}", f"nodes: {', '.join(names)}")]
        )
    return _Explainer(topo, plan, plan.node(node_name)).explain(target)


def session_words(topo: Topology, plan: LabPlan, node: str) -> Callable[[Session], str]:
    """One line on why `node` has a session, with the Calico fields that made it
    (`model.impact` words its session changes so)."""
    explainer = _Explainer(topo, plan, plan.node(node))

    def words(session: Session) -> str:
        summary = explainer.session(session).summary
        _rule, existence = explainer.existence(session)
        fields = "; ".join(f"{r.field} = {r.value}" for r in existence if r.field and r.value)
        return summary + (f" [{fields}]" if fields else "")

    return words


class _Explainer:
    def __init__(self, topo: Topology, plan: LabPlan, node: NodePlan) -> None:
        self.topo, self.plan, self.node = topo, plan, node
        self.nodes = {n.name: n for n in plan.nodes}
        self.by_ip = {a: n for n in plan.nodes for a in (n.ipv4, n.ipv6) if a is not None}
        self.routers = {r.name: r for r in plan.routers}
        self.router_at = router_addresses(plan)
        self.pools = {p.name: p for p in plan.pools}
        self.rules = [p.route_rule() for p in plan.pools]
        self.rib = {r.prefix: r for r in node.rib}
        self.installed = installed_routes(plan.routers)

    # -- top level -------------------------------------------------------------------------------

    def explain(self, target: str | None) -> Explanation:
        sessions = [self.session(s) for s in self.node.sessions]
        routes = [self.route(r) for r in self.node.fib]
        absent: list[Reason] = []
        if target is not None:
            sessions, routes, absent = self.narrow(target, sessions, routes)
        elif not self.node.sessions:
            absent.append(self.why_no_sessions())
        return Explanation(
            lab=self.plan.name,
            node=self.node.name,
            target=target,
            facts=tuple(self.facts()),
            sessions=tuple(sessions),
            routes=tuple(routes),
            absent=tuple(absent),
            notes=tuple(n for n in self.plan.notes if _mentions(n, self.node.name)),
        )

    def narrow(
        self, target: str, sessions: list[SessionWhy], routes: list[RouteWhy]
    ) -> tuple[list[SessionWhy], list[RouteWhy], list[Reason]]:
        """Only what `target` names, and why nothing is there when nothing is."""
        absent: list[Reason] = []
        try:
            network = ipaddress.ip_network(target, strict=False)
        except ValueError:
            network = None
        if network is not None and "/" not in target:  # an address: a peer, else a route
            mine = [s for s in sessions if s.peer_ip == str(network.network_address)]
            if mine:
                return mine, [], []
            found = _longest_match(routes, network)
            if not found:
                absent.append(self.why_no_route(str(network.network_address)))
            return [], found, absent
        if network is not None:  # a prefix: that route, or the routes inside it
            found = [r for r in routes if r.prefix == str(network)]
            if not found:
                found = [r for r in routes if _inside(r.prefix, network)]
            if not found:
                found = _longest_match(routes, network)
            if not found:
                absent.append(self.why_no_route(str(network)))
            return [], found, absent
        if "/" in target:  # NODE/POD: the route to each of the pod's addresses
            owner, _, pod_name = target.partition("/")
            pods = self.nodes[owner].pods if owner in self.nodes else ()
            pod = next((p for p in pods if p.name == pod_name), None)
            if pod is None:
                raise ConfigError([_unknown_target(target, self.plan)])
            found = []
            for address in (pod.ipv4, pod.ipv6):
                if address is None:
                    continue
                match = _longest_match(routes, ipaddress.ip_network(address))
                found += match
                if not match:
                    absent.append(self.why_no_route(address))
            return [], found, absent
        if target in self.nodes or target in self.routers:
            mine = [s for s in sessions if s.peer_name == target]
            if not mine and target != self.node.name:
                absent.append(self.why_no_session(target))
            theirs = [
                r
                for r in routes
                if (entry := self.rib.get(r.prefix)) is not None
                and entry.origin_node == target
                and entry.learned_from is not None
            ]
            if (
                target in self.nodes
                and target != self.node.name
                and self.nodes[target].blocks
                and not theirs
            ):
                absent.append(
                    Reason(
                        f"no route to {target}'s blocks: this node learns none of them "
                        "(see the plan's notes)"
                    )
                )
            return mine, theirs, absent
        raise ConfigError([_unknown_target(target, self.plan)])

    # -- the node itself -------------------------------------------------------------------------

    def facts(self) -> list[Reason]:
        node, spec = self.node, self.topo.nodes[self.node.name]
        out = [
            Reason(
                f"{node.name} is in subnet {node.subnet} "
                f"({', '.join(p for p in (node.ipv4_prefix, node.ipv6_prefix) if p)}): "
                "Calico takes a node's subnet from the prefix length of its BGP address; "
                "a next hop inside it is reached directly",
                f"Node {node.name} spec.bgp.ipv4Address",
                _with_prefix(node.ipv4, node.ipv4_prefix) or "(none)",
            ),
            Reason(
                f"AS {node.as_number}",
                f"Node {node.name} spec.bgp.asNumber"
                if spec.as_number is not None
                else "BGPConfiguration default spec.asNumber",
                str(node.as_number),
            ),
        ]
        if node.cluster_id is not None:
            out.append(
                Reason(
                    f"{node.name} is a route reflector (cluster {node.cluster_id}): it leaves "
                    "the node-to-node mesh and reflects what its clients send it",
                    f"Node {node.name} spec.bgp.routeReflectorClusterID",
                    node.cluster_id,
                )
            )
        out.append(
            Reason(
                "the node-to-node mesh is " + ("on" if self.plan.mesh else "off"),
                "BGPConfiguration default spec.nodeToNodeMeshEnabled",
                str(self.plan.mesh).lower(),
            )
        )
        for block in node.blocks:
            pool = self.pools.get(block.pool)
            out.append(
                Reason(
                    f"owns block {block.cidr} of pool {block.pool} (IPAM affinity): its pods' "
                    "addresses come from it and it advertises the whole block over BGP"
                    + (" (not: disableBGPExport)" if pool and pool.disable_bgp_export else ""),
                    f"IPPool {block.pool} spec.nodeSelector",
                    pool.node_selector if pool else "",
                )
            )
        return out

    # -- sessions --------------------------------------------------------------------------------

    def session(self, s: Session) -> SessionWhy:
        rule, reasons = self.existence(s)
        reasons.append(self.as_reason(s))
        reasons.append(self.direction(s, rule))
        reasons += self.reflection(s)
        reasons += _options(s)
        up = s.peer_ip in self.node.expected_up
        reasons.append(self.comes_up(s, up))
        who = s.peer_name or "an external peer"
        summary = (
            f"{'eBGP' if not s.same_as else 'iBGP'} session with {who} ({s.peer_ip}), "
            f"{_rule_words(rule, s.source)}; "
            f"{'passive' if s.passive else 'active'}"
            + ("; route-reflector client" if s.rr_client else "")
            + ("" if up else "; stays down")
        )
        return SessionWhy(
            s.peer_ip,
            s.peer_name,
            s.family,
            s.kind,
            rule,
            s.source,
            up,
            summary,
            tuple(reasons),
        )

    def existence(self, s: Session) -> tuple[str, list[Reason]]:
        if s.kind == "mesh":
            return "mesh", [
                Reason(
                    "the node-to-node mesh is on: every node that is not a route reflector "
                    f"peers with every other one, once per IP family; {s.peer_node} is one",
                    "BGPConfiguration default spec.nodeToNodeMeshEnabled",
                    "true",
                ),
                Reason(
                    f"neither {self.node.name} nor {s.peer_node} is a route reflector (a "
                    "reflector has no mesh sessions)",
                    "Node spec.bgp.routeReflectorClusterID",
                    "(unset on both)",
                ),
            ]
        peer = self.topo.bgp.peers.get(s.source)
        if peer is None:  # (a plan from another topology: say what the plan says)
            return "peerIP", [Reason(s.reason, f"BGPPeer {s.source}")]
        name = f"BGPPeer {s.source}"
        rule = self.bgppeer_rule(s, peer)
        out = [self.scope_reason(s.source, peer, rule)]
        if rule == "reverse":
            other = s.peer_node or s.peer_ip
            selected = (
                f"this node matches its peerSelector {peer.peer_selector!r}"
                if peer.peer_selector is not None
                else f"this node's address is its peerIP {peer.peer_ip}"
            )
            out.append(
                Reason(
                    f"{other} peers with this node through {name} ({selected}); Calico adds "
                    "the session back on this side automatically",
                    f"{name} spec.reversePeering",
                    peer.reverse_peering
                    + (" (the default)" if peer.reverse_peering == "Auto" else ""),
                )
            )
        elif rule == "peerSelector":
            labels = _labels(self.nodes[s.peer_node].labels) if s.peer_node in self.nodes else ""
            out.append(
                Reason(
                    f"its peerSelector matches {s.peer_node} (labels {labels or 'none'}), so "
                    f"this node peers with {s.peer_node}'s address",
                    f"{name} spec.peerSelector",
                    peer.peer_selector or "",
                )
            )
        elif rule == "peerRouter":
            out.append(
                Reason(
                    f"it names router {peer.peer_router}: the session goes to the router's "
                    "address on this node's subnet (meshemu's shorthand for a peerIP)",
                    f"{name} peerRouter",
                    peer.peer_router or "",
                )
            )
        else:
            what = (
                f"cluster node {s.peer_node}"
                if s.peer_node
                else f"router {s.peer_router}"
                if s.peer_router
                else "a peer outside the lab"
            )
            out.append(
                Reason(f"it names the peer address ({what})", f"{name} spec.peerIP", s.peer_ip)
            )
        return rule, out

    def bgppeer_rule(self, s: Session, peer: PeerSpec) -> str:
        """Which of the BGPPeer's rules made this session: the forward peering (this node in
        its scope, the peer its target) comes first in confd's passes, so it wins over the
        automatic reverse one to the same address."""
        if peer.peer_router is not None:
            return "peerRouter"
        forward_target = (peer.peer_ip is not None and peer.peer_selector is None) or self._selects(
            peer.peer_selector, s.peer_node
        )
        if s.kind == "global" or (self._in_scope(peer, self.node.name) and forward_target):
            return "peerSelector" if peer.peer_selector is not None else "peerIP"
        return "reverse"

    def _in_scope(self, peer: PeerSpec, node: str) -> bool:
        if peer.node is not None:
            return node == peer.node
        if peer.node_selector is not None:
            return parse_selector(peer.node_selector).matches(dict(self.nodes[node].labels))
        return True

    def _selects(self, selector: str | None, node: str | None) -> bool:
        if selector is None or node is None or node not in self.nodes:
            return False
        return parse_selector(selector).matches(dict(self.nodes[node].labels))

    def scope_reason(self, source: str, peer: PeerSpec, rule: str) -> Reason:
        name = f"BGPPeer {source}"
        if rule == "reverse":
            if peer.node is not None:
                return Reason(f"{name} applies to node {peer.node}", f"{name} spec.node", peer.node)
            if peer.node_selector is not None:
                return Reason(
                    f"{name} applies to the nodes its nodeSelector matches",
                    f"{name} spec.nodeSelector",
                    peer.node_selector,
                )
            return Reason(
                f"{name} has neither node nor nodeSelector: it applies to every node",
                f"{name} spec.nodeSelector",
                "(unset)",
            )
        if peer.node is not None:
            return Reason(f"{name} applies to this node by name", f"{name} spec.node", peer.node)
        if peer.node_selector is not None:
            labels = _labels(self.node.labels)
            return Reason(
                f"{name}'s nodeSelector matches this node (labels {labels or 'none'})",
                f"{name} spec.nodeSelector",
                peer.node_selector,
            )
        return Reason(
            f"{name} has neither node nor nodeSelector: a global peering, for every node",
            f"{name} spec.nodeSelector",
            "(unset)",
        )

    def as_reason(self, s: Session) -> Reason:
        peer = self.topo.bgp.peers.get(s.source)
        if s.kind != "mesh" and peer is not None and peer.as_number is not None:
            where, value = f"BGPPeer {s.source} spec.asNumber", str(peer.as_number)
        elif s.peer_node is not None:
            spec = self.topo.nodes.get(s.peer_node)
            where = (
                f"Node {s.peer_node} spec.bgp.asNumber"
                if spec is not None and spec.as_number is not None
                else "BGPConfiguration default spec.asNumber"
            )
            value = str(s.peer_as)
        elif s.peer_router is not None:
            where, value = f"router {s.peer_router} bgp.asNumber", str(s.peer_as)
        else:
            where, value = "", str(s.peer_as)
        kind = (
            f"iBGP: the peer's AS {s.peer_as} is this side's AS {s.local_as}, so routes keep "
            "their next hop and are not passed on to other iBGP peers (unless reflected)"
            if s.same_as
            else f"eBGP: the peer's AS {s.peer_as} differs from this side's AS {s.local_as}"
        )
        return Reason(kind, where, value)

    def direction(self, s: Session, rule: str) -> Reason:
        mine, theirs = s.local_ip, s.peer_ip
        if s.passive:
            return Reason(
                f"passive: Calico makes the side whose peer address is higher (compared as "
                f"text, {theirs} > {mine}) wait, so only one TCP connection opens per pair; "
                f"{s.peer_name or theirs} connects",
                f"Node {self.node.name} spec.bgp.ipv{s.family}Address",
                mine,
            )
        if s.kind in ("mesh", "global") and s.peer_node is not None:
            return Reason(
                f"active: {mine} > {theirs} as text, so this node opens the TCP connection "
                f"to port {s.peer_port}",
                f"Node {self.node.name} spec.bgp.ipv{s.family}Address",
                mine,
            )
        return Reason(
            f"active: this node connects to {theirs} port {s.peer_port} "
            + (
                "(Calico leaves both ends of a selector or reverse peering active; the first "
                "connection wins)"
                if rule in ("peerSelector", "reverse")
                else "(Calico makes only global peerIP peerings to a cluster node passive)"
            )
        )

    def reflection(self, s: Session) -> list[Reason]:
        out = []
        if s.rr_client:
            out.append(
                Reason(
                    f"route-reflector client: this node reflects (cluster {s.cluster_id}) and "
                    f"{s.peer_name or s.peer_ip} is iBGP and not in its cluster, so routes "
                    "from it are passed to every other iBGP peer, and others' routes to it",
                    f"Node {self.node.name} spec.bgp.routeReflectorClusterID",
                    s.cluster_id or "",
                )
            )
        elif (
            self.node.cluster_id is not None
            and s.peer_node in self.nodes
            and self.nodes[s.peer_node].cluster_id == self.node.cluster_id
        ):
            out.append(
                Reason(
                    f"both are reflectors of cluster {self.node.cluster_id}: not clients of "
                    "each other, so neither reflects routes it learned from the other's "
                    "clients back into the cluster (the CLUSTER_LIST would loop)",
                    "Node spec.bgp.routeReflectorClusterID",
                    self.node.cluster_id,
                )
            )
        elif s.peer_node in self.nodes and self.nodes[s.peer_node].cluster_id and s.same_as:
            cluster = self.nodes[s.peer_node].cluster_id or ""
            out.append(
                Reason(
                    f"{s.peer_node} is a route reflector (cluster {cluster}) and this node its "
                    "client: it passes this node's blocks to its other peers and theirs to "
                    "this node",
                    f"Node {s.peer_node} spec.bgp.routeReflectorClusterID",
                    cluster,
                )
            )
        return out

    def comes_up(self, s: Session, up: bool) -> Reason:
        if up:
            return Reason(
                "expected Established: both ends are configured, their AS numbers and "
                "passwords agree, and an active side connects to the port the other listens on"
            )
        if not s.emulated:
            return Reason(
                f"not expected up: {s.peer_ip} is outside the lab (nothing answers there)"
            )
        if s.peer_node is None:
            return Reason(
                f"not expected up: router {s.peer_router} does not answer this session "
                "(its own configuration, AS or password differ; see the plan's router "
                "sessions)"
            )
        other = self.nodes[s.peer_node]
        back = next(
            (b for b in other.sessions if b.peer_ip == s.local_ip),
            None,
        )
        if back is None:
            return Reason(
                f"not expected up: {other.name} has no session back to {s.local_ip} (no mesh "
                "and no BGPPeer that applies to it selects this node)"
            )
        if back.peer_as != s.local_as or s.peer_as != back.local_as:
            return Reason(
                f"not expected up: AS numbers disagree (this side says it is AS {s.local_as} "
                f"and expects {s.peer_as}; {other.name} is AS {back.local_as} and expects "
                f"{back.peer_as})",
                f"BGPPeer {s.source} spec.asNumber" if s.kind != "mesh" else "",
            )
        if (s.password or None) != (back.password or None):
            return Reason(
                "not expected up: the two ends' TCP MD5 passwords differ",
                f"BGPPeer {s.source} spec.password" if s.kind != "mesh" else "",
            )
        return Reason(
            "not expected up: neither side connects to the port the other listens on "
            "(both passive, or a port mismatch)",
            "Node spec.bgp listenPort / BGPPeer spec.peerIP port",
        )

    def why_no_sessions(self) -> Reason:
        if self.node.cluster_id is not None and not self.plan.mesh:
            return Reason("no sessions: the mesh is off and no BGPPeer applies to this node")
        if not self.plan.mesh:
            return Reason(
                "no sessions: the node-to-node mesh is off and no BGPPeer applies to this node, "
                "so it learns no routes and advertises none",
                "BGPConfiguration default spec.nodeToNodeMeshEnabled",
                "false",
            )
        return Reason("no sessions: no other node of its families is in the mesh")

    def why_no_session(self, other: str) -> Reason:
        """Why this node has no session with `other`, and how it still learns its routes."""
        why = []
        field_, value = "", ""
        if not self.plan.mesh:
            why.append("the node-to-node mesh is off")
            field_, value = "BGPConfiguration default spec.nodeToNodeMeshEnabled", "false"
        elif self.node.cluster_id is not None or (
            other in self.nodes and self.nodes[other].cluster_id is not None
        ):
            reflector = self.node.name if self.node.cluster_id else other
            why.append(f"{reflector} is a route reflector, which has no mesh sessions")
            field_ = f"Node {reflector} spec.bgp.routeReflectorClusterID"
            value = self.nodes[reflector].cluster_id or ""
        why.append("no BGPPeer makes one between them")
        learned = sorted(
            {
                self._peer_label(e.learned_from)
                for e in self.node.rib
                if e.origin_node == other and e.learned_from is not None
            }
        )
        text = f"no session with {other}: {', and '.join(why)}"
        if learned:
            text += f"; this node still learns {other}'s blocks, from {', '.join(learned)}"
        return Reason(text, field_, value)

    def _peer_label(self, address: str) -> str:
        name = self.by_ip.get(address)
        if name is not None:
            return f"{name.name} ({address})"
        router = self.router_at.get(address)
        return f"router {router} ({address})" if router else address

    # -- routes ----------------------------------------------------------------------------------

    def route(self, route: FibRoute) -> RouteWhy:
        path = route_path(self.node, route)
        entry = self.rib.get(route.prefix)
        if path == "blackhole":
            reasons = self.own_block(route)
        elif path == "local":
            reasons = self.pod_route(route)
        else:
            reasons = self.learned(route, entry, path)
        source = route_source(route)
        if source is not None:
            reasons.append(_source_reason(source))
        summary = f"{route.prefix}: {PATH_WORDS[path]}"
        if entry is not None and entry.learned_from is not None:
            summary += f" (block of {entry.origin_node})"
        return RouteWhy(route.prefix, route.text(), path, source, summary, tuple(reasons))

    def own_block(self, route: FibRoute) -> list[Reason]:
        block = next((b for b in self.node.blocks if b.cidr == route.prefix), None)
        pool = self.pools.get(block.pool) if block is not None else None
        return [
            Reason(
                f"{route.prefix} is this node's own block (IPAM gave it to {self.node.name} "
                "by affinity): a blackhole drops traffic to its unused addresses here instead "
                "of sending it back out the default route; its pods have more specific routes",
                f"IPPool {pool.name} spec.blockSize" if pool else "",
                str(pool.block_size) if pool else "",
            )
        ]

    def pod_route(self, route: FibRoute) -> list[Reason]:
        pod = next(
            (p for p in self.node.pods if route.dev == p.host_ifname),
            None,
        )
        name = pod.name if pod is not None else "a pod"
        pool = None
        if pod is not None:
            pool = pod.pool4 if ipaddress.ip_network(route.prefix).version == 4 else pod.pool6
        return [
            Reason(
                f"{name} runs on this node: Felix routes its address to the pod's cali "
                f"interface {route.dev} (the host side of its veth)",
                f"IPPool {pool} spec.cidr (the pod's address)" if pool else "",
            )
        ]

    def learned(self, route: FibRoute, entry: RibEntry | None, path: str) -> list[Reason]:
        out: list[Reason] = []
        pool = self._pool(route.prefix)
        if entry is None or entry.learned_from is None:
            out.append(Reason("the plan has no BGP path for it (programmed from IPAM)"))
            next_hop = route.via or ""
        else:
            next_hop = entry.next_hop
            out.append(self.learned_from(entry, route_source(route)))
            out += self.reflected(entry)
            out.append(self.next_hop(entry))
        out += self.encapsulation(route, pool, next_hop, path)
        return out

    def learned_from(self, entry: RibEntry, source: str | None) -> Reason:
        session = next(
            (s for s in self.node.sessions if s.peer_ip == entry.learned_from),
            None,
        )
        how = f"{session.kind} session" if session is not None else "session"
        peer = self._peer_label(entry.learned_from or "")
        if source == "felix":
            text = (
                f"block of {entry.origin_node} (its IPAM affinity, which Felix reads); BGP "
                f"carries it too, from {peer} ({how})"
            )
        else:
            text = f"block of {entry.origin_node}, learned over BGP from {peer} ({how})"
        if entry.paths > 1:
            text += f"; best of {entry.paths} paths"
        if entry.as_path:
            text += f"; AS path {' '.join(map(str, entry.as_path))}"
        pool = self._pool(entry.prefix)
        return Reason(
            text,
            f"IPPool {pool.name} spec.cidr" if pool else "",
            pool.cidr if pool else "",
        )

    def reflected(self, entry: RibEntry) -> list[Reason]:
        if entry.originator_id is None:
            return []
        reflector = self.by_ip.get(entry.learned_from or "")
        who = reflector.name if reflector is not None else entry.learned_from
        return [
            Reason(
                f"reflected by {who}: it carries ORIGINATOR_ID {entry.originator_id} (the "
                f"router ID of {entry.origin_node}) and CLUSTER_LIST "
                f"{' '.join(entry.cluster_list)}; iBGP alone would not pass it on",
                f"Node {who} spec.bgp.routeReflectorClusterID",
                " ".join(entry.cluster_list),
            )
        ]

    def next_hop(self, entry: RibEntry) -> Reason:
        owner = self.by_ip.get(entry.next_hop)
        if owner is not None:
            text = f"BGP next hop {entry.next_hop}: the address of {owner.name}, the block's node"
            if owner.name != entry.origin_node:
                text = f"BGP next hop {entry.next_hop}: {owner.name} (next hop self)"
            family = ipaddress.ip_address(entry.next_hop).version
            return Reason(text, f"Node {owner.name} spec.bgp.ipv{family}Address", entry.next_hop)
        router = self.router_at.get(entry.next_hop)
        if router is not None:
            return Reason(
                f"BGP next hop {entry.next_hop}: router {router}, which set itself as next hop "
                "(eBGP)",
            )
        return Reason(f"BGP next hop {entry.next_hop}")

    def encapsulation(
        self, route: FibRoute, pool: PoolPlan | None, next_hop: str, path: str
    ) -> list[Reason]:
        family = ipaddress.ip_network(route.prefix).version
        subnet = self.node.subnet_prefix(family)
        try:
            inside = subnet is not None and ipaddress.ip_address(next_hop) in ipaddress.ip_network(
                subnet
            )
        except ValueError:
            inside = False
        where = "inside" if inside else "outside"
        subnet_reason = Reason(
            f"subnet test: next hop {next_hop} is {where} this node's subnet {subnet}",
            f"Node {self.node.name} spec.bgp.ipv{family}Address",
            _with_prefix(self.node.address(family), subnet) or "(none)",
        )
        if pool is None:
            return [subnet_reason, Reason("no pool contains the prefix: no encapsulation")]
        ipip, vxlan = pool.ipip_mode, pool.vxlan_mode
        mode_field, mode = (
            ("spec.ipipMode", ipip)
            if family == 4 and ipip != "Never"
            else ("spec.vxlanMode", vxlan)
            if vxlan != "Never"
            else ("spec.ipipMode / spec.vxlanMode", "Never")
        )
        pool_field = f"IPPool {pool.name} {mode_field}"
        out = []
        if mode == "Always":
            out.append(
                Reason(
                    f"pool {pool.name} encapsulates always, whatever the subnet",
                    pool_field,
                    mode,
                )
            )
        elif mode == "CrossSubnet":
            out += [
                Reason(
                    f"pool {pool.name} encapsulates only across subnets",
                    pool_field,
                    mode,
                ),
                subnet_reason,
            ]
        else:
            out += [
                Reason(f"pool {pool.name} does not encapsulate", pool_field, mode),
                subnet_reason,
            ]
        out.append(self.verdict(route, path, next_hop))
        return out

    def verdict(self, route: FibRoute, path: str, next_hop: str) -> Reason:
        if path == "ipip":
            return Reason(
                f"so the tunnel: IP-in-IP through {route.dev} to {route.via} (outer packet "
                f"node to node, protocol 4)"
            )
        if path == "vxlan":
            owner = next(
                (n.name for n in self.plan.nodes for v in n.vteps if v.address == route.via),
                None,
            )
            return Reason(
                f"so the tunnel: VXLAN through {route.dev} to {owner or 'the node'}'s VTEP "
                f"{route.via} (UDP 4789, VNI 4096)",
                f"Node {owner} VXLAN tunnel address (Felix, from IPAM)" if owner else "",
                route.via or "",
            )
        if path == "direct":
            return Reason(
                f"so no tunnel: straight to {next_hop} over {route.dev}, the pod addresses "
                "unchanged on the wire"
            )
        forwards = route.prefix in self.installed.get(route.via or "", frozenset())
        return Reason(
            f"so no tunnel, and the next hop is not on this subnet: the packet goes to the "
            f"default router {route.via}, "
            + (
                "which learned the block over BGP and forwards it"
                if forwards
                else "which knows no pod routes, so the traffic stops there"
            )
        )

    def why_no_route(self, what: str) -> Reason:
        pool = self._pool(str(ipaddress.ip_network(what, strict=False)))
        if pool is None:
            return Reason(
                f"no route for {what}: it is in no IP pool, so Calico programs nothing for it "
                "(the node's default route applies)"
            )
        return Reason(
            f"no route for {what} (pool {pool.name}): no node advertises a block covering it "
            "to this node, or no block of it is allocated",
            f"IPPool {pool.name} spec.disableBGPExport" if pool.disable_bgp_export else "",
            "true" if pool.disable_bgp_export else "",
        )

    def _pool(self, prefix: str) -> PoolPlan | None:
        rule = pool_of(prefix, self.rules)
        return self.pools.get(rule.name) if rule is not None else None


# -- small helpers -------------------------------------------------------------------------------


def _options(s: Session) -> list[Reason]:
    """What the session's configuration changes about it, each with its field."""
    name = "BGPConfiguration default" if s.kind == "mesh" else f"BGPPeer {s.source}"
    out = []
    if s.password is not None:
        what = "spec.nodeMeshPassword" if s.kind == "mesh" else "spec.password"
        out.append(Reason("TCP MD5 password on the session", f"{name} {what}", "(secret)"))
    if s.keep_next_hop:
        out.append(
            Reason(
                "routes sent keep their original next hop",
                f"{name} spec.nextHopMode / keepOriginalNextHop",
                "Keep",
            )
        )
    if s.next_hop_self:
        out.append(
            Reason("routes sent carry this node as next hop", f"{name} spec.nextHopMode", "Self")
        )
    if s.import_filters or s.export_filters:
        out.append(
            Reason(
                f"BGPFilters: import {', '.join(s.import_filters) or 'none'}, export "
                f"{', '.join(s.export_filters) or 'none'}",
                f"{name} spec.filters",
                ", ".join(dict.fromkeys((*s.import_filters, *s.export_filters))),
            )
        )
    return out


def _source_reason(source: str) -> Reason:
    words = {
        "felix": "Felix programs it from IPAM and the Node addresses, not from BGP: a dropped "
        "BGP session does not withdraw it",
        "bgp": "BIRD programs it from the BGP path: it goes when the session that taught it goes",
        "local": "programmed for this node's own block or pod",
    }
    return Reason(
        f"programmed by {source}: {words.get(source, '')}".rstrip(": "),
        "FelixConfiguration programClusterRoutes" if source in ("felix", "bgp") else "",
    )


def _rule_words(rule: str, source: str) -> str:
    return {
        "mesh": "node-to-node mesh",
        "peerIP": f"BGPPeer {source} (peerIP)",
        "peerSelector": f"BGPPeer {source} (peerSelector)",
        "peerRouter": f"BGPPeer {source} (peerRouter)",
        "reverse": f"BGPPeer {source} (automatic reverse peering)",
    }.get(rule, source)


def _labels(labels: Sequence[tuple[str, str]] | Mapping[str, str]) -> str:
    items = labels.items() if isinstance(labels, Mapping) else labels
    return ", ".join(f"{k}={v}" for k, v in items)


def _with_prefix(address: str | None, prefix: str | None) -> str | None:
    if address is None:
        return None
    return f"{address}/{prefix.split('/')[1]}" if prefix else address


def _mentions(note: str, node: str) -> bool:
    return note.startswith(f"{node}:") or f" {node} " in f" {note} ".replace(",", " ")


def _inside(prefix: str, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    candidate = ipaddress.ip_network(prefix)
    return candidate.version == network.version and candidate.subnet_of(network)  # type: ignore[arg-type]


def _longest_match(
    routes: Sequence[RouteWhy], network: ipaddress.IPv4Network | ipaddress.IPv6Network
) -> list[RouteWhy]:
    best = longest_match(routes, lambda r: r.prefix, network)
    return [best] if best is not None else []


def _unknown_target(target: str, plan: LabPlan) -> Problem:
    return Problem(
        "TARGET",
        f"{target!r} is no node, pod, router, address or prefix of lab {plan.name}",
        "give a peer (node or router name, or its address), NODE/POD, an address or a prefix; "
        f"nodes: {', '.join(n.name for n in plan.nodes)}",
    )


def with_observed(
    explanation: Explanation,
    sessions: Mapping[str, str],
    routes: Mapping[str, str],
    differences: Sequence[str],
) -> Explanation:
    """The explanation with a running lab's state of each session (by peer address) and route
    (by prefix), and the differences from the plan (`verify.explain` works them out)."""
    return replace(
        explanation,
        sessions=tuple(replace(s, observed=sessions.get(s.peer_ip)) for s in explanation.sessions),
        routes=tuple(replace(r, observed=routes.get(r.prefix)) for r in explanation.routes),
        differences=tuple(differences),
        observed=True,
    )


__all__ = [
    "PATHS",
    "PATH_WORDS",
    "Explanation",
    "Reason",
    "RouteWhy",
    "SessionWhy",
    "explain_node",
    "longest_match",
    "route_path",
    "route_source",
    "router_addresses",
    "session_words",
    "with_observed",
]
