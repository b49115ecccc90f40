"""Pass 5: every node's BGP sessions, and which of them can come up in the lab.

Owns feeding the nodes' addresses to `model.sessions` (Calico's session rules), checking the
durations its rules read first (so a bad one is a located problem, not an exception), and
deciding which sessions establish: both ends configured, AS numbers and passwords agreeing,
and an active side that connects to the port the other listens on. Those become the
`Adjacency`s BGP runs over in pass 6.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from meshemu.errors import Problem
from meshemu.model.bgp import Adjacency, Link
from meshemu.model.phases.addresses import NodeAddresses
from meshemu.model.sessions import Session, SessionNode, parse_duration, plan_sessions
from meshemu.model.topology import Topology


@dataclass(frozen=True)
class Peering:
    """Pass 5's result."""

    nodes: Mapping[str, SessionNode]
    sessions: Mapping[str, tuple[Session, ...]]
    adjacencies: tuple[Adjacency, ...]
    expected_up: Mapping[str, tuple[str, ...]]  # node -> peer addresses of sessions that come up


def _duration_problems(topo: Topology) -> list[Problem]:
    fields = [("bgp.nodeMeshMaxRestartTime", topo.bgp.node_mesh_max_restart_time)]
    fields += [
        (f"bgp.peers.{name}.maxRestartTime", peer.max_restart_time)
        for name, peer in topo.bgp.peers.items()
    ]
    problems = []
    for where, text in fields:
        try:
            parse_duration(text)
        except ValueError as err:
            problems.append(Problem(where, str(err), "write a duration like 120s, 2m or 1m30s"))
    return problems


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
    problems = _duration_problems(topo)
    nodes = session_nodes(topo, addresses)
    if problems:
        return Peering(nodes, {}, (), {}), problems
    sessions = plan_sessions(list(nodes.values()), topo.bgp)
    adjacencies = _adjacencies(sessions, nodes)
    up: dict[str, list[str]] = {name: [] for name in nodes}
    for adj in adjacencies:
        up[adj.speaker].append(adj.link.peer_ip)
    return (
        Peering(nodes, sessions, adjacencies, {n: tuple(sorted(ips)) for n, ips in up.items()}),
        [],
    )


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
    sessions: Mapping[str, tuple[Session, ...]], nodes: Mapping[str, SessionNode]
) -> tuple[Adjacency, ...]:
    # The other end of a session is the first session of the peer towards our address.
    first_towards: dict[str, dict[str, Session]] = {}
    for name, mine in sessions.items():
        index = first_towards[name] = {}
        for session in mine:
            index.setdefault(session.peer_ip, session)
    # A mesh has a session per pair and family, but as many distinct links as nodes: share them.
    links: dict[tuple[object, ...], Link] = {}
    out = []
    for name, mine in sessions.items():
        me = nodes[name]
        for session in mine:
            if session.peer_node is None:
                continue
            back = first_towards.get(session.peer_node, {}).get(session.local_ip)
            if back is None:
                continue
            if not session_can_establish(session, back, me, nodes[session.peer_node]):
                continue
            key = (
                session.peer_ip,
                session.peer_as,
                session.local_as,
                session.rr_client,
                session.keep_next_hop,
                session.allow_local_as or 0,
            )
            link = links.get(key)
            if link is None:
                link = links[key] = Link(
                    peer_ip=session.peer_ip,
                    peer_as=session.peer_as,
                    local_as=session.local_as,
                    rr_client=session.rr_client,
                    keep_next_hop=session.keep_next_hop,
                    allow_local_as=session.allow_local_as or 0,
                )
            out.append(Adjacency(name, session.peer_node, link))
    return tuple(out)
