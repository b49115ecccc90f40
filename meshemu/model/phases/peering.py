"""Pass 5: every node's BGP sessions, and which of them can come up in the lab.

Owns feeding the nodes' addresses to `model.sessions` (Calico's session rules), checking the
durations its rules read first (so a bad one is a located problem, not an exception), and
deciding which sessions establish: both ends configured, AS numbers and passwords agreeing,
and an active side that connects to the port the other listens on. Those become the links
(`model.bgp.LinkTable`) BGP runs over in pass 6, each with the BGPFilters its session applies
(`model.bgp.Policy`), a node's sessions to the lab's routers included.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from meshemu.errors import Problem
from meshemu.model.bgp import Link, LinkTable, Policy
from meshemu.model.bgp_policy import compiled_filters
from meshemu.model.labplan import RouterPlan, RouterSession
from meshemu.model.phases.addresses import NodeAddresses
from meshemu.model.phases.fabric import plan_router_sessions, router_links, session_routers
from meshemu.model.sessions import Session, SessionNode, plan_sessions
from meshemu.model.topology import FilterSpec, Topology


@dataclass(frozen=True)
class Peering:
    """Pass 5's result."""

    nodes: Mapping[str, SessionNode]
    sessions: Mapping[str, tuple[Session, ...]]
    links: LinkTable  # the sessions that come up (nodes' and routers'), as BGP sees them
    expected_up: Mapping[str, tuple[str, ...]]  # node -> peer addresses of sessions that come up
    routers: Mapping[str, tuple[RouterSession, ...]]  # BGP router -> its sessions
    router_up: Mapping[str, tuple[str, ...]]  # BGP router -> peer addresses of sessions up
    # False: the lab runs no BGP (`bgp.enabled: false`, the operator's `calicoNetwork.bgp:
    # Disabled`): no sessions, and no node originates anything (calico-node starts no BIRD).
    bgp: bool = True


def session_nodes(topo: Topology, addresses: NodeAddresses) -> dict[str, SessionNode]:
    def ip(node: str, family: int) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        text = addresses.of(node, family)
        return ipaddress.ip_address(text) if text is not None else None

    return {
        name: SessionNode(
            name=name,
            ipv4=ip(name, 4),
            ipv6=ip(name, 6),
            as_number=spec.as_number or topo.bgp.as_number,
            cluster_id=spec.route_reflector_cluster_id,
            labels=spec.labels,
            listen_port=spec.listen_port or topo.bgp.listen_port,
        )
        for name, spec in topo.nodes.items()
    }


def plan_peering(
    topo: Topology, addresses: NodeAddresses, routers: Sequence[RouterPlan] = ()
) -> tuple[Peering, list[Problem]]:
    nodes = session_nodes(topo, addresses)
    if not topo.bgp.enabled:
        # CALICO_NETWORKING_BACKEND=vxlan: no BIRD, no confd (node/filesystem/etc/rc.local:
        # 45-60), so no node has a session, not even with the lab's routers.
        none = {name: () for name in nodes}
        return Peering(nodes, none, {4: {}, 6: {}}, none, {}, {}, bgp=False), []
    bgp_routers = session_routers(topo, routers, addresses)
    sessions = plan_sessions(list(nodes.values()), topo.bgp, bgp_routers)
    policies = _Policies(topo.bgp.filters)
    links, up = _established(sessions, nodes, policies)
    if not any(topo.routers[r.name].bgp for r in routers):
        return Peering(nodes, sessions, links, up, {}, {}), []
    router_sessions = plan_router_sessions(topo, routers, sessions)
    fabric = router_links(topo, routers, router_sessions, sessions, nodes)
    towards_router = _towards_router(sessions)
    for (family, speaker, peer), link in fabric.links.items():
        mine = towards_router.get((speaker, link.peer_ip)) if speaker in nodes else None
        policy = policies.of(mine) if mine is not None else None
        if policy is not None:
            link = replace(link, policy=policy)
        links[family].setdefault(speaker, {})[peer] = link
    for node, router_ips in fabric.node_up.items():
        up[node] = tuple(sorted((*up.get(node, ()), *router_ips)))
    return Peering(nodes, sessions, links, up, router_sessions, fabric.up), []


class _Policies:
    """The `Policy` of each session that names BGPFilters (sessions alike share one)."""

    def __init__(self, filters: Mapping[str, FilterSpec]) -> None:
        self.filters = filters
        self.made: dict[tuple[object, ...], Policy] = {}

    def of(self, session: Session) -> Policy | None:
        if not session.import_filters and not session.export_filters:
            return None
        key = (
            session.import_filters,
            session.export_filters,
            session.family,
            session.route_priority,
        )
        policy = self.made.get(key)
        if policy is None:
            family = session.family
            policy = self.made[key] = Policy(
                compiled_filters(self.filters, session.import_filters, "import", family),
                compiled_filters(self.filters, session.export_filters, "export", family),
                session.route_priority,
            )
        return policy


def _towards_router(sessions: Mapping[str, tuple[Session, ...]]) -> dict[tuple[str, str], Session]:
    """(node, router address) -> the node's session to a lab router there: the one
    `fabric.router_links` makes the node's link of (the last, as its lookup keeps it)."""
    return {(node, s.peer_ip): s for node, mine in sessions.items() for s in mine if s.peer_router}


def session_can_establish(
    mine: Session, theirs: Session, me: SessionNode, peer: SessionNode
) -> bool:
    """Both ends configured, AS numbers agree, and an active side connects to a listening port."""
    return _ends_meet(_end(mine, me.listen_port), _end(theirs, peer.listen_port))


# What `session_can_establish` reads of one end of a session: its local AS, peer AS, password,
# whether it is passive, the port it connects to, and the port its node listens on.
_End = tuple[int, int, str | None, bool, int, int]


def _end(session: Session, listen_port: int) -> _End:
    return (
        session.local_as,
        session.peer_as,
        session.password or None,
        session.passive,
        session.peer_port,
        listen_port,
    )


def _ends_meet(mine: _End, theirs: _End) -> bool:
    my_as, my_peer_as, my_password, my_passive, my_port, my_listen = mine
    their_as, their_peer_as, their_password, their_passive, their_port, their_listen = theirs
    if my_peer_as != their_as or their_peer_as != my_as:
        return False
    if my_password != their_password:
        return False
    i_connect = not my_passive and my_port == their_listen
    they_connect = not their_passive and their_port == my_listen
    return i_connect or they_connect


class _Ends:
    """Every session's end (`_End`, numbered: a mesh has millions of sessions but few distinct
    ends) and, per address and node, the end of the node's first session towards that
    address: the other end of a session to a node at that address.

    (Looked up by the address a node's sessions come from, the table a node's sessions read is
    one and the same: a 1,000-node mesh's two million lookups stay in a small table, and read
    no other session. Each table is a list by node, a fifth of a dict's memory.)"""

    def __init__(
        self, sessions: Mapping[str, tuple[Session, ...]], nodes: Mapping[str, SessionNode]
    ) -> None:
        number: dict[_End, int] = {}
        self.ends: list[_End] = []
        self.index = {name: i for i, name in enumerate(sessions)}
        self.of: dict[str, list[int]] = {}
        self.towards: dict[str, list[int | None]] = {}
        for i, (name, mine) in enumerate(sessions.items()):
            listen = nodes[name].listen_port
            of = self.of[name] = []
            for session in mine:
                end = (  # `_end`, inline: two million sessions in a 1,000-node mesh
                    session.local_as,
                    session.peer_as,
                    session.password or None,
                    session.passive,
                    session.peer_port,
                    listen,
                )
                n = number.get(end)
                if n is None:
                    n = number[end] = len(self.ends)
                    self.ends.append(end)
                of.append(n)
                at = self.towards.get(session.peer_ip)
                if at is None:
                    at = self.towards[session.peer_ip] = [None] * len(sessions)
                if at[i] is None:
                    at[i] = n
        self.meet: dict[int, bool] = {}

    def meets(self, mine: int, theirs: int) -> bool:
        key = mine << 32 | theirs
        found = self.meet.get(key)
        if found is None:
            found = self.meet[key] = _ends_meet(self.ends[mine], self.ends[theirs])
        return found


def _established(
    sessions: Mapping[str, tuple[Session, ...]],
    nodes: Mapping[str, SessionNode],
    policies: _Policies,
) -> tuple[dict[int, dict[str, dict[str, Link]]], dict[str, tuple[str, ...]]]:
    """The sessions that come up: as BGP links, and per node the peer addresses (sorted)."""
    ends = _Ends(sessions, nodes)
    # A mesh has a session per pair and family, but as many distinct links as nodes: share them.
    shared: dict[tuple[str, int, int, bool, bool, int], Link] = {}
    filtered: dict[tuple[object, Policy | None], Link] = {}  # ... and those that apply BGPFilters
    links: dict[int, dict[str, dict[str, Link]]] = {4: {}, 6: {}}
    up: dict[str, tuple[str, ...]] = {}
    # (Two million sessions in a 1,000-node mesh: `_Ends.back` and `_Ends.meets` inline.)
    towards, index, meet = ends.towards, ends.index, ends.meet
    for name, mine in sessions.items():
        of_family: dict[int, dict[str, Link]] = {4: {}, 6: {}}
        peer_ips = []
        for session, end in zip(mine, ends.of[name], strict=True):
            peer = session.peer_node
            if peer is None:
                continue
            # The other end: the peer's first session towards our address.
            at = towards.get(session.local_ip)
            back = None if at is None else at[index[peer]]
            if back is None:
                continue
            meets = meet.get(end << 32 | back)
            if meets is None:
                meets = ends.meets(end, back)
            if not meets:
                continue
            peer_ip = session.peer_ip
            key = (
                peer_ip,
                session.peer_as,
                session.local_as,
                session.rr_client,
                session.keep_next_hop,
                session.allow_local_as or 0,
            )
            if session.import_filters or session.export_filters:
                policy = policies.of(session)
                link = filtered.get((key, policy))
                if link is None:
                    link = filtered[(key, policy)] = Link(*key, policy=policy)
            else:
                link = shared.get(key)
                if link is None:
                    link = shared[key] = Link(*key)
            # Several sessions of one family to one peer (two ports): the last one counts.
            of_family[session.family][peer] = link
            peer_ips.append(peer_ip)
        for family, peers in of_family.items():
            if peers:
                links[family][name] = peers
        peer_ips.sort()
        up[name] = tuple(peer_ips)
    return links, up
