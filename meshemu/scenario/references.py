"""The names a step uses: every node, pool, BGP peer and router an action names exists at
that step.

Owns the reference checks of actions (and the node of an expectation): the lab's names change
as the steps add and remove nodes, pools and peers, so each is checked against the topology as
the steps before it leave it (`scenario.changes`). Routers cannot be added or removed live, but
only those that speak BGP have settings to change (`set-router`).
"""

from __future__ import annotations

from meshemu.errors import Problem
from meshemu.model.topology import Topology
from meshemu.scenario.messages import listed, node_names, short
from meshemu.scenario.schema import (
    NodeRef,
    PeerRef,
    PodsChange,
    PoolRef,
    RouterRef,
    SetPeer,
    SetPods,
    SetPool,
    SetRouter,
    Step,
)


def check_node(where: str, node: str, topo: Topology) -> list[Problem]:
    if node not in topo.nodes:
        return [
            Problem(
                f"{where}.node",
                f"unknown node {short(node)!r} at this step",
                f"nodes now: {node_names(topo)}",
            )
        ]
    return []


def router_names(topo: Topology) -> str:
    return listed(sorted(topo.routers)) or "none"


def check_router(where: str, router: str, topo: Topology, bgp: bool = False) -> list[Problem]:
    """`router` is a router of the lab (and speaks BGP, when `bgp`)."""
    spec = topo.routers.get(router)
    if spec is None:
        return [
            Problem(
                f"{where}.router",
                f"unknown router {short(router)!r}",
                f"routers: {router_names(topo)}",
            )
        ]
    if bgp and spec.bgp is None:
        speakers = sorted(name for name, r in topo.routers.items() if r.bgp is not None)
        return [
            Problem(
                f"{where}.router",
                f"{router} does not speak BGP: it has no BGP settings to change",
                f"routers that speak BGP: {listed(speakers) or 'none'}",
            )
        ]
    return []


def check_refs(where: str, step: Step, topo: Topology) -> list[Problem]:
    arg = step.argument()
    kind = step.kind
    problems: list[Problem] = []
    if isinstance(arg, NodeRef | PodsChange | SetPods):
        problems += check_node(where, arg.node, topo)
        if (
            kind == "stop-reflector"
            and arg.node in topo.nodes
            and topo.nodes[arg.node].route_reflector_cluster_id is None
        ):
            problems.append(
                Problem(
                    f"{where}.node",
                    f"{arg.node} is not a route reflector",
                    "use stop-speaker for other nodes",
                )
            )
    if isinstance(arg, SetPool | PoolRef) and arg.pool not in topo.pools:
        problems.append(
            Problem(
                f"{where}.pool",
                f"unknown pool {short(arg.pool)!r}",
                f"pools now: {listed(sorted(topo.pools))}",
            )
        )
    if isinstance(arg, RouterRef | SetRouter):
        problems += check_router(where, arg.router, topo, bgp=isinstance(arg, SetRouter))
    if isinstance(arg, PeerRef | SetPeer) and arg.peer not in topo.bgp.peers:
        problems.append(
            Problem(
                f"{where}.peer",
                f"unknown BGP peer {short(arg.peer)!r}",
                f"peers now: {listed(sorted(topo.bgp.peers)) or 'none'}",
            )
        )
    return problems
