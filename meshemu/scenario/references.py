"""The names a step uses: every node, pool and BGP peer an action names exists at that step.

Owns the reference checks of actions (and the node of an expectation): the lab's names change
as the steps add and remove nodes, pools and peers, so each is checked against the topology as
the steps before it leave it (`scenario.changes`).
"""

from __future__ import annotations

from meshemu.errors import Problem
from meshemu.model.topology import Topology
from meshemu.scenario.messages import listed, node_names, short
from meshemu.scenario.schema import NodeRef, PeerRef, PodsChange, PoolRef, SetPool, Step


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


def check_refs(where: str, step: Step, topo: Topology) -> list[Problem]:
    arg = step.argument()
    kind = step.kind
    problems: list[Problem] = []
    if isinstance(arg, NodeRef | PodsChange):
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
    if isinstance(arg, PeerRef) and arg.peer not in topo.bgp.peers:
        problems.append(
            Problem(
                f"{where}.peer",
                f"unknown BGP peer {short(arg.peer)!r}",
                f"peers now: {listed(sorted(topo.bgp.peers)) or 'none'}",
            )
        )
    return problems
