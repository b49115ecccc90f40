"""The planner: a validated `Topology` in, the frozen `LabPlan` out, in named passes.

Owns the order of the passes (`model.phases`: subnets, routers, node addresses, pools and IPAM,
sessions, expected RIB, expected FIB, notes), the gate after each pass that raises
`ConfigError` with every problem it found before a later pass needs its data, and putting the
passes' results together into `NodePlan`s. What the plan is (its types and JSON form) lives in
`model.labplan`; its names are re-exported here for the code that plans and reads plans.
Failures: `ConfigError` for input that cannot be planned (located, with a hint), `PlanError`
where a valid input has no plan (BGP that never settles); nothing else escapes `build_plan`.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator, Mapping

from meshemu.errors import ConfigError, Problem
from meshemu.model import cluster_routes, names, nat, services
from meshemu.model.labplan import (
    Block,
    LabPlan,
    NodePlan,
    OutsidePlan,
    PodPlan,
    PoolPlan,
    RibEntry,
    RouterInterface,
    RouterPlan,
    StaticRoute,
    Sticky,
    SubnetPlan,
    Vtep,
)
from meshemu.model.phases.addresses import (
    NodeAddresses,
    gateways,
    kept_addresses,
    plan_node_addresses,
    plan_routers,
    plan_subnets,
)
from meshemu.model.phases.allocation import NodeIpam, plan_ipam, plan_pools, vtep_by_node_address
from meshemu.model.phases.fabric import installed_routes, router_speakers, with_router_bgp
from meshemu.model.phases.fib import plan_fibs
from meshemu.model.phases.notes import plan_notes
from meshemu.model.phases.peering import Peering, plan_peering
from meshemu.model.phases.rib import Ribs, plan_ribs
from meshemu.model.phases.services import plan_services, without_service_routes
from meshemu.model.policy import check_policies, plan_policy, policy_notes
from meshemu.model.routes import FibRoute
from meshemu.model.rules import check_topology
from meshemu.model.topology import Topology

__all__ = [
    "Block",
    "LabPlan",
    "NodePlan",
    "OutsidePlan",
    "PodPlan",
    "PoolPlan",
    "RibEntry",
    "RouterInterface",
    "RouterPlan",
    "StaticRoute",
    "Sticky",
    "SubnetPlan",
    "Vtep",
    "build_plan",
]


def _gate(problems: list[Problem]) -> None:
    """Stop before the next pass: it would need what these problems left undecided."""
    if problems:
        raise ConfigError(problems)


@contextlib.contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Planning creates millions of small objects in a large lab and no reference cycles;
    Python's cycle collector would scan them again and again (a third of the time of a
    1,000-node plan) for nothing, so it pauses while the plan is built."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def build_plan(
    topo: Topology, previous: LabPlan | None = None, sticky: Sticky | None = None
) -> LabPlan:
    """Decide the whole lab.

    `previous` (or its `Sticky` record): the plan of the running lab this topology changes;
    nodes keep their addresses and block affinities and pods their addresses.
    Raises ConfigError (every problem of the first pass that found any, located) or
    PlanError (a valid input without a plan: BGP that never settles); nothing else.
    """
    with _no_cycle_collection():
        return _build(topo, previous, sticky)


def _build(topo: Topology, previous: LabPlan | None, sticky: Sticky | None) -> LabPlan:
    if sticky is None and previous is not None:
        sticky = Sticky.of(previous)
    # Pass 0: the input's own rules. `load_topology` checked them already; a topology built
    # in code (a scenario's changed topology) is checked here, so no pass meets bad input.
    _gate(
        check_topology(topo)
        + nat.check_outside(topo)
        + services.check_pods(topo)
        + services.check_services(topo)
        + check_policies(topo)
    )
    subnets = plan_subnets(topo)
    kept = kept_addresses(topo, subnets, sticky)
    routers, problems = plan_routers(topo, subnets, kept)
    # (Nodes take what routers left: one gate after both reports a full subnet once, for
    # every router and node it leaves without an address.)
    addresses, more = plan_node_addresses(topo, subnets, routers, kept)
    _gate(problems + more + nat.address_clash(topo, routers))
    pools = cluster_routes.with_bird_programs(topo, plan_pools(topo))
    ipam, problems = plan_ipam(topo, pools, addresses, sticky)
    _gate(problems)
    peering, problems = plan_peering(topo, addresses, routers)
    _gate(problems)
    service_plan, service_notes = plan_services(
        topo, {name: node.pods for name, node in ipam.items()}
    )
    ribs = plan_ribs(
        ipam,
        pools,
        addresses,
        peering,
        router_speakers(topo, routers),
        service_plan.advertised if service_plan is not None else None,
    )
    routers = with_router_bgp(topo, routers, peering.routers, peering.router_up, ribs.routers)
    gateway = gateways(routers)
    installed = installed_routes(routers)  # what each BGP router forwards: FIB reasons, notes
    fibs = plan_fibs(
        topo,
        subnets,
        addresses,
        gateway,
        vtep_by_node_address(ipam, addresses),
        pools,
        ipam,
        without_service_routes(ribs.entries, service_plan),
        installed,
    )
    nodes = _nodes(topo, subnets, addresses, gateway, ipam, peering, ribs, fibs)
    policy = plan_policy(topo)
    return LabPlan(
        name=topo.name,
        description=topo.description,
        fabric_netns=names.fabric_netns(topo.name),
        as_number=topo.bgp.as_number,
        mesh=topo.bgp.node_to_node_mesh_enabled,
        subnets=subnets,
        routers=routers,
        nodes=nodes,
        pools=pools,
        hold_time=topo.bgp.hold_time,
        unsupported=tuple(topo.unsupported),
        notes=(
            *(note for node_ipam in ipam.values() for note in node_ipam.notes),
            *plan_notes(topo, nodes, installed),
            *policy_notes(topo, policy),
            *service_notes,
        ),
        outside=nat.plan_outside(topo, routers),
        policy=policy,
        services=service_plan,
    )


def _nodes(
    topo: Topology,
    subnets: tuple[SubnetPlan, ...],
    addresses: NodeAddresses,
    gateway: Mapping[tuple[str, int], str],
    ipam: Mapping[str, NodeIpam],
    peering: Peering,
    ribs: Ribs,
    fibs: Mapping[str, tuple[FibRoute, ...]],
) -> tuple[NodePlan, ...]:
    """The passes' results, per node."""
    by_name = {s.name: s for s in subnets}
    out = []
    for index, (name, spec) in enumerate(topo.nodes.items()):
        subnet = by_name[spec.subnet]
        ipv4, ipv6 = addresses.of(name, 4), addresses.of(name, 6)
        out.append(
            NodePlan(
                name=name,
                index=index,
                netns=names.node_netns(topo.name, name),
                subnet=spec.subnet,
                ipv4=ipv4,
                ipv6=ipv6,
                ipv4_prefix=subnet.ipv4 if ipv4 else None,
                ipv6_prefix=subnet.ipv6 if ipv6 else None,
                gateway4=gateway.get((spec.subnet, 4)),
                gateway6=gateway.get((spec.subnet, 6)),
                uplink=names.UPLINK,
                uplink_mac=names.mac_address(topo.name, name),
                fabric_ifname=names.fabric_port_ifname("n", index),
                as_number=peering.nodes[name].as_number,
                router_id=ribs.router_ids[name],
                cluster_id=spec.route_reflector_cluster_id,
                listen_port=peering.nodes[name].listen_port,
                labels=tuple(sorted(spec.labels.items())),
                blocks=ipam[name].blocks,
                pods=ipam[name].pods,
                ipip_tunnel_address=ipam[name].ipip_tunnel_address,
                vteps=ipam[name].vteps,
                sessions=peering.sessions[name],
                expected_up=peering.expected_up[name],
                rib=ribs.entries[name],
                fib=fibs[name],
                speaker=(spec.speaker or topo.speaker) if topo.bgp.enabled else "none",
                route_priority4=topo.bgp.route_priority(4),
                route_priority6=topo.bgp.route_priority(6),
                felix_programs=cluster_routes.felix_programs(topo, name),
            )
        )
    return tuple(out)
