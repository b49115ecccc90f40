"""The per-node agent configuration: the slice of the plan one node's agent needs, typed.

Owns `AgentConfig` (the node's name, namespace, addresses, router ID, AS, cluster ID, its
sessions' BGP fields with the BGPFilters each applies, the rules of those filters, its blocks
and their pools, the host routes of the pod addresses it borrowed, the pools' route rules and
BGP export flag, and the route context: its subnets and default routers, and every node's
address with that node's router ID and VTEP),
`agent_config_of(plan, node)` to cut it from a plan, and its JSON form (the agent's
configuration file, which the lab writes and the agent reads): its fields under their names,
through `wire.Wire`.
Each agent reads only this, not the whole plan (whose size grows with the square of the node
count), so an agent's memory stays flat as labs grow. The agent decides nothing from it that
the planner did not decide the same way (`model.bgp`, `model.routes`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from meshemu.errors import LabError
from meshemu.model.bgp import NORMAL_ROUTE_PRIORITY, Link, Policy, Speaker, session_link
from meshemu.model.bgp_policy import Filter, compiled_filters
from meshemu.model.routes import PoolRule, RouteContext, block_has_blackhole
from meshemu.model.wire import Wire

if TYPE_CHECKING:
    # Only the lab reads a plan to make a configuration; the agent, which imports this module,
    # must not pull in the plan's input models (pydantic: about 14 MiB more per node).
    from meshemu.model.labplan import LabPlan, NodePlan
    from meshemu.model.topology import BgpSpec


@dataclass(frozen=True)
class AgentSession(Wire):
    """One session of the node, with what the agent's BGP rules read of it."""

    peer_ip: str
    peer_node: str | None  # the node, or BGP router, at the other end; None: not emulated
    kind: str
    peer_as: int
    local_as: int
    rr_client: bool
    keep_next_hop: bool
    allow_local_as: int | None
    # The BGPFilters it applies, in order (`Session.import_filters`, `export_filters`), and the
    # family's normal route priority their rules convert local preference with.
    import_filters: tuple[str, ...] = ()
    export_filters: tuple[str, ...] = ()
    route_priority: int = NORMAL_ROUTE_PRIORITY

    def link(self, filters: Sequence[Filter] = ()) -> Link:
        """The session as the BGP rules read it; `filters`: the node's (`AgentConfig.filters`),
        which must hold every filter the session names."""
        policy = None
        if self.import_filters or self.export_filters:
            family = 6 if ":" in self.peer_ip else 4
            found = {(f.name, f.direction, f.family): f for f in filters}
            policy = Policy(
                tuple(found[(name, "import", family)] for name in self.import_filters),
                tuple(found[(name, "export", family)] for name in self.export_filters),
                self.route_priority,
            )
        return session_link(self, policy)


@dataclass(frozen=True)
class AgentBlock(Wire):
    """One IPAM block of the node and the pool it belongs to."""

    cidr: str
    pool: str


@dataclass(frozen=True)
class AgentPool(Wire):
    """A pool's route rule (encapsulation) and whether its blocks go to BGP."""

    name: str
    cidr: str
    ipip_mode: str
    vxlan_mode: str
    disable_bgp_export: bool
    # Whether this node's BIRD writes the pool's routes into the kernel (confd's kernel
    # filter); when not, its paths stay in the RIB and are still advertised.
    bird_programs: bool = True

    def rule(self) -> PoolRule:
        return PoolRule(self.name, self.cidr, self.ipip_mode, self.vxlan_mode)


@dataclass(frozen=True)
class NodeAddress(Wire):
    """One address of a node of the lab (this one included): its router ID and, where the
    node has a VXLAN device of that family, its VTEP address."""

    address: str
    router_id: str
    vtep: str | None


@dataclass(frozen=True)
class AgentConfig(Wire):
    """Everything one node's agent reads at start."""

    node: str
    netns: str
    ipv4: str | None
    ipv6: str | None
    router_id: str
    as_number: int
    cluster_id: str | None
    sessions: tuple[AgentSession, ...]
    blocks: tuple[AgentBlock, ...]
    pools: tuple[AgentPool, ...]
    subnet_ipv4: str | None  # this node's subnet prefixes (the CrossSubnet test)
    subnet_ipv6: str | None
    gateway4: str | None  # this node's default routers
    gateway6: str | None
    addresses: tuple[NodeAddress, ...]  # every node's addresses, this node's included
    # The rules of every BGPFilter its sessions apply, per direction and family.
    filters: tuple[Filter, ...] = ()
    # The Service prefixes the node originates (`model.services`, confd's static routes), and
    # the service CIDRs inside which no learned path reaches its kernel (confd's
    # `calico_kernel_programming` rejects them; kube-proxy's rules serve those addresses).
    service_routes: tuple[str, ...] = ()
    service_cidrs: tuple[str, ...] = ()
    # The host routes (/32, /128) of the pod addresses the node borrowed from other nodes'
    # blocks, which it announces as Calico's BIRD does (`model.phases.rib.exported_borrowed`).
    borrowed_routes: tuple[str, ...] = ()

    def links(self) -> dict[str, Link]:
        """Peer address -> the link of each session to a speaker of the lab."""
        return {s.peer_ip: s.link(self.filters) for s in self.sessions if s.peer_node is not None}

    def address(self, family: int) -> str | None:
        return self.ipv4 if family == 4 else self.ipv6

    def speaker(self) -> Speaker:
        return Speaker(
            name=self.node,
            router_id=self.router_id,
            as_number=self.as_number,
            cluster_id=self.cluster_id,
            addresses={f: a for f in (4, 6) if (a := self.address(f))},
        )

    def route_context(self) -> RouteContext:
        return RouteContext(
            node_subnet={
                f: p for f, p in ((4, self.subnet_ipv4), (6, self.subnet_ipv6)) if p is not None
            },
            gateway={f: g for f, g in ((4, self.gateway4), (6, self.gateway6)) if g is not None},
            vteps={a.address: a.vtep for a in self.addresses if a.vtep is not None},
        )

    def router_ids(self) -> dict[str, str]:
        """A node address -> that node's router ID (the ID of the peer an update came from)."""
        return {a.address: a.router_id for a in self.addresses}

    def exported_blocks(self) -> tuple[AgentBlock, ...]:
        """The blocks the node announces: those of pools that export to BGP."""
        exported = {p.name for p in self.pools if not p.disable_bgp_export}
        return tuple(b for b in self.blocks if b.pool in exported)

    def blackholes(self) -> tuple[str, ...]:
        """The blocks BIRD installs a blackhole for (its static protocol, through the kernel
        filter: pools BIRD programs; `routes.block_has_blackhole`). Felix writes the others."""
        programs = {p.name for p in self.pools if p.bird_programs}
        return tuple(
            b.cidr for b in self.blocks if b.pool in programs and block_has_blackhole(b.cidr)
        )

    def unprogrammed_pools(self) -> tuple[PoolRule, ...]:
        """The pools whose learned paths BIRD's kernel filter rejects on this node."""
        return tuple(p.rule() for p in self.pools if not p.bird_programs)

    @classmethod
    def from_json(cls, data: object, where: str = "agent configuration") -> AgentConfig:
        """The file `to_json` wrote; LabError names a field that is missing or mistyped, or a
        BGPFilter a session applies whose rules are not in `filters`."""
        config = super().from_json(data, where)
        have = {(f.name, f.direction, f.family) for f in config.filters}
        for i, s in enumerate(config.sessions):
            family = 6 if ":" in s.peer_ip else 4
            for direction, names in (("import", s.import_filters), ("export", s.export_filters)):
                for name in names:
                    if (name, direction, family) not in have:
                        raise LabError(
                            f"{where}.sessions[{i}].{direction}_filters: BGPFilter {name!r} has "
                            f"no {direction} rules for IPv{family} in {where}.filters"
                        )
        return config


def agent_config_of(plan: LabPlan, node: str, *, bgp: BgpSpec | None = None) -> AgentConfig:
    """The configuration of `node`'s agent in `plan` (KeyError: no such node).

    `bgp` is the topology's `bgp` section: the BGPFilters' rules, which the plan does not
    carry (its sessions name them). ValueError when a session of the node applies one and
    `bgp` is not given: an agent without the rules would not do what the plan says.
    """
    me = plan.node(node)
    filters: list[Filter] = []
    for s in me.sessions:
        if not s.import_filters and not s.export_filters:
            continue
        if bgp is None:
            raise ValueError(
                f"node {node}: its session to {s.peer_ip} applies BGPFilters, whose rules the "
                "plan does not carry: pass the topology's bgp section"
            )
        for direction, names in (("import", s.import_filters), ("export", s.export_filters)):
            made = compiled_filters(bgp.filters, names, direction, s.family)
            if tuple(f.name for f in made) != names:
                raise ValueError(
                    f"node {node}: its session to {s.peer_ip} applies BGPFilters "
                    f"{', '.join(names)} on {direction}, which the bgp section given does not "
                    "have as the plan was made with: pass the plan's own topology"
                )
            filters += [f for f in made if f not in filters]
    addresses = []
    for other in plan.nodes:
        vteps = {v.family: v.address for v in other.vteps}
        for family in (4, 6):
            address = other.address(family)
            if address is not None:
                addresses.append(NodeAddress(address, other.router_id, vteps.get(family)))
    return AgentConfig(
        node=me.name,
        netns=me.netns,
        ipv4=me.ipv4,
        ipv6=me.ipv6,
        router_id=me.router_id,
        as_number=me.as_number,
        cluster_id=me.cluster_id,
        sessions=tuple(
            AgentSession(
                s.peer_ip,
                s.peer_name,
                s.kind,
                s.peer_as,
                s.local_as,
                s.rr_client,
                s.keep_next_hop,
                s.allow_local_as,
                s.import_filters,
                s.export_filters,
                s.route_priority,
            )
            for s in me.sessions
        ),
        blocks=tuple(AgentBlock(b.cidr, b.pool) for b in me.blocks),
        pools=tuple(
            AgentPool(
                p.name, p.cidr, p.ipip_mode, p.vxlan_mode, p.disable_bgp_export, p.bird_programs
            )
            for p in plan.pools
        ),
        subnet_ipv4=me.ipv4_prefix,
        subnet_ipv6=me.ipv6_prefix,
        gateway4=me.gateway4,
        gateway6=me.gateway6,
        addresses=tuple(addresses),
        filters=tuple(sorted(filters, key=lambda f: (f.name, f.direction, f.family))),
        service_routes=plan.services.advertised.get(node, ()) if plan.services else (),
        service_cidrs=plan.services.advertised_cidrs() if plan.services else (),
        borrowed_routes=_borrowed_routes(plan, me),
    )


def _borrowed_routes(plan: LabPlan, me: NodePlan) -> tuple[str, ...]:
    # Imported here: the planner's modules (topology input models among them) stay out of the
    # agent, which imports this module but never makes a configuration.
    from meshemu.model.ipam import node_borrowed
    from meshemu.model.phases.rib import exported_borrowed

    return tuple(b.prefix for b in exported_borrowed(node_borrowed(plan, me), plan.pools))
