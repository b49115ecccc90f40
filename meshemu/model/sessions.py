"""The BGP sessions of every node, exactly as Calico's confd builds them.

Owns the session rules (checked against Calico's own rendered BIRD configuration by the
conformance test):
- node-to-node mesh between all nodes that are not route reflectors; of each pair, the side
  whose peer address is higher (compared as text) is passive;
- BGPPeers with `peerIP`: global (no node, no nodeSelector) or node-specific; a peer IP that is
  one of the cluster's nodes uses that node's AS and listen port, and for a *global* peer the
  same text comparison decides the passive side; a node whose own address is the peer IP gets
  the reverse sessions towards the nodes the BGPPeer applies to (unless `reversePeering: Manual`);
- BGPPeers with `peerSelector`: sessions from every node the peer applies to towards every
  selected node, and the reverse (unless `reversePeering: Manual`); never passive;
- a route reflector (node with a cluster ID) marks its sessions to nodes outside its cluster as
  route-reflector clients.
Sessions are unique per (peer address, port); the first rule that creates one wins.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from meshemu.model.addressing import IPAddress, parse_peer_ip
from meshemu.model.selector import Selector, parse_selector
from meshemu.model.topology import BgpSpec, PeerSpec
from meshemu.model.wire import Fields

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
        )


def parse_duration(text: str | None) -> int | None:
    """Kubernetes durations as Calico writes them: `10s`, `2m`, `1m30s`, `120`."""
    if text is None:
        return None
    total, number = 0, ""
    units = {"h": 3600, "m": 60, "s": 1}
    for char in text.strip():
        if char.isdigit():
            number += char
        elif char in units and number:
            total, number = total + int(number) * units[char], ""
        else:
            raise ValueError(f"{text!r} is not a duration like 120s or 2m")
    return total + (int(number) if number else 0)


def _is_rr_client(local: SessionNode, peer: SessionNode | None) -> bool:
    return local.cluster_id is not None and peer is not None and peer.cluster_id != local.cluster_id


class _PeerScope:
    """Which nodes a BGPPeer applies to (its `node` / `nodeSelector`, or all for a global)."""

    def __init__(self, peer: PeerSpec) -> None:
        self.peer = peer
        self.selector: Selector | None = (
            parse_selector(peer.node_selector) if peer.node_selector is not None else None
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


def plan_sessions(nodes: Sequence[SessionNode], bgp: BgpSpec) -> dict[str, tuple[Session, ...]]:
    """Every node's sessions, sorted by family, peer address and port."""
    by_ip = {
        str(addr): node for node in nodes for addr in (node.ipv4, node.ipv6) if addr is not None
    }
    scopes = {name: _PeerScope(peer) for name, peer in sorted(bgp.peers.items())}
    mesh = _Mesh(nodes, bgp) if bgp.node_to_node_mesh_enabled else None
    out: dict[str, tuple[Session, ...]] = {}
    for local in nodes:
        sessions: dict[tuple[str, int], Session] = {}
        add = _adder(sessions)
        if mesh is not None and local.cluster_id is None:
            mesh.add_sessions(local, sessions)
        in_order = len(sessions)  # the mesh's come in order already
        for name, scope in scopes.items():
            peer = scope.peer
            if peer.peer_ip is not None:
                _explicit_peer(local, name, scope, nodes, by_ip, add)
            elif peer.peer_selector is not None:
                _selector_peer(local, name, scope, nodes, add)
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

    def add_sessions(self, local: SessionNode, sessions: dict[tuple[str, int], Session]) -> None:
        """Add `local`'s mesh sessions to `sessions` (unique per peer address and port)."""
        texts = self.texts[local.name]
        for family, members in self.by_family.items():
            mine = texts.get(family)
            if mine is None:
                continue
            for other, theirs in members:
                if other is local or (theirs, other.listen_port) in sessions:
                    continue
                passive = theirs > mine
                sessions[(theirs, other.listen_port)] = Session(
                    family=family,
                    local_ip=mine,
                    local_as=local.as_number,
                    peer_ip=theirs,
                    peer_port=other.listen_port,
                    peer_as=other.as_number,
                    kind="mesh",
                    passive=passive,
                    rr_client=False,
                    cluster_id=None,
                    password=self.password,
                    peer_node=other.name,
                    source="mesh",
                    reason=(
                        f"node-to-node mesh with {other.name}; "
                        + (
                            f"passive: {theirs} > {mine} as text, so {other.name} connects"
                            if passive
                            else f"active: {mine} > {theirs} as text, so this node connects"
                        )
                    ),
                    graceful_restart_time=self.restart,
                )


def _adder(sessions: dict[tuple[str, int], Session]) -> Callable[[Session], None]:
    """Sessions are unique per (peer address, port): the first rule that makes one wins."""

    def add(session: Session) -> None:
        sessions.setdefault(session.key, session)

    return add


@functools.lru_cache(maxsize=1 << 16)
def _address_sort_key(text: str) -> tuple[int, int]:
    address = ipaddress.ip_address(text)
    return (address.version, int(address))


def _peer_options(peer: PeerSpec, local: SessionNode) -> dict[str, Any]:
    """The session fields a BGPPeer decides, whichever rule made the session."""
    return {
        "local_as": peer.local_as_number or local.as_number,
        "password": peer.password,
        "source_address": peer.source_address == "UseNodeIP",
        "keep_next_hop": peer.keep_original_next_hop,
        "graceful_restart_time": parse_duration(peer.max_restart_time),
        "allow_local_as": peer.num_allowed_local_as_numbers,
    }


def _node_session(
    local: SessionNode,
    other: SessionNode,
    family: int,
    peer: PeerSpec,
    source: str,
    reason: str,
) -> Session | None:
    mine, theirs = local.address(family), other.address(family)
    if mine is None or theirs is None:
        return None
    rr_client = _is_rr_client(local, other)
    return Session(
        family=family,
        local_ip=str(mine),
        peer_ip=str(theirs),
        peer_port=other.listen_port,
        peer_as=other.as_number,
        kind="node",
        passive=False,
        rr_client=rr_client,
        cluster_id=local.cluster_id if rr_client else None,
        peer_node=other.name,
        source=source,
        reason=reason
        + (f"; {other.name} is a route-reflector client of this node" if rr_client else ""),
        **_peer_options(peer, local),
    )


def _explicit_peer(
    local: SessionNode,
    name: str,
    scope: _PeerScope,
    nodes: Sequence[SessionNode],
    by_ip: Mapping[str, SessionNode],
    add: Callable[[Session], None],
) -> None:
    peer = scope.peer
    assert peer.peer_ip is not None
    address, port = parse_peer_ip(peer.peer_ip)
    family = address.version
    mine = local.address(family)
    target = by_ip.get(str(address))
    if target is local:
        # This node *is* the peer: it takes the other side of the sessions of every node the
        # BGPPeer applies to (Calico's automatic reverse peering).
        if peer.reverse_peering == "Manual":
            return
        for other in nodes:
            if other is local or not scope.applies_to(other):
                continue
            session = _node_session(
                local,
                other,
                family,
                peer,
                name,
                f"BGPPeer {name} makes {other.name} peer with {address}, this node's address "
                "(reverse peering)",
            )
            if session is not None:
                add(session)
        return
    if mine is None or not scope.applies_to(local):
        return
    kind = "global" if scope.is_global else "node"
    peer_port = port or (target.listen_port if target is not None else DEFAULT_BGP_PORT)
    peer_as = peer.as_number or (target.as_number if target is not None else 0)
    passive = kind == "global" and target is not None and str(address) > str(mine)
    rr_client = _is_rr_client(local, target)
    what = f"cluster node {target.name}" if target is not None else "external peer"
    applies = (
        "all nodes"
        if scope.is_global
        else f"node {peer.node}"
        if peer.node is not None
        else f"nodes matching {peer.node_selector!r}"
    )
    reason = f"BGPPeer {name} ({kind}, applies to {applies}) peers with {what} {address}"
    if passive:
        reason += f"; passive: {address} > {mine} as text"
    if rr_client:
        reason += f"; {target.name if target else address} is a route-reflector client"
    add(
        Session(
            family=family,
            local_ip=str(mine),
            peer_ip=str(address),
            peer_port=peer_port,
            peer_as=peer_as,
            kind=kind,
            passive=passive,
            rr_client=rr_client,
            cluster_id=local.cluster_id if rr_client else None,
            peer_node=target.name if target is not None else None,
            source=name,
            reason=reason,
            **_peer_options(peer, local),
        )
    )


def _selector_peer(
    local: SessionNode,
    name: str,
    scope: _PeerScope,
    nodes: Sequence[SessionNode],
    add: Callable[[Session], None],
) -> None:
    peer = scope.peer
    assert peer.peer_selector is not None
    peer_selector = parse_selector(peer.peer_selector)
    targets: list[tuple[SessionNode, str]] = []
    if scope.applies_to(local):
        targets += [
            (
                other,
                f"BGPPeer {name}: this node matches its nodeSelector and {other.name} its "
                f"peerSelector {peer.peer_selector!r}",
            )
            for other in nodes
            if other is not local and peer_selector.matches(other.labels)
        ]
    if peer.reverse_peering == "Auto" and peer_selector.matches(local.labels):
        targets += [
            (
                other,
                f"BGPPeer {name}: {other.name} peers with this node because this node matches "
                f"peerSelector {peer.peer_selector!r} (automatic reverse peering)",
            )
            for other in nodes
            if other is not local and scope.applies_to(other)
        ]
    for other, reason in targets:
        for family in (4, 6):
            session = _node_session(local, other, family, peer, name, reason)
            if session is not None:
                add(session)
