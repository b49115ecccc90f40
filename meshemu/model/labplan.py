"""The lab plan's types and its one wire form: what `build_plan` decides, frozen.

Owns the dataclasses of a plan (subnets, routers, pools, nodes with their addresses, blocks,
pods, sessions, expected RIB and FIB), `LabPlan.to_json` (the `plan --json` contract: README
"What plan --json promises"; fields may be added, never renamed) and `LabPlan.from_json`, which
rebuilds the identical plan from it, so the running lab's plan travels as JSON and comes back
typed. Also `Sticky`, the record of what a running lab has handed out.
Passwords: `to_json()` says only whether a session has one; `to_json(secrets=True)` carries
the text too, for the root-only state folder, and only that form reads back.
Deciding anything is not this module's job (see `model.plan` and `model.phases`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from meshemu.errors import LabError
from meshemu.model.routes import FibRoute, PoolRule
from meshemu.model.sessions import Session
from meshemu.model.wire import Fields


@dataclass(frozen=True)
class SubnetPlan:
    name: str
    index: int
    ipv4: str | None
    ipv6: str | None
    bridge: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "index": self.index,
            "ipv4": self.ipv4,
            "ipv6": self.ipv6,
            "bridge": self.bridge,
        }

    @classmethod
    def from_json(cls, data: object, where: str) -> SubnetPlan:
        f = Fields(data, where)
        return cls(
            f.text("name"),
            f.number("index"),
            f.opt_text("ipv4"),
            f.opt_text("ipv6"),
            f.text("bridge"),
        )


@dataclass(frozen=True)
class RouterInterface:
    subnet: str
    ifname: str
    fabric_ifname: str
    ipv4: str | None
    ipv6: str | None
    mac: str

    def address(self, family: int) -> str | None:
        return self.ipv4 if family == 4 else self.ipv6

    def to_json(self) -> dict[str, Any]:
        return {
            "subnet": self.subnet,
            "ifname": self.ifname,
            "fabric_ifname": self.fabric_ifname,
            "ipv4": self.ipv4,
            "ipv6": self.ipv6,
            "mac": self.mac,
        }

    @classmethod
    def from_json(cls, data: object, where: str) -> RouterInterface:
        f = Fields(data, where)
        return cls(
            f.text("subnet"),
            f.text("ifname"),
            f.text("fabric_ifname"),
            f.opt_text("ipv4"),
            f.opt_text("ipv6"),
            f.text("mac"),
        )


@dataclass(frozen=True)
class StaticRoute:
    prefix: str
    via: str

    def to_json(self) -> dict[str, Any]:
        return {"prefix": self.prefix, "via": self.via}

    @classmethod
    def from_json(cls, data: object, where: str) -> StaticRoute:
        f = Fields(data, where)
        return cls(f.text("prefix"), f.text("via"))


@dataclass(frozen=True)
class RouterPlan:
    name: str
    netns: str
    interfaces: tuple[RouterInterface, ...]
    routes: tuple[StaticRoute, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "netns": self.netns,
            "interfaces": [i.to_json() for i in self.interfaces],
            "routes": [r.to_json() for r in self.routes],
        }

    @classmethod
    def from_json(cls, data: object, where: str) -> RouterPlan:
        f = Fields(data, where)
        return cls(
            f.text("name"),
            f.text("netns"),
            tuple(RouterInterface.from_json(i.data, i.where) for i in f.objects("interfaces")),
            tuple(StaticRoute.from_json(r.data, r.where) for r in f.objects("routes")),
        )


@dataclass(frozen=True)
class PodPlan:
    name: str
    node: str
    netns: str
    host_ifname: str
    ipv4: str | None
    ipv6: str | None
    pool4: str | None
    pool6: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "node": self.node,
            "netns": self.netns,
            "host_ifname": self.host_ifname,
            "ipv4": self.ipv4,
            "ipv6": self.ipv6,
            "pool4": self.pool4,
            "pool6": self.pool6,
        }

    @classmethod
    def from_json(cls, data: object, where: str) -> PodPlan:
        f = Fields(data, where)
        return cls(
            f.text("name"),
            f.text("node"),
            f.text("netns"),
            f.text("host_ifname"),
            f.opt_text("ipv4"),
            f.opt_text("ipv6"),
            f.opt_text("pool4"),
            f.opt_text("pool6"),
        )


@dataclass(frozen=True)
class Block:
    cidr: str
    pool: str


@dataclass(frozen=True, slots=True)
class RibEntry:
    """A best path in a node's Loc-RIB, as the plan expects it."""

    prefix: str
    next_hop: str
    origin_node: str
    learned_from: str | None
    as_path: tuple[int, ...]
    originator_id: str | None
    cluster_list: tuple[str, ...]
    paths: int  # how many candidate paths the node holds for the prefix

    def to_json(self) -> dict[str, Any]:
        return {
            "prefix": self.prefix,
            "next_hop": self.next_hop,
            "origin_node": self.origin_node,
            "learned_from": self.learned_from,
            "as_path": list(self.as_path),
            "originator_id": self.originator_id,
            "cluster_list": list(self.cluster_list),
            "paths": self.paths,
        }

    @classmethod
    def from_json(cls, data: object, where: str) -> RibEntry:
        f = Fields(data, where)
        return cls(
            f.text("prefix"),
            f.text("next_hop"),
            f.text("origin_node"),
            f.opt_text("learned_from"),
            f.numbers("as_path"),
            f.opt_text("originator_id"),
            f.texts("cluster_list"),
            f.number("paths"),
        )


@dataclass(frozen=True)
class Vtep:
    family: int
    address: str
    mac: str

    def to_json(self) -> dict[str, Any]:
        return {"family": self.family, "address": self.address, "mac": self.mac}

    @classmethod
    def from_json(cls, data: object, where: str) -> Vtep:
        f = Fields(data, where)
        family = f.number("family")
        if family not in (4, 6):
            f.fail("family", f"expected 4 or 6, found {family}")
        return cls(family, f.text("address"), f.text("mac"))


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

    def address(self, family: int) -> str | None:
        return self.ipv4 if family == 4 else self.ipv6

    def subnet_prefix(self, family: int) -> str | None:
        return self.ipv4_prefix if family == 4 else self.ipv6_prefix

    def gateway(self, family: int) -> str | None:
        return self.gateway4 if family == 4 else self.gateway6

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
        }

    @classmethod
    def from_json(cls, data: object, where: str) -> NodePlan:
        f = Fields(data, where)
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
            vteps=tuple(Vtep.from_json(v.data, v.where) for v in f.objects("vteps")),
            sessions=tuple(Session.from_json(s.data, s.where) for s in f.objects("sessions")),
            expected_up=f.texts("expected_established"),
            rib=tuple(RibEntry.from_json(r.data, r.where) for r in f.objects("rib")),
            fib=tuple(FibRoute.from_json(r.data, r.where) for r in f.objects("fib")),
        )


@dataclass(frozen=True)
class PoolPlan:
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

    def route_rule(self) -> PoolRule:
        return PoolRule(self.name, self.cidr, self.ipip_mode, self.vxlan_mode)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "cidr": self.cidr,
            "block_size": self.block_size,
            "ipip_mode": self.ipip_mode,
            "vxlan_mode": self.vxlan_mode,
            "nat_outgoing": self.nat_outgoing,
            "node_selector": self.node_selector,
            "disable_bgp_export": self.disable_bgp_export,
            "disabled": self.disabled,
            "rule": self.rule,
        }

    @classmethod
    def from_json(cls, data: object, where: str) -> PoolPlan:
        f = Fields(data, where)
        return cls(
            f.text("name"),
            f.text("cidr"),
            f.number("block_size"),
            f.text("ipip_mode"),
            f.text("vxlan_mode"),
            f.flag("nat_outgoing"),
            f.text("node_selector"),
            f.flag("disable_bgp_export"),
            f.flag("disabled"),
            f.text("rule"),
        )


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
            "routers": [r.to_json() for r in self.routers],
            "pools": [p.to_json() for p in self.pools],
            "nodes": [n.to_json(secrets) for n in self.nodes],
            "unsupported": [{"location": loc, "reason": why} for loc, why in self.unsupported],
            "notes": list(self.notes),
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
            subnets=tuple(SubnetPlan.from_json(s.data, s.where) for s in f.objects("subnets")),
            routers=tuple(RouterPlan.from_json(r.data, r.where) for r in f.objects("routers")),
            pools=tuple(PoolPlan.from_json(p.data, p.where) for p in f.objects("pools")),
            nodes=tuple(NodePlan.from_json(n.data, n.where) for n in f.objects("nodes")),
            unsupported=tuple(
                (u.text("location"), u.text("reason")) for u in f.objects("unsupported")
            ),
            notes=f.texts("notes"),
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

    @classmethod
    def of(cls, plan: LabPlan) -> Sticky:
        return cls(
            addresses={
                n.name: (n.subnet, {f: a for f in (4, 6) if (a := n.address(f)) is not None})
                for n in plan.nodes
            },
            affinity={n.name: [(b.pool, b.cidr) for b in n.blocks] for n in plan.nodes},
            pods={n.name: [_pod_allocation(p) for p in n.pods] for n in plan.nodes},
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "addresses": {
                n: {"subnet": subnet, "ipv4": a.get(4), "ipv6": a.get(6)}
                for n, (subnet, a) in self.addresses.items()
            },
            "affinity": {n: [list(x) for x in blocks] for n, blocks in self.affinity.items()},
            "pods": {
                n: [{f"ipv{f}": list(v) for f, v in pod.items()} for pod in pods]
                for n, pods in self.pods.items()
            },
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
        return cls(addresses=addresses, affinity=affinity, pods=pods)


def _text_pair(value: object, where: str) -> tuple[str, str]:
    if not isinstance(value, list) or len(value) != 2 or not all(isinstance(v, str) for v in value):
        raise LabError(f"{where}: expected a pair of texts like [pool, address]")
    return (value[0], value[1])


def _pod_allocation(pod: PodPlan) -> dict[int, tuple[str, str]]:
    """A running pod's pool and address per family, which a live change keeps."""
    kept: dict[int, tuple[str, str]] = {}
    if pod.pool4 is not None and pod.ipv4 is not None:
        kept[4] = (pod.pool4, pod.ipv4)
    if pod.pool6 is not None and pod.ipv6 is not None:
        kept[6] = (pod.pool6, pod.ipv6)
    return kept
