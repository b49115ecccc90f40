"""Pass 8: what the plan warns about, in words a person reads with `meshemu plan`.

Owns the notes: BGP off, who programs cluster routes where both or neither component does
(`model.cluster_routes.warnings`, each note `warning: <location>: ...`), sessions that cannot
come up (an external peer without a speaker or at an address the lab cannot reach, a session the
other side does not match), unencapsulated routes that end at a default router without pod
routes, nodes that learn nothing from a node with blocks, and nodes no pool gives pods to.
Pure reading of the finished nodes; it changes nothing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence

from meshemu.model import cluster_routes
from meshemu.model.addressing import special_kind
from meshemu.model.labplan import NodePlan
from meshemu.model.selector import parse_selector
from meshemu.model.topology import Topology


def plan_notes(
    topo: Topology, nodes: Sequence[NodePlan], installed: Mapping[str, frozenset[str]]
) -> tuple[str, ...]:
    """`installed`: router address -> the prefixes that router (BIRD) installs from BGP."""
    return (
        *_bgp_off_notes(topo),
        *_cluster_route_warnings(topo),
        *_session_notes(nodes),
        *_default_router_notes(nodes, installed),
        *(_silent_node_notes(nodes) if topo.bgp.enabled else ()),
        *_podless_notes(topo, nodes),
    )


def _bgp_off_notes(topo: Topology) -> list[str]:
    if topo.bgp.enabled:
        return []
    return [
        "BGP is off (bgp.enabled: false, the operator's calicoNetwork.bgp: Disabled): no node "
        "runs a BGP speaker, no session is planned and nothing is advertised; Felix programs "
        "every cluster route it owns from IPAM blocks and Node addresses"
    ]


def _cluster_route_warnings(topo: Topology) -> list[str]:
    """Settings Calico accepts that leave a pool's routes to both components or to neither,
    and BIRD programming IPIP routes (deprecated): `warning: <location>: <consequence>`."""
    return [f"warning: {where}: {text}" for where, text in cluster_routes.warnings(topo)]


def _session_notes(nodes: Sequence[NodePlan]) -> list[str]:
    notes = []
    for node in nodes:
        up = set(node.expected_up)
        for session in node.sessions:
            if not session.emulated:
                notes.append(_external_note(node.name, session.peer_ip))
            elif session.peer_ip not in up:
                notes.append(
                    f"{node.name}: session to {session.peer_name} ({session.peer_ip}:"
                    f"{session.peer_port}) cannot come up: the other side has no matching "
                    "session, or neither side connects to a port the other listens on"
                )
    return notes


def _external_note(node: str, peer_ip: str) -> str:
    """Why a session to a peer outside the lab stays down."""
    kind = special_kind(ipaddress.ip_address(peer_ip))
    if kind is not None:
        # Calico accepts any address as a BGPPeer peerIP (libcalico-go validator.go
        # validateIPPort) and confd renders the session; the lab cannot route to it.
        return (
            f"{node}: peer {peer_ip} is a {kind} address: planned as Calico renders it, "
            "cannot be reached in the lab"
        )
    return f"{node}: session to external peer {peer_ip} has no speaker in the lab and stays down"


def _default_router_notes(
    nodes: Sequence[NodePlan], installed: Mapping[str, frozenset[str]]
) -> list[str]:
    """Unencapsulated routes whose BGP next hop is in another subnet resolve through the
    default router; unless it installs the route from BGP, it knows no pod routes: say so,
    not only in each route's reason."""
    notes = []
    for node in nodes:
        gateways = {g for g in (node.gateway4, node.gateway6) if g is not None}
        if not gateways:
            continue
        next_hop = {r.prefix: r.next_hop for r in node.rib if r.learned_from is not None}
        via_router = [
            r
            for r in node.fib
            if r.via in gateways
            and r.prefix in next_hop
            and r.via != next_hop[r.prefix]
            and r.prefix not in installed.get(r.via, ())
        ]
        if via_router:
            notes.append(
                f"{node.name}: {', '.join(r.prefix for r in via_router)} "
                f"{'is' if len(via_router) == 1 else 'are'} across subnets in a pool without "
                f"encapsulation (mode Never), so traffic goes to the default router "
                f"{', '.join(sorted({r.via or '' for r in via_router}))}, which knows no pod "
                "routes: those pods are unreachable unless the routers learn pod routes"
            )
    return notes


def _silent_node_notes(nodes: Sequence[NodePlan]) -> list[str]:
    notes = []
    with_blocks = sorted(n.name for n in nodes if n.blocks)
    for node in nodes:
        learned = {r.origin_node for r in node.rib if r.learned_from is not None}
        missing = [other for other in with_blocks if other != node.name and other not in learned]
        if missing:
            notes.append(f"{node.name}: learns no routes from {', '.join(missing)}")
    return notes


def _podless_notes(topo: Topology, nodes: Sequence[NodePlan]) -> list[str]:
    notes = []
    for node in nodes:
        asked = topo.nodes[node.name].pod_count
        # A node a pool does select but whose pods IPAM refused has IPAM's own note instead.
        if asked and not node.pods and not _selected(topo, node):
            notes.append(
                f"{node.name}: no enabled IP pool selects this node, so it runs none of its "
                f"{asked} pods (Calico could give them no address)"
            )
    return notes


def _selected(topo: Topology, node: NodePlan) -> bool:
    """Some enabled pool of a family the node has selects it (it could get pod addresses)."""
    labels = topo.nodes[node.name].labels
    return any(
        not pool.disabled
        and node.address(ipaddress.ip_network(pool.cidr, strict=False).version) is not None
        and parse_selector(pool.node_selector).matches(labels)
        for pool in topo.pools.values()
    )
