"""Pass 5: every node's BGP sessions, and which of them can come up in the lab.

Owns feeding the nodes' addresses to `model.sessions` (Calico's session rules), checking the
durations its rules read first (so a bad one is a located problem, not an exception), and
deciding which sessions establish: both ends configured, AS numbers and passwords agreeing,
and an active side that connects to the port the other listens on. Those become the links
(`model.bgp.LinkTable`) BGP runs over in pass 6.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from meshemu.errors import Problem
from meshemu.model.bgp import Link, LinkTable
from meshemu.model.phases.addresses import NodeAddresses
from meshemu.model.sessions import Session, SessionNode, plan_sessions
from meshemu.model.topology import Topology


@dataclass(frozen=True)
class Peering:
    """Pass 5's result."""

    nodes: Mapping[str, SessionNode]
    sessions: Mapping[str, tuple[Session, ...]]
    links: LinkTable  # the sessions that come up, as BGP sees them
    expected_up: Mapping[str, tuple[str, ...]]  # node -> peer addresses of sessions that come up


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


def plan_peering(topo: Topology, addresses: NodeAddresses) -> tuple[Peering, list[Problem]]:
    nodes = session_nodes(topo, addresses)
    sessions = plan_sessions(list(nodes.values()), topo.bgp)
    links, up = _established(sessions, nodes)
    return Peering(nodes, sessions, links, up), []


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


def _established(
    sessions: Mapping[str, tuple[Session, ...]], nodes: Mapping[str, SessionNode]
) -> tuple[LinkTable, dict[str, tuple[str, ...]]]:
    """The sessions that come up: as BGP links, and per node the peer addresses (sorted)."""
    # The other end of a session is the first session of the peer towards our address.
    first_towards: dict[str, dict[str, Session]] = {}
    for name, mine in sessions.items():
        index = first_towards[name] = {}
        for session in mine:
            index.setdefault(session.peer_ip, session)
    # A mesh has a session per pair and family, but as many distinct links as nodes: share them.
    shared: dict[tuple[object, ...], Link] = {}
    links: dict[int, dict[str, dict[str, Link]]] = {4: {}, 6: {}}
    up: dict[str, tuple[str, ...]] = {}
    for name, mine in sessions.items():
        me = nodes[name]
        peer_ips = []
        for session in mine:
            peer = session.peer_node
            if peer is None:
                continue
            back = first_towards[peer].get(session.local_ip)
            if back is None or not session_can_establish(session, back, me, nodes[peer]):
                continue
            key = (
                session.peer_ip,
                session.peer_as,
                session.local_as,
                session.rr_client,
                session.keep_next_hop,
                session.allow_local_as or 0,
            )
            link = shared.get(key)
            if link is None:
                link = shared[key] = Link(*key)
            # Several sessions of one family to one peer (two ports): the last one counts.
            links[session.family].setdefault(name, {})[peer] = link
            peer_ips.append(session.peer_ip)
        up[name] = tuple(sorted(peer_ips))
    return links, up
