"""Whether each expectation can hold at its step: route, session, reachability, snapshot, and
convergence.

Owns the checks of what an expectation names (nodes, pods at that step, prefixes, next hops,
peers: nodes, BGP routers or addresses), in a family the lab has at that step
(`scenario.families`), with a path the pools allow (`scenario.paths`) and a snapshot that
exists (`scenario.files`); and how a router's name becomes the address the runner compares
(`router_peer_address`, `router_next_hop`). A matrix names nothing to check; `converged` cannot
hold while a router is stopped (the plan has it running).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from meshemu.errors import Problem
from meshemu.model.plan import LabPlan, PodPlan
from meshemu.scenario.changes import LabAtStep
from meshemu.scenario.families import (
    address_form,
    address_version,
    family_number,
    lacks,
    missing_family,
    prefix_problems,
)
from meshemu.scenario.files import snapshot_problems
from meshemu.scenario.messages import node_names, short
from meshemu.scenario.paths import impossible_path
from meshemu.scenario.references import check_node, router_names
from meshemu.scenario.schema import Expectation, ReachExpect, RouteExpect, SessionExpect


def check_expectation(
    where: str, expect: Expectation, lab: LabAtStep, folder: Path | None
) -> list[Problem]:
    where = f"{where}.{expect.kind}"
    if expect.route is not None:
        return _check_route(where, expect.route, lab)
    if expect.session is not None:
        return _check_session(where, expect.session, lab)
    if expect.reachable is not None:
        return _check_reachable(where, expect.reachable, lab)
    if expect.snapshot is not None and folder is not None:
        return snapshot_problems(f"{where}.file", expect.snapshot.file, folder, lab.written)
    if expect.converged is not None and lab.stopped:
        stopped = ", ".join(sorted(lab.stopped))
        return [
            Problem(
                where,
                f"router {stopped} is stopped: the plan `converged` compares with has it running",
                "expect sessions, routes, reachability or the matrix until start-router",
            )
        ]
    return []


def router_peer_address(plan: LabPlan, node: str, router: str, family: int) -> str | None:
    """The address of `node`'s session with BGP router `router` in `family` (None: none)."""
    return next(
        (
            s.peer_ip
            for s in plan.node(node).sessions
            if s.peer_router == router and s.family == family
        ),
        None,
    )


def router_next_hop(plan: LabPlan, node: str, router: str, family: int) -> str | None:
    """`router`'s address in `family` on `node`'s subnet: the next hop it is for the node."""
    found = next((r for r in plan.routers if r.name == router), None)
    iface = found.interface_on(plan.node(node).subnet) if found is not None else None
    return iface.address(family) if iface is not None else None


def _check_route(where: str, route: RouteExpect, lab: LabAtStep) -> list[Problem]:
    topo = lab.topo
    problems = check_node(where, route.node, topo)
    if route.to is not None and route.to not in topo.nodes:
        problems.append(
            Problem(
                f"{where}.to",
                f"unknown node {short(route.to)!r}",
                f"nodes now: {node_names(topo)}",
            )
        )
    if route.via is not None and route.via not in topo.nodes and route.via not in topo.routers:
        if address_version(route.via) is None:
            problems.append(
                Problem(
                    f"{where}.via",
                    f"{short(route.via)!r} is neither a node nor an address, nor a router of "
                    "the lab",
                    f"write a node name, a router name ({router_names(topo)}) or an IP address",
                )
            )
        else:
            problems += address_form(f"{where}.via", route.via)
    if route.prefix is not None:
        problems += prefix_problems(f"{where}.prefix", route.prefix)
    if not route.present and (route.via or route.dev):
        problems.append(
            Problem(
                f"{where}",
                "via/dev given for a route expected absent",
                "drop via and dev, or expect present: true",
            )
        )
    if problems:
        return problems
    # The runner reads `family` for the blocks of `to` and for a `via` node's address; a
    # prefix is of its own family.
    family = (
        ipaddress.ip_network(route.prefix).version if route.prefix else family_number(route.family)
    )
    missing = missing_family(f"{where}.{'prefix' if route.prefix else 'family'}", family, lab)
    if missing:
        return missing
    if (
        route.to is not None
        and not any(ipaddress.ip_network(b.cidr).version == family for b in _blocks(lab, route.to))
        and lab.plan is not None
    ):
        problems.append(
            Problem(
                f"{where}.to",
                f"{route.to} has no IPv{family} block at this step",
                f"blocks come from IPv{family} pools whose nodeSelector selects {route.to}",
            )
        )
    if route.present:
        if lacks(lab.node(route.node), family):
            problems.append(
                Problem(
                    f"{where}.node",
                    f"{route.node} has no IPv{family} address, so no IPv{family} routes",
                    "expect the family the node has",
                )
            )
        problems += _check_via(f"{where}.via", route, family, lab)
    return problems


def _blocks(lab: LabAtStep, node: str) -> list[Any]:
    found = lab.node(node)
    return list(found.blocks) if found is not None else []


def _check_via(where: str, route: RouteExpect, family: int, lab: LabAtStep) -> list[Problem]:
    via = route.via
    if via is None:
        return []
    if via in lab.topo.nodes or via in lab.topo.routers:
        what = "node" if via in lab.topo.nodes else "router"
        if family_number(route.family) != family:
            return [
                Problem(
                    where,
                    f"via names {what} {via}, read as its {route.family} address, but the prefix "
                    f"is of family ipv{family}",
                    f"add family: ipv{family}",
                )
            ]
        if what == "node" and lacks(lab.node(via), family):
            return [Problem(where, f"{via} has no IPv{family} address", "name another next hop")]
        if (
            what == "router"
            and lab.plan is not None
            and lab.node(route.node) is not None
            and router_next_hop(lab.plan, route.node, via, family) is None
        ):
            return [
                Problem(
                    where,
                    f"router {via} has no IPv{family} address on the subnet of {route.node}: it "
                    f"is never its next hop",
                    "name a router on the node's subnet, or write an address",
                )
            ]
        return []
    if address_version(via) != family:
        return [
            Problem(
                where,
                f"{via} is an IPv{address_version(via)} address, but the route is IPv{family}",
                f"write an IPv{family} next hop",
            )
        ]
    return []


def _check_router_session(where: str, session: SessionExpect, lab: LabAtStep) -> list[Problem]:
    """A session named by its BGP router: the node has one with it in `family` at this step."""
    router = session.peer
    if lab.topo.routers[router].bgp is None:
        return [
            Problem(
                f"{where}.peer",
                f"router {router} does not speak BGP: no node has a session with it",
                "name a router with `bgp`, a node or an address",
            )
        ]
    family = family_number(session.family)
    missing = missing_family(f"{where}.family", family, lab)
    if missing or lab.plan is None or lab.node(session.node) is None:
        return missing
    if router_peer_address(lab.plan, session.node, router, family) is None:
        have = sorted(
            {s.peer_router for s in lab.plan.node(session.node).sessions if s.peer_router}
        )
        return [
            Problem(
                f"{where}.peer",
                f"{session.node} has no IPv{family} session with router {router} at this step",
                f"its sessions with routers: {', '.join(have)}"
                if have
                else f"a BGPPeer with peerRouter: {router} selecting {session.node} makes one",
            )
        ]
    return []


def _check_session(where: str, session: SessionExpect, lab: LabAtStep) -> list[Problem]:
    topo = lab.topo
    problems = check_node(where, session.node, topo)
    peer = session.peer
    if peer in topo.routers:
        return problems or _check_router_session(where, session, lab)
    peer_version = None if peer in topo.nodes else address_version(peer)
    if peer not in topo.nodes and peer_version is None:
        problems.append(
            Problem(
                f"{where}.peer",
                f"unknown peer {short(peer)!r}",
                f"a node ({node_names(topo)}), a BGP router ({router_names(topo)}) or an address",
            )
        )
    elif peer_version is not None:
        problems += address_form(f"{where}.peer", peer)
    if problems:
        return problems
    # A peer address is of its own family; a peer node is read in `family`.
    family = peer_version or family_number(session.family)
    missing = missing_family(f"{where}.{'peer' if peer_version else 'family'}", family, lab)
    if missing or session.state != "established":
        return missing
    if lacks(lab.node(session.node), family):
        problems.append(
            Problem(
                f"{where}.node",
                f"{session.node} has no IPv{family} address: no IPv{family} session comes up",
                "expect the family the node has",
            )
        )
    if peer in topo.nodes and lacks(lab.node(peer), family):
        problems.append(
            Problem(
                f"{where}.peer",
                f"{peer} has no IPv{family} address: no IPv{family} session comes up",
                "expect the family both nodes have",
            )
        )
    return problems


def _check_reachable(where: str, reach: ReachExpect, lab: LabAtStep) -> list[Problem]:
    family = family_number(reach.family)
    ends = [_pod(f"{where}.from", reach.from_, lab), _pod(f"{where}.to", reach.to, lab)]
    problems = [end for end in ends if isinstance(end, Problem)]
    if problems:
        return problems
    missing = missing_family(f"{where}.family", family, lab)
    if missing:
        return missing
    pods = [end for end in ends if isinstance(end, PodPlan)]
    for label, pod in zip(("from", "to"), pods, strict=False):
        if (pod.ipv4 if family == 4 else pod.ipv6) is None:
            # The runner fails such a step whatever it expects: it has nothing to probe.
            problems.append(
                Problem(
                    f"{where}.{label}",
                    f"{pod.node}/{pod.name} has no IPv{family} address",
                    f"its node has no IPv{family} address or no IPv{family} pool selects it",
                )
            )
    if problems or len(pods) != 2 or reach.path is None or not reach.reachable:
        return problems
    assert lab.plan is not None
    why = impossible_path(reach.path, family, pods[0], pods[1], lab.plan)
    if why is not None:
        return [Problem(f"{where}.path", why, "expect the path the pools give, or no path")]
    return []


def _pod(where: str, ref: str, lab: LabAtStep) -> PodPlan | Problem | None:
    """The pod `node/pod` names at this step (None when only the topology is known)."""
    node, slash, pod = ref.partition("/")
    if not slash or not node or not pod:
        return Problem(where, f"{short(ref)!r} is not a pod", "write node/pod, like node1/pod1")
    if node not in lab.topo.nodes:
        return Problem(
            where,
            f"unknown node {short(node)!r} in {short(ref)!r}",
            f"nodes now: {node_names(lab.topo)}",
        )
    found = lab.node(node)
    names = (
        [p.name for p in found.pods]
        if found is not None
        else [p.name for p in lab.topo.nodes[node].pod_list()]
    )
    if pod not in names:
        return Problem(
            where,
            f"unknown pod {short(ref)!r} at this step",
            f"{node} has pods {names[0]}..{names[-1]}" if names else f"{node} has no pods",
        )
    return next((p for p in found.pods if p.name == pod), None) if found is not None else None
