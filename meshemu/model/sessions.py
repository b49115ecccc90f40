"""The BGP sessions of every node, exactly as Calico's confd builds them.

Owns the session rules, followed from projectcalico/calico `confd/pkg/backends/calico/client.go`
(`updatePeersV1`, `nodeAsBGPPeers`, `setPeerConfigFieldsFromV3Resource`, `getNextHopMode`) and
`bgp_processor.go` (`processMeshPeers`, `buildPeerFromData`), and checked against Calico's own
rendered BIRD configuration by the conformance test:
- node-to-node mesh between all nodes that are not route reflectors (a route reflector has no
  mesh at all); of each pair, the side whose peer address is higher (compared as text) is
  passive; mesh sessions carry the mesh password and restart time and nothing of any BGPPeer;
- BGPPeers in three passes: first every *global* peering (a BGPPeer with neither `node` nor
  `nodeSelector`, whether it names a `peerIP` or only a `peerSelector`), then node-specific ones,
  then the automatic reverse peerings (unless `reversePeering: Manual`); per peer address and
  port the first peering wins, and a node-specific one is dropped where a global one exists;
- a `peerIP` peering takes the BGPPeer's AS, `localASNumber` and `numAllowedLocalASNumbers`; a
  peering to a selected node (peerSelector or reverse) takes that node's AS and listen port and
  none of those three; a peering to a node's own address is no session;
- passive only for global `peerIP` peerings to a cluster node whose address is higher as text;
- route-reflector client: the peer is iBGP (same AS as this side's effective AS), this node has
  a cluster ID and the peer's (known only for a selected node) is empty or another;
- next hop: `nextHopMode` Self or Keep for any peer; else `keepOriginalNextHop` on eBGP only;
- an invalid or other-family `reachableBy` drops a `peerIP` BGPPeer (confd logs and skips it).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from meshemu.model.addressing import IPAddress, parse_peer_ip
from meshemu.model.bgp_policy import applied_filters
from meshemu.model.selector import Selector, parse_selector
from meshemu.model.topology import BgpSpec, PeerSpec, parse_duration
from meshemu.model.wire import Fields

__all__ = [
    "DEFAULT_BGP_PORT",
    "SESSION_KINDS",
    "Session",
    "SessionNode",
    "parse_duration",
    "plan_sessions",
]

DEFAULT_BGP_PORT = 179
SESSION_KINDS = ("mesh", "global", "node")


@dataclass(frozen=True)
class SessionNode:
    """What the session rules need to know about a node."""

    name: str
    ipv4: IPAddress | None
    ipv6: IPAddress | None
    as_number: int
    cluster_id: str | None
    labels: Mapping[str, str]
    listen_port: int

    def address(self, family: int) -> IPAddress | None:
        return self.ipv4 if family == 4 else self.ipv6


@dataclass(frozen=True)
class SessionRouter:
    """A lab router that speaks BGP, as the session rules need it: its AS, its addresses, and
    per node its address on that node's subnet (what a `peerRouter` BGPPeer peers with)."""

    name: str
    as_number: int
    addresses: frozenset[str]
    on_subnet_of: Mapping[str, Mapping[int, str]]  # node -> family -> address


@dataclass(frozen=True, slots=True)
class Session:
    """One BGP session of one node, with the reason it exists."""

    family: int
    local_ip: str
    local_as: int
    peer_ip: str
    peer_port: int
    peer_as: int
    kind: str  # mesh | global | node
    passive: bool
    rr_client: bool
    cluster_id: str | None
    password: str | None
    peer_node: str | None  # the lab node at the other end; None for an external peer
    source: str  # "mesh" or the BGPPeer's name
    reason: str
    source_address: bool = True
    keep_next_hop: bool = False
    graceful_restart_time: int | None = None
    allow_local_as: int | None = None
    next_hop_self: bool = False
    ttl_security: int | None = None  # hops (BIRD `ttl security on; multihop N;`); None: off
    keepalive_time: int | None = None  # seconds; None: the speaker's default (hold time / 3)
    reachable_by: str | None = None  # gateway of the static route to the peer address
    import_filters: tuple[str, ...] = ()  # BGPFilter names applied on import, in order
    export_filters: tuple[str, ...] = ()  # ... and on export
    route_priority: int = 1024  # the normal route priority (kernel metric) of the family
    peer_router: str | None = None  # the lab router (BIRD) at the other end, if any

    @property
    def peer_name(self) -> str | None:
        """The lab node or BGP router at the other end; None for a peer outside the lab."""
        return self.peer_node or self.peer_router

    @property
    def emulated(self) -> bool:
        """Whether the lab runs the other end (a node's speaker or a router's BIRD)."""
        return self.peer_node is not None or self.peer_router is not None

    @property
    def same_as(self) -> bool:
        """iBGP as Calico decides it: the peer's AS is this side's effective AS."""
        return self.peer_as == self.local_as

    @property
    def key(self) -> tuple[str, int]:
        return (self.peer_ip, self.peer_port)

    def to_json(self, secrets: bool = False) -> dict[str, Any]:
        """The plan's form of a session (README: `password` says only whether there is one;
        with `secrets`, `password_text` carries it for the root-only state folder)."""
        out: dict[str, Any] = {
            "peer_ip": self.peer_ip,
            "peer_port": self.peer_port,
            "peer_as": self.peer_as,
            "local_as": self.local_as,
            "local_ip": self.local_ip,
            "family": f"ipv{self.family}",
            "kind": self.kind,
            "passive": self.passive,
            "rr_client": self.rr_client,
            "cluster_id": self.cluster_id,
            "password": self.password is not None,
            "peer_node": self.peer_node,
            "source": self.source,
            "source_address": self.source_address,
            "keep_next_hop": self.keep_next_hop,
            "graceful_restart_time": self.graceful_restart_time,
            "allow_local_as": self.allow_local_as,
            "next_hop_self": self.next_hop_self,
            "ttl_security": self.ttl_security,
            "keepalive_time": self.keepalive_time,
            "reachable_by": self.reachable_by,
            "import_filters": list(self.import_filters),
            "export_filters": list(self.export_filters),
            "route_priority": self.route_priority,
            "peer_router": self.peer_router,
            "reason": self.reason,
        }
        if secrets:
            out["password_text"] = self.password
        return out

    @classmethod
    def from_json(cls, data: object, where: str = "session") -> Session:
        """`to_json(secrets=True)`'s form back. A session with a password needs its text:
        the public form cannot rebuild it (LabError), nor can anything else with a bad field."""
        f = Fields(data, where)
        family = {"ipv4": 4, "ipv6": 6}.get(f.text("family"))
        if family is None:
            f.fail("family", "expected ipv4 or ipv6")
        kind = f.text("kind")
        if kind not in SESSION_KINDS:
            f.fail("kind", f"expected one of {', '.join(SESSION_KINDS)}")
        password = f.opt_text("password_text") if f.has("password_text") else None
        if f.flag("password") != (password is not None):
            f.fail(
                "password_text",
                "missing: the session has a password and this JSON was written without "
                "secrets (only the lab's state folder holds them)"
                if password is None
                else "present although password is false",
            )
        return cls(
            family=family,
            local_ip=f.text("local_ip"),
            local_as=f.number("local_as"),
            peer_ip=f.text("peer_ip"),
            peer_port=f.number("peer_port"),
            peer_as=f.number("peer_as"),
            kind=kind,
            passive=f.flag("passive"),
            rr_client=f.flag("rr_client"),
            cluster_id=f.opt_text("cluster_id"),
            password=password,
            peer_node=f.opt_text("peer_node"),
            source=f.text("source"),
            reason=f.text("reason"),
            source_address=f.flag("source_address"),
            keep_next_hop=f.flag("keep_next_hop"),
            graceful_restart_time=f.opt_number("graceful_restart_time"),
            allow_local_as=f.opt_number("allow_local_as"),
            # Fields added after the first plans were written: absent means their default.
            next_hop_self=f.flag("next_hop_self") if f.has("next_hop_self") else False,
            ttl_security=f.opt_number("ttl_security") if f.has("ttl_security") else None,
            keepalive_time=f.opt_number("keepalive_time") if f.has("keepalive_time") else None,
            reachable_by=f.opt_text("reachable_by") if f.has("reachable_by") else None,
            import_filters=f.texts("import_filters") if f.has("import_filters") else (),
            export_filters=f.texts("export_filters") if f.has("export_filters") else (),
            route_priority=f.number("route_priority") if f.has("route_priority") else 1024,
            peer_router=f.opt_text("peer_router") if f.has("peer_router") else None,
        )


class _MeshReason:
    """Stands in the `reason` slot of a mesh session: its reason follows from the session's
    own fields, so it is worded when read instead of held (a 1,000-node mesh has two million
    distinct ones: about 300 MB)."""

    __slots__ = ()

    @staticmethod
    def text(session: Session) -> str:
        other, theirs, mine = session.peer_node, session.peer_ip, session.local_ip
        return f"node-to-node mesh with {other}; " + (
            f"passive: {theirs} > {mine} as text, so {other} connects"
            if session.passive
            else f"active: {mine} > {theirs} as text, so this node connects"
        )


_MESH_REASON: Any = _MeshReason()

# `Session.reason` reads its slot through this property: the text itself, or the worded mesh
# reason. Everything reads fields by attribute (the dataclass's __eq__, __hash__, __repr__,
# `to_json`), so a mesh session equals, hashes and prints like one given the text.
_REASON_SLOT: Any = Session.__dict__["reason"]


def _get_reason(session: Session) -> str:
    value = _REASON_SLOT.__get__(session, Session)
    return _MeshReason.text(session) if value is _MESH_REASON else str(value)


def _set_reason(session: Session, value: str) -> None:
    # Reached only through `object.__setattr__` (the dataclass's __init__): instances stay frozen.
    _REASON_SLOT.__set__(session, value)


Session.reason = property(_get_reason, _set_reason)  # type: ignore[assignment,misc]

# A plain class with Session's very slots (the same layout), so that a session can be made
# with `object.__new__(_SessionSlots)`, filled in completely (every field of Session) with
# plain attribute stores, and turned into a Session with `__class__ = Session`: a quarter of
# the cost of the frozen __init__, which goes through `object.__setattr__` once per field.
_SessionSlots: Any = type("_SessionSlots", (), {"__slots__": Session.__slots__})


class _PeerScope:
    """Which nodes a BGPPeer applies to (its `node` / `nodeSelector`, or all for a global)."""

    def __init__(self, peer: PeerSpec) -> None:
        self.peer = peer
        self.selector: Selector | None = (
            parse_selector(peer.node_selector) if peer.node_selector is not None else None
        )
        self.peer_selector: Selector | None = (
            parse_selector(peer.peer_selector) if peer.peer_selector is not None else None
        )

    @property
    def is_global(self) -> bool:
        return self.peer.node is None and self.peer.node_selector is None

    def applies_to(self, node: SessionNode) -> bool:
        if self.peer.node is not None:
            return node.name == self.peer.node
        if self.selector is not None:
            return self.selector.matches(node.labels)
        return True

    def selects(self, node: SessionNode) -> bool:
        return self.peer_selector is not None and self.peer_selector.matches(node.labels)

    def describe(self) -> str:
        if self.is_global:
            return "all nodes"
        if self.peer.node is not None:
            return f"node {self.peer.node}"
        return f"nodes matching {self.peer.node_selector!r}"


@dataclass(frozen=True, slots=True)
class _Peering:
    """One peering a BGPPeer makes (confd's `backends.BGPPeer`), before it meets a node."""

    source: str  # the BGPPeer's name
    peer: PeerSpec
    address: IPAddress
    port: int
    peer_as: int
    target: SessionNode | None  # the cluster node at `address`, if any
    # Only a peerIP peering carries these (client.go updatePeersV1; nodeAsBGPPeers sets none).
    explicit: bool
    calico_node: bool  # the peer address is a cluster node's (decides passive for globals)
    peer_cluster_id: str | None  # known only for a selected node (nodeAsBGPPeers)
    what: str  # for the session's reason
    router: str | None = None  # the lab router at `address`, if any

    @property
    def key(self) -> tuple[str, int]:
        return (str(self.address), self.port)


class _Planner:
    """The three passes of `updatePeersV1` over every BGPPeer, then each node's sessions."""

    def __init__(
        self, nodes: Sequence[SessionNode], bgp: BgpSpec, routers: Mapping[str, SessionRouter]
    ) -> None:
        self.nodes = nodes
        self.bgp = bgp
        self.routers = routers
        self.router_at = {ip: r for r in routers.values() for ip in r.addresses}
        self.by_ip = {
            str(addr): node for node in nodes for addr in (node.ipv4, node.ipv6) if addr is not None
        }
        self.scopes = {name: _PeerScope(peer) for name, peer in sorted(bgp.peers.items())}
        self.global_peerings: dict[tuple[str, int], _Peering] = {}
        self.node_peerings: dict[str, dict[tuple[str, int], tuple[_Peering, str]]] = {}

    # -- the passes ----------------------------------------------------------------------------

    def run(self) -> None:
        for global_pass in (True, False):
            for name, scope in self.scopes.items():
                if scope.is_global == global_pass:
                    self._forward(name, scope)
        for name, scope in self.scopes.items():
            if scope.peer.reverse_peering == "Auto":
                self._reverse(name, scope)

    def _emit_global(self, peering: _Peering) -> None:
        self.global_peerings.setdefault(peering.key, peering)

    def _emit_node(self, node: SessionNode, peering: _Peering, why: str) -> None:
        """A node-specific peering: the first for its key wins; a global one to the same
        address and port makes it redundant (client.go `emit`)."""
        if peering.key in self.global_peerings:
            return
        self.node_peerings.setdefault(node.name, {}).setdefault(peering.key, (peering, why))

    def _forward(self, name: str, scope: _PeerScope) -> None:
        peer = scope.peer
        if peer.peer_router is not None:
            self._to_router(name, scope)
            return
        if peer.peer_ip is not None and scope.peer_selector is None:
            peerings = self._explicit(name, peer)
        elif scope.peer_selector is not None:
            peerings = [
                self._to_node(name, peer, other, family, f"selected node {other.name}")
                for other in self.nodes
                if scope.selects(other)
                for family in (4, 6)
                if other.address(family) is not None
            ]
        else:
            return  # localWorkloadSelector peers: listed as not emulated by the converter
        for peering in peerings:
            if scope.is_global:
                self._emit_global(peering)
                continue
            for local in self.nodes:
                if scope.applies_to(local):
                    why = f"BGPPeer {name} (applies to {scope.describe()})"
                    self._emit_node(local, peering, why)

    def _explicit(self, name: str, peer: PeerSpec) -> list[_Peering]:
        assert peer.peer_ip is not None
        address, port = parse_peer_ip(peer.peer_ip)
        if not _reachable_by_fits(peer.reachable_by, address.version):
            return []  # confd logs an error and skips the BGPPeer
        target = self.by_ip.get(str(address))
        router = self.router_at.get(str(address)) if target is None else None
        if not port:
            same = self._nodes_at(str(address), peer.as_number, 0)
            port = same[0].listen_port if same else DEFAULT_BGP_PORT
        return [
            _Peering(
                source=name,
                peer=peer,
                address=address,
                port=port,
                peer_as=peer.as_number or (target.as_number if target is not None else 0),
                target=target,
                explicit=True,
                calico_node=target is not None,
                peer_cluster_id=None,
                what=(
                    f"cluster node {target.name} {address}"
                    if target is not None
                    else f"router {router.name} {address}"
                    if router is not None
                    else f"external peer {address}"
                ),
                router=router.name if router is not None else None,
            )
        ]

    def _to_router(self, name: str, scope: _PeerScope) -> None:
        """A `peerRouter` BGPPeer (meshemu's native topology): each node it applies to peers
        with the router at the router's address on the node's subnet, as if the BGPPeer named
        that address (a node-specific peering: the address differs from subnet to subnet)."""
        peer = scope.peer
        router = self.routers.get(peer.peer_router or "")
        if router is None:
            return  # (`rules` reports an unknown router or one without bgp)
        why = f"BGPPeer {name} (applies to {scope.describe()})"
        for local in self.nodes:
            if not scope.applies_to(local):
                continue
            for _family, text in sorted(router.on_subnet_of.get(local.name, {}).items()):
                address = ipaddress.ip_address(text)
                peering = _Peering(
                    source=name,
                    peer=peer,
                    address=address,
                    port=DEFAULT_BGP_PORT,
                    peer_as=peer.as_number or router.as_number,
                    target=None,
                    explicit=True,
                    calico_node=False,
                    peer_cluster_id=None,
                    what=f"router {router.name} {address}",
                    router=router.name,
                )
                self._emit_node(local, peering, why)

    def _to_node(
        self, name: str, peer: PeerSpec, other: SessionNode, family: int, what: str
    ) -> _Peering:
        """client.go nodeAsBGPPeers: a peering to a cluster node, with its AS and port."""
        address = other.address(family)
        assert address is not None
        return _Peering(
            source=name,
            peer=peer,
            address=address,
            port=other.listen_port,
            peer_as=other.as_number,
            target=other,
            explicit=False,
            calico_node=False,
            peer_cluster_id=other.cluster_id,
            what=f"{what} {address}",
        )

    def _nodes_at(self, address: str, as_number: int | None, port: int) -> list[SessionNode]:
        """client.go nodesWithIPPortAndAS: the nodes with that address and AS (and port)."""
        want = as_number or self.bgp.as_number
        return [
            node
            for node in self.nodes
            if address in (str(node.ipv4), str(node.ipv6))
            and node.as_number == want
            and (not port or port == node.listen_port)
        ]

    def _reverse(self, name: str, scope: _PeerScope) -> None:
        """The automatic reverse peerings: the nodes on the peer side of the BGPPeer peer back
        with the nodes it applies to (all of them for a global BGPPeer)."""
        peer = scope.peer
        if scope.peer_selector is not None:
            locals_ = [node for node in self.nodes if scope.selects(node)]
            families: tuple[int, ...] = (4, 6)
            how = f"matches peerSelector {peer.peer_selector!r}"
        elif peer.peer_ip is not None:
            address, port = parse_peer_ip(peer.peer_ip)
            locals_ = self._nodes_at(str(address), peer.as_number, port or 0)
            families = (address.version,)
            how = f"is peerIP {address}"
        else:
            return
        others = [node for node in self.nodes if scope.applies_to(node)]
        for local in locals_:
            for other in others:
                for family in families:
                    if other.address(family) is None:
                        continue
                    peering = self._to_node(name, peer, other, family, f"node {other.name}")
                    why = (
                        f"BGPPeer {name}: {other.name} peers with this node, which {how} "
                        "(automatic reverse peering)"
                    )
                    self._emit_node(local, peering, why)

    # -- sessions ------------------------------------------------------------------------------

    def sessions_of(self, local: SessionNode) -> list[Session]:
        out = []
        for peering in self.global_peerings.values():
            session = self._session(local, peering, "global", "BGPPeer " + peering.source)
            if session is not None:
                out.append(session)
        for peering, why in self.node_peerings.get(local.name, {}).values():
            session = self._session(local, peering, "node", why)
            if session is not None:
                out.append(session)
        return out

    def _session(self, local: SessionNode, p: _Peering, kind: str, why: str) -> Session | None:
        """bgp_processor.go buildPeerFromData for this node."""
        family = p.address.version
        mine = local.address(family)
        if mine is None or p.address == mine:
            return None
        peer = p.peer
        local_as = (peer.local_as_number if p.explicit else None) or local.as_number
        passive = kind == "global" and p.calico_node and str(p.address) > str(mine)
        rr_client = (
            p.peer_as == local_as
            and local.cluster_id is not None
            and p.peer_cluster_id != local.cluster_id
        )
        same_as = p.peer_as == local_as
        keep = peer.next_hop_mode == "Keep" or (
            peer.next_hop_mode is None and peer.keep_original_next_hop and not same_as
        )
        reason = f"{why} peers with {p.what}"
        if passive:
            reason += f"; passive: {p.address} > {mine} as text"
        if rr_client:
            reason += "; a route-reflector client of this node"
        return Session(
            family=family,
            local_ip=str(mine),
            local_as=local_as,
            peer_ip=str(p.address),
            peer_port=p.port,
            peer_as=p.peer_as,
            kind=kind,
            passive=passive,
            rr_client=rr_client,
            cluster_id=local.cluster_id if rr_client else None,
            password=peer.password,
            peer_node=p.target.name if p.target is not None else None,
            source=p.source,
            reason=reason,
            source_address=peer.source_address == "UseNodeIP",
            keep_next_hop=keep,
            graceful_restart_time=parse_duration(peer.max_restart_time),
            allow_local_as=(peer.num_allowed_local_as_numbers or None) if p.explicit else None,
            next_hop_self=peer.next_hop_mode == "Self",
            ttl_security=peer.ttl_security or None,
            keepalive_time=parse_duration(peer.keepalive_time),
            reachable_by=peer.reachable_by,
            import_filters=applied_filters(self.bgp.filters, peer.filters, "import", family),
            export_filters=applied_filters(self.bgp.filters, peer.filters, "export", family),
            route_priority=self.bgp.route_priority(family),
            peer_router=p.router,
        )


def _reachable_by_fits(text: str | None, family: int) -> bool:
    """client.go: a `reachableBy` that is no address, or of the other family, drops the peer."""
    if text is None:
        return True
    try:
        return ipaddress.ip_address(text).version == family
    except ValueError:
        return False


def plan_sessions(
    nodes: Sequence[SessionNode], bgp: BgpSpec, routers: Mapping[str, SessionRouter] | None = None
) -> dict[str, tuple[Session, ...]]:
    """Every node's sessions, sorted by family, peer address and port. `routers`: the lab's
    routers that speak BGP (sessions to them name them in `peer_router`)."""
    planner = _Planner(nodes, bgp, routers or {})
    planner.run()
    mesh = _Mesh(nodes, bgp) if bgp.node_to_node_mesh_enabled else None
    out: dict[str, tuple[Session, ...]] = {}
    for local in nodes:
        sessions: dict[tuple[str, int], Session] = {}
        if mesh is not None and local.cluster_id is None:
            mesh.add_sessions(local, sessions)
        in_order = len(sessions)  # the mesh's come in order already
        for session in planner.sessions_of(local):
            sessions.setdefault(session.key, session)
        ordered: Iterable[Session] = sessions.values()
        if len(sessions) > in_order:
            ordered = sorted(ordered, key=_session_order)
        out[local.name] = tuple(ordered)
    return out


def _session_order(session: Session) -> tuple[int, tuple[int, int], int]:
    return (session.family, _address_sort_key(session.peer_ip), session.peer_port)


class _Mesh:
    """The node-to-node mesh: every pair of nodes that are not route reflectors, per family.

    It makes a session per pair and family (two million in a 1,000-node dual-stack mesh), so
    the members' address texts are computed and ordered once, and each node's mesh sessions
    are made in the order of the node's session list (family, then peer address).
    """

    def __init__(self, nodes: Sequence[SessionNode], bgp: BgpSpec) -> None:
        members = [node for node in nodes if node.cluster_id is None]
        self.texts = {
            node.name: {f: str(a) for f in (4, 6) if (a := node.address(f)) is not None}
            for node in members
        }
        self.by_family = {
            family: sorted(
                (
                    (node, self.texts[node.name][family])
                    for node in members
                    if family in self.texts[node.name]
                ),
                key=lambda member: _address_sort_key(member[1]),
            )
            for family in (4, 6)
        }
        self.password = bgp.node_mesh_password
        self.restart = parse_duration(bgp.node_mesh_max_restart_time)
        self.priority = {family: bgp.route_priority(family) for family in (4, 6)}

    def add_sessions(self, local: SessionNode, sessions: dict[tuple[str, int], Session]) -> None:
        """Add `local`'s mesh sessions to `sessions` (unique per peer address and port).

        Two million of them in a 1,000-node mesh: each is filled in slot by slot
        (`_SessionSlots`), with what is the same for all of a node's mesh sessions read once,
        and its reason left to be worded when read (`_MESH_REASON`)."""
        texts = self.texts[local.name]
        local_as = local.as_number
        password, restart = self.password, self.restart
        new, blank = object.__new__, _SessionSlots
        for family, members in self.by_family.items():
            mine = texts.get(family)
            if mine is None:
                continue
            priority = self.priority[family]
            for other, theirs in members:
                key = (theirs, other.listen_port)
                if other is local or key in sessions:
                    continue
                s = new(blank)
                s.family = family
                s.local_ip = mine
                s.local_as = local_as
                s.peer_ip = theirs
                s.peer_port = other.listen_port
                s.peer_as = other.as_number
                s.kind = "mesh"
                s.passive = theirs > mine
                s.rr_client = False
                s.cluster_id = None
                s.password = password
                s.peer_node = other.name
                s.source = "mesh"
                s.reason = _MESH_REASON
                s.source_address = True
                s.keep_next_hop = False
                s.graceful_restart_time = restart
                s.allow_local_as = None
                s.next_hop_self = False
                s.ttl_security = None
                s.keepalive_time = None
                s.reachable_by = None
                s.import_filters = ()
                s.export_filters = ()
                s.route_priority = priority
                s.peer_router = None
                s.__class__ = Session
                sessions[key] = s


@functools.lru_cache(maxsize=1 << 16)
def _address_sort_key(text: str) -> tuple[int, int]:
    address = ipaddress.ip_address(text)
    return (address.version, int(address))
