"""The lab plan's types and its one wire form: what `build_plan` decides, frozen.

Owns the dataclasses of a plan (subnets, routers, pools, nodes with their addresses, blocks,
pods, sessions, expected RIB and FIB), `LabPlan.to_json` (the `plan --json` contract: README
"What plan --json promises"; fields may be added, never renamed) and `LabPlan.from_json`, which
rebuilds the identical plan from it, so the running lab's plan travels as JSON and comes back
typed. Also `Sticky`, the record of what a running lab has handed out.
A part whose JSON is simply its fields is a `wire.Wire` (its form comes from its type hints);
LabPlan and NodePlan write theirs by hand, because their JSON names and shapes are the contract
(`node_to_node_mesh`, `mac`, `subnet_ipv4`, `blocks` with `block_pools`, `expected_established`,
labels as an object, `unsupported` as objects, sessions with or without secrets).
Passwords: `to_json()` says only whether a session has one; `to_json(secrets=True)` carries
the text too, for the root-only state folder, and only that form reads back.
Deciding anything is not this module's job (see `model.plan` and `model.phases`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from meshemu.errors import LabError
from meshemu.model.policy import PolicyPlan
from meshemu.model.routes import FibRoute, NextHop, PoolRule, pool_kind
from meshemu.model.services import ServicesPlan
from meshemu.model.sessions import Session
from meshemu.model.wire import Fields, OneOf, Wire

SPEAKERS = ("exabgp", "bird", "none")  # a node's BGP daemon (topology `speaker`); none: BGP off


@dataclass(frozen=True)
class SubnetPlan(Wire):
    name: str
    index: int
    ipv4: str | None
    ipv6: str | None
    bridge: str


@dataclass(frozen=True)
class RouterInterface(Wire):
    subnet: str
    ifname: str
    fabric_ifname: str
    ipv4: str | None
    ipv6: str | None
    mac: str

    def address(self, family: int) -> str | None:
        return self.ipv4 if family == 4 else self.ipv6


@dataclass(frozen=True)
class StaticRoute(Wire):
    prefix: str
    via: str


@dataclass(frozen=True)
class RouterSession(Wire):
    """One BGP session of a router's BIRD, towards a node or another router.

    `password` is the TCP MD5 secret itself: the plan's public form (`RouterPlan.to_json`)
    replaces it with whether there is one, like a node session's.
    """

    family: Annotated[int, OneOf(4, 6)]
    local_ip: str
    local_as: int
    peer_ip: str
    peer_as: int
    peer_kind: Annotated[str, OneOf("node", "router")]
    peer_name: str
    interface: str | None  # the router's interface on the peer's subnet; None: multihop
    rr_client: bool  # the router reflects to this iBGP peer (BIRD `rr client`)
    next_hop_self_ebgp: bool  # iBGP: routes learned over eBGP go out with this router as hop
    password: str | None
    ttl_security: int | None  # hops (BIRD `ttl security on; multihop N`); None: off
    graceful_restart_time: int | None  # BIRD `graceful restart on; ...time N`; None: aware
    keepalive_time: int | None  # seconds; None: BIRD's default (hold time / 3)
    allow_local_as: int
    reason: str

    @property
    def ebgp(self) -> bool:
        return self.peer_as != self.local_as

    @property
    def protocol_name(self) -> str:
        """The BIRD protocol of this session: `node_10_0_0_11`, `router_fd00__1`."""
        return f"{self.peer_kind}_" + self.peer_ip.replace(".", "_").replace(":", "_")


@dataclass(frozen=True)
class RouterHop(Wire):
    """One next hop of a router's ECMP route: a path BIRD's `merge paths` merged."""

    next_hop: str  # the path's BGP next hop
    via: str  # its kernel gateway
    dev: str
    learned_from: str


@dataclass(frozen=True)
class RouterRoute(Wire):
    """A best path the router's BIRD selects and installs into its kernel FIB."""

    prefix: str
    next_hop: str  # the BGP next hop
    via: str  # the kernel route's gateway (the next hop, or its recursive resolution)
    dev: str  # the router interface towards `via`
    learned_from: str  # the peer address it came from
    as_path: tuple[int, ...]
    paths: int  # how many candidate paths the router holds for the prefix
    reason: str
    # ECMP (`merge paths on`): every next hop of the kernel route, the best path's included,
    # by gateway; empty when the route has one next hop (`via` on `dev`).
    multipath: tuple[RouterHop, ...] = ()


@dataclass(frozen=True)
class RouterBgp(Wire):
    """A router's BGP speaker (BIRD 2): what it is configured with and what it should learn.

    `config_file`: the user's own BIRD configuration (an absolute path), started instead of the
    rendered one; then `routes` are still the plan's expectation, reported, not demanded.
    """

    as_number: int
    router_id: str
    cluster_id: str | None  # set when the router reflects routes to its iBGP peers
    sessions: tuple[RouterSession, ...]
    expected_up: tuple[str, ...]  # peer addresses of the sessions that come up, sorted
    routes: tuple[RouterRoute, ...]
    config_file: str | None

    def fib(self) -> tuple[FibRoute, ...]:
        """The kernel routes BIRD should have installed, as the FIB comparison takes them
        (written by BIRD's kernel protocol: protocol 12, source bgp)."""
        return tuple(
            FibRoute(r.prefix, "unicast", r.via, r.dev, False, r.reason, "bgp")
            if not r.multipath
            else FibRoute(
                r.prefix,
                "unicast",
                reason=r.reason,
                source="bgp",
                nexthops=tuple(NextHop(h.via, h.dev) for h in r.multipath),
            )
            for r in self.routes
        )


@dataclass(frozen=True)
class RouterPlan(Wire):
    name: str
    netns: str
    interfaces: tuple[RouterInterface, ...]
    routes: tuple[StaticRoute, ...]
    bgp: RouterBgp | None = None

    def interface_on(self, subnet: str) -> RouterInterface | None:
        return next((i for i in self.interfaces if i.subnet == subnet), None)

    def to_json(self, secrets: bool = False) -> dict[str, Any]:
        """Wire form; without `secrets` each BGP session's password is only whether it has one."""
        out = super().to_json()
        if not secrets and out.get("bgp") is not None:
            for session in out["bgp"]["sessions"]:
                session["password"] = session["password"] is not None
        return out


@dataclass(frozen=True)
class PodPort(Wire):
    """A container port the pod listens on (the lab's responder answers on it)."""

    name: str | None
    port: int
    protocol: Annotated[str, OneOf("TCP", "UDP")]


@dataclass(frozen=True)
class PodPlan(Wire):
    name: str
    node: str
    netns: str
    host_ifname: str
    ipv4: str | None
    ipv6: str | None
    pool4: str | None
    pool6: str | None
    # The IPAM block each address lies in and that block's affine node: another node's means
    # the address is borrowed (model.ipam); None with a block: affine to no node.
    block4: str | None = None
    block6: str | None = None
    block4_node: str | None = None
    block6_node: str | None = None
    # The pod's Kubernetes namespace, labels and ports (Services select pods by them). Plans
    # written before pods had them read back as `default`, no labels, no ports.
    namespace: str = "default"
    labels: dict[str, str] = field(default_factory=dict, hash=False)
    ports: tuple[PodPort, ...] = ()

    def address(self, family: int) -> str | None:
        return self.ipv4 if family == 4 else self.ipv6

    @classmethod
    def from_json(cls, data: object, where: str) -> PodPlan:
        if isinstance(data, dict) and "namespace" not in data:
            data = {**data, "namespace": "default", "labels": {}, "ports": []}
        if isinstance(data, dict) and "block4" not in data:  # (plans before blocks per pod)
            data = {
                **data,
                "block4": None,
                "block6": None,
                "block4_node": None,
                "block6_node": None,
            }
        return super().from_json(data, where)


@dataclass(frozen=True)
class Block:
    cidr: str
    pool: str


@dataclass(frozen=True, slots=True)
class RibEntry(Wire):
    """A best path in a node's Loc-RIB, as the plan expects it."""

    prefix: str
    next_hop: str
    origin_node: str
    learned_from: str | None
    as_path: tuple[int, ...]
    originator_id: str | None
    cluster_list: tuple[str, ...]
    paths: int  # how many candidate paths the node holds for the prefix


@dataclass(frozen=True)
class Vtep(Wire):
    family: Annotated[int, OneOf(4, 6)]
    address: str
    mac: str


@dataclass(frozen=True)
class NodePlan:
    name: str
    index: int
    netns: str
    subnet: str
    ipv4: str | None
    ipv6: str | None
    ipv4_prefix: str | None  # the node's subnet prefix (Calico: prefix of bgp.ipv4Address)
    ipv6_prefix: str | None
    gateway4: str | None
    gateway6: str | None
    uplink: str
    uplink_mac: str
    fabric_ifname: str
    as_number: int
    router_id: str
    cluster_id: str | None
    listen_port: int
    labels: tuple[tuple[str, str], ...]
    blocks: tuple[Block, ...]
    pods: tuple[PodPlan, ...]
    ipip_tunnel_address: str | None
    vteps: tuple[Vtep, ...]
    sessions: tuple[Session, ...]
    # Peer addresses of the sessions that can come up in the lab (both ends configured, an
    # active side that connects to a listening port, matching AS numbers and passwords).
    expected_up: tuple[str, ...]
    rib: tuple[RibEntry, ...]
    fib: tuple[FibRoute, ...]
    # The node's BGP daemon: "exabgp" (speaker + agent) or "bird" (BIRD 1.6 with confd's
    # configuration; its kernel protocol programs the FIB), or "none" when the lab runs no BGP
    # (`bgp.enabled: false`). Plans written before it existed were all ExaBGP.
    speaker: str = "exabgp"
    # The metric of the node's workload (pod) routes: Felix's normal route priority, which
    # Calico requires to equal BGPConfiguration's ipv4/6NormalRoutePriority (api/.../v3/
    # bgpconfig.go); BIRD's calico_aggr exports a pod route inside a block only below it.
    route_priority4: int = 1024
    route_priority6: int = 1024
    # The pool kinds (vxlan, ipip, none) whose cluster routes and blackholes Felix writes on
    # this node (`model.cluster_routes`; its FelixConfiguration may be the node's own).
    felix_programs: tuple[str, ...] = ()

    def bird_fib(self, pools: Sequence[PoolPlan]) -> list[FibRoute]:
        """What the node's BIRD (or its agent) writes: its `bgp` routes and the blackholes of
        its blocks in the pools BIRD programs (the same blackhole Felix may write too)."""
        programs = {p.name for p in pools if p.bird_programs}
        bird_blocks = {b.cidr for b in self.blocks if b.pool in programs}
        return [
            r
            for r in self.fib
            if r.source == "bgp" or (r.type == "blackhole" and r.prefix in bird_blocks)
        ]

    def felix_fib(self, pools: Sequence[PoolPlan]) -> list[FibRoute]:
        """What the node's Felix writes: its `felix` routes and the blackholes of its blocks
        in the pools it programs (the same blackhole BIRD may write too)."""
        kinds = {p.name: pool_kind(p.ipip_mode, p.vxlan_mode) for p in pools}
        felix_blocks = {b.cidr for b in self.blocks if kinds.get(b.pool) in self.felix_programs}
        return [
            r
            for r in self.fib
            if r.source == "felix" or (r.type == "blackhole" and r.prefix in felix_blocks)
        ]

    def address(self, family: int) -> str | None:
        return self.ipv4 if family == 4 else self.ipv6

    def route_priority(self, family: int) -> int:
        return self.route_priority4 if family == 4 else self.route_priority6

    def subnet_prefix(self, family: int) -> str | None:
        return self.ipv4_prefix if family == 4 else self.ipv6_prefix

    def gateway(self, family: int) -> str | None:
        return self.gateway4 if family == 4 else self.gateway6

    def reachable_by_routes(self) -> tuple[StaticRoute, ...]:
        """Calico's `reachableBy`: confd renders a static route to the peer via that gateway
        (`route <peerIP>/32 via <reachableBy>`, bgp_processor.go); one per peer, for a gateway
        on this node's subnet (one elsewhere BIRD could not use either)."""
        out: dict[str, StaticRoute] = {}
        for session in self.sessions:
            via, prefix = session.reachable_by, self.subnet_prefix(session.family)
            if via is None or prefix is None:
                continue
            if ipaddress.ip_address(via) not in ipaddress.ip_network(prefix):
                continue
            host = f"{session.peer_ip}/{32 if session.family == 4 else 128}"
            out.setdefault(host, StaticRoute(host, via))
        return tuple(out.values())

    def to_json(self, secrets: bool = False) -> dict[str, Any]:
        return {
            "name": self.name,
            "index": self.index,
            "netns": self.netns,
            "ipv4": self.ipv4,
            "ipv6": self.ipv6,
            "subnet": self.subnet,
            "mac": self.uplink_mac,
            "uplink": self.uplink,
            "fabric_ifname": self.fabric_ifname,
            "subnet_ipv4": self.ipv4_prefix,
            "subnet_ipv6": self.ipv6_prefix,
            "gateway4": self.gateway4,
            "gateway6": self.gateway6,
            "as_number": self.as_number,
            "router_id": self.router_id,
            "cluster_id": self.cluster_id,
            "listen_port": self.listen_port,
            "labels": dict(self.labels),
            "blocks": [b.cidr for b in self.blocks],
            "block_pools": {b.cidr: b.pool for b in self.blocks},
            "ipip_tunnel_address": self.ipip_tunnel_address,
            "vteps": [v.to_json() for v in self.vteps],
            "pods": [p.to_json() for p in self.pods],
            "sessions": [s.to_json(secrets) for s in self.sessions],
            "expected_established": list(self.expected_up),
            "rib": [r.to_json() for r in self.rib],
            "fib": [r.to_json() for r in self.fib],
            "speaker": self.speaker,
            "route_priority_ipv4": self.route_priority4,
            "route_priority_ipv6": self.route_priority6,
            "felix_programs": list(self.felix_programs),
        }

    @classmethod
    def from_json(cls, data: object, where: str) -> NodePlan:
        f = Fields(data, where)
        speaker = f.text("speaker", default="exabgp")
        if speaker not in SPEAKERS:
            f.fail("speaker", f"{speaker!r} is not one of {', '.join(SPEAKERS)}")
        pools = f.text_map("block_pools")
        blocks = []
        for i, cidr in enumerate(f.texts("blocks")):
            if cidr not in pools:
                f.fail(f"blocks[{i}]", f"block {cidr} has no entry in block_pools")
            blocks.append(Block(cidr, pools[cidr]))
        return cls(
            name=f.text("name"),
            index=f.number("index"),
            netns=f.text("netns"),
            subnet=f.text("subnet"),
            ipv4=f.opt_text("ipv4"),
            ipv6=f.opt_text("ipv6"),
            ipv4_prefix=f.opt_text("subnet_ipv4"),
            ipv6_prefix=f.opt_text("subnet_ipv6"),
            gateway4=f.opt_text("gateway4"),
            gateway6=f.opt_text("gateway6"),
            uplink=f.text("uplink"),
            uplink_mac=f.text("mac"),
            fabric_ifname=f.text("fabric_ifname"),
            as_number=f.number("as_number"),
            router_id=f.text("router_id"),
            cluster_id=f.opt_text("cluster_id"),
            listen_port=f.number("listen_port"),
            labels=tuple(sorted(f.text_map("labels").items())),
            blocks=tuple(blocks),
            pods=tuple(PodPlan.from_json(p.data, p.where) for p in f.objects("pods")),
            ipip_tunnel_address=f.opt_text("ipip_tunnel_address"),
            vteps=f.each("vteps", Vtep),
            sessions=tuple(Session.from_json(s.data, s.where) for s in f.objects("sessions")),
            expected_up=f.texts("expected_established"),
            rib=f.each("rib", RibEntry),
            fib=tuple(FibRoute.from_json(r.data, r.where) for r in f.objects("fib")),
            speaker=speaker,
            route_priority4=f.number("route_priority_ipv4", default=1024),
            route_priority6=f.number("route_priority_ipv6", default=1024),
            felix_programs=f.texts("felix_programs") if "felix_programs" in f.data else (),
        )


@dataclass(frozen=True)
class PoolPlan(Wire):
    name: str
    cidr: str
    block_size: int
    ipip_mode: str
    vxlan_mode: str
    nat_outgoing: bool
    node_selector: str
    disable_bgp_export: bool
    disabled: bool
    rule: str
    # Whether BIRD writes this pool's routes into the kernel (BGPConfiguration
    # programClusterRoutes, global; `model.cluster_routes`); Felix's share is per node.
    bird_programs: bool = True

    def route_rule(self) -> PoolRule:
        return PoolRule(self.name, self.cidr, self.ipip_mode, self.vxlan_mode)


@dataclass(frozen=True)
class OutsidePlan(Wire):
    """The lab's outside host (a stand-in for the Internet): its namespace on a subnet's
    bridge, its addresses, its default router, and the UDP port of its echo."""

    netns: str
    subnet: str
    ifname: str
    fabric_ifname: str
    mac: str
    ipv4: str | None
    ipv6: str | None
    prefix4: str | None
    prefix6: str | None
    gateway4: str | None
    gateway6: str | None
    port: int

    def address(self, family: int) -> str | None:
        return self.ipv4 if family == 4 else self.ipv6


@dataclass(frozen=True)
class LabPlan:
    name: str
    description: str
    fabric_netns: str
    as_number: int
    mesh: bool
    subnets: tuple[SubnetPlan, ...]
    routers: tuple[RouterPlan, ...]
    nodes: tuple[NodePlan, ...]
    pools: tuple[PoolPlan, ...]
    hold_time: int
    unsupported: tuple[tuple[str, str], ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)
    outside: OutsidePlan | None = None
    # The lab's network policies (`model.policy`); None: none, and no policy rules loaded.
    policy: PolicyPlan | None = None
    # The lab's Services (`model.services`); None: none and nothing advertised for them.
    services: ServicesPlan | None = None

    def node(self, name: str) -> NodePlan:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def to_json(self, secrets: bool = False) -> dict[str, Any]:
        """The machine form; field names are a contract (see the README).

        `secrets=True` adds each session's password text (`password_text`), which
        `from_json` needs to rebuild the plan; only the root-only state folder holds it.
        """
        return {
            "name": self.name,
            "description": self.description,
            "fabric_netns": self.fabric_netns,
            "as_number": self.as_number,
            "node_to_node_mesh": self.mesh,
            "hold_time": self.hold_time,
            "subnets": [s.to_json() for s in self.subnets],
            "routers": [r.to_json(secrets) for r in self.routers],
            "pools": [p.to_json() for p in self.pools],
            "nodes": [n.to_json(secrets) for n in self.nodes],
            "unsupported": [{"location": loc, "reason": why} for loc, why in self.unsupported],
            "notes": list(self.notes),
            "outside": None if self.outside is None else self.outside.to_json(),
            "policy": None if self.policy is None else self.policy.to_json(),
            "services": None if self.services is None else self.services.to_json(),
        }

    @classmethod
    def from_json(cls, data: object, where: str = "plan") -> LabPlan:
        """The plan `to_json(secrets=True)` wrote, identical; LabError names a bad field."""
        f = Fields(data, where)
        return cls(
            name=f.text("name"),
            description=f.text("description"),
            fabric_netns=f.text("fabric_netns"),
            as_number=f.number("as_number"),
            mesh=f.flag("node_to_node_mesh"),
            hold_time=f.number("hold_time"),
            subnets=f.each("subnets", SubnetPlan),
            routers=f.each("routers", RouterPlan),
            pools=f.each("pools", PoolPlan),
            nodes=tuple(NodePlan.from_json(n.data, n.where) for n in f.objects("nodes")),
            unsupported=tuple(
                (u.text("location"), u.text("reason")) for u in f.objects("unsupported")
            ),
            notes=f.texts("notes"),
            # (Plans written before the outside host existed have no key: no outside host.)
            outside=(
                OutsidePlan.from_json(f.data["outside"], f"{where}.outside")
                if f.has("outside") and f.data["outside"] is not None
                else None
            ),
            policy=(
                PolicyPlan.from_json(f.data["policy"], f"{where}.policy")
                if f.has("policy") and f.data["policy"] is not None
                else None
            ),
            services=(
                ServicesPlan.from_json(f.data["services"], f"{where}.services")
                if f.has("services") and f.data["services"] is not None
                else None
            ),
        )


@dataclass(frozen=True)
class Sticky:
    """What a running lab has already handed out, kept by every later plan of it.

    Like Calico's block affinities and pod IPs: a live change moves only what it must. Saved
    in the lab's state folder (`to_json`), so the running lab's plan can be rebuilt exactly.
    """

    addresses: dict[str, tuple[str, dict[int, str]]]  # node -> (subnet, family -> address)
    affinity: dict[str, list[tuple[str, str]]]  # node -> [(pool, block)]
    pods: dict[str, list[dict[int, tuple[str, str]]]]  # node -> per pod: family -> (pool, ip)
    # node -> "ipip4" / "vxlan4" / "vxlan6" -> (pool, address): tunnel addresses stay too.
    tunnels: dict[str, dict[str, tuple[str, str]]] = field(default_factory=dict)
    # node -> the names of `pods`, in the same order (a pod keeps its address by name; records
    # written before pods had names: pod1, pod2, ...).
    pod_names: dict[str, list[str]] = field(default_factory=dict)

    def pods_by_name(self, node: str) -> dict[str, dict[int, tuple[str, str]]]:
        pods = self.pods.get(node, [])
        names = self.pod_names.get(node) or [f"pod{i + 1}" for i in range(len(pods))]
        return dict(zip(names, pods, strict=False))

    @classmethod
    def of(cls, plan: LabPlan) -> Sticky:
        return cls(
            addresses={
                n.name: (n.subnet, {f: a for f in (4, 6) if (a := n.address(f)) is not None})
                for n in plan.nodes
            },
            affinity={n.name: [(b.pool, b.cidr) for b in n.blocks] for n in plan.nodes},
            pods={n.name: [_pod_allocation(p) for p in n.pods] for n in plan.nodes},
            tunnels={n.name: _tunnel_allocations(plan, n) for n in plan.nodes},
            pod_names={n.name: [p.name for p in n.pods] for n in plan.nodes},
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "addresses": {
                n: {"subnet": subnet, "ipv4": a.get(4), "ipv6": a.get(6)}
                for n, (subnet, a) in self.addresses.items()
            },
            "affinity": {n: [list(x) for x in blocks] for n, blocks in self.affinity.items()},
            "tunnels": {n: {k: list(v) for k, v in t.items()} for n, t in self.tunnels.items()},
            "pods": {
                n: [{f"ipv{f}": list(v) for f, v in pod.items()} for pod in pods]
                for n, pods in self.pods.items()
            },
            "pod_names": self.pod_names,
        }

    @classmethod
    def from_json(cls, data: object, where: str = "allocations") -> Sticky:
        """`to_json`'s form back; LabError names a field that is missing or of the wrong type."""
        f = Fields(data, where)
        addresses: dict[str, tuple[str, dict[int, str]]] = {}
        addresses_of = f.obj("addresses")
        for node in addresses_of.data:
            entry = addresses_of.obj(node)
            addresses[node] = (
                entry.text("subnet"),
                {fam: a for fam in (4, 6) if (a := entry.opt_text(f"ipv{fam}"))},
            )
        affinity: dict[str, list[tuple[str, str]]] = {}
        blocks_of = f.obj("affinity")
        for node in blocks_of.data:
            affinity[node] = [
                _text_pair(pair, f"{blocks_of.where}.{node}[{i}]")
                for i, pair in enumerate(blocks_of.items(node))
            ]
        pods: dict[str, list[dict[int, tuple[str, str]]]] = {}
        pods_of = f.obj("pods")
        for node in pods_of.data:
            pods[node] = [
                {
                    fam: _text_pair(pod.data[f"ipv{fam}"], f"{pod.where}.ipv{fam}")
                    for fam in (4, 6)
                    if pod.has(f"ipv{fam}")
                }
                for pod in pods_of.objects(node)
            ]
        pod_names: dict[str, list[str]] = {}
        if f.has("pod_names"):
            names_of = f.obj("pod_names")
            pod_names = {node: list(names_of.texts(node)) for node in names_of.data}
        tunnels: dict[str, dict[str, tuple[str, str]]] = {}
        if f.has("tunnels"):  # (records written before tunnels were kept have none)
            tunnels_of = f.obj("tunnels")
            for node in tunnels_of.data:
                held = tunnels_of.obj(node)
                tunnels[node] = {
                    k: _text_pair(v, f"{held.where}.{k}") for k, v in held.data.items()
                }
        return cls(
            addresses=addresses,
            affinity=affinity,
            pods=pods,
            tunnels=tunnels,
            pod_names=pod_names,
        )


def _text_pair(value: object, where: str) -> tuple[str, str]:
    if not isinstance(value, list) or len(value) != 2 or not all(isinstance(v, str) for v in value):
        raise LabError(f"{where}: expected a pair of texts like [pool, address]")
    return (value[0], value[1])


def _tunnel_allocations(plan: LabPlan, node: NodePlan) -> dict[str, tuple[str, str]]:
    """A running node's tunnel addresses with their pools, which a live change keeps."""
    held = {
        "ipip4": node.ipip_tunnel_address,
        **{f"vxlan{v.family}": v.address for v in node.vteps},
    }
    out = {}
    for key, text in held.items():
        if text is not None:
            address = ipaddress.ip_address(text)
            for pool in plan.pools:
                if address in ipaddress.ip_network(pool.cidr):
                    out[key] = (pool.name, text)
    return out


def _pod_allocation(pod: PodPlan) -> dict[int, tuple[str, str]]:
    """A running pod's pool and address per family, which a live change keeps."""
    kept: dict[int, tuple[str, str]] = {}
    if pod.pool4 is not None and pod.ipv4 is not None:
        kept[4] = (pod.pool4, pod.ipv4)
    if pod.pool6 is not None and pod.ipv6 is not None:
        kept[6] = (pod.pool6, pod.ipv6)
    return kept
