"""Which kernel route a node installs for a prefix: Calico's per-pool encapsulation rule.

Owns the decision, shared by the planner (expected FIB) and the agent (programmed FIB):
- IPIP Always: `<block> via <node IP> dev tunl0 onlink`;
- IPIP CrossSubnet: the tunnel only when the next hop is outside this node's subnet (the prefix
  of its address), else `<block> via <node IP> dev <uplink>`;
- VXLAN Always / CrossSubnet (same subnet test): `<block> via <remote VTEP> dev vxlan.calico
  onlink` (`vxlan-v6.calico` for IPv6, as Felix names it);
- Never: `via <node IP> dev <uplink>` inside the subnet; across subnets the next hop is only
  reachable through the node's default router, which knows no pod routes.
The node's own blocks are blackholes (except one-address blocks, see `block_has_blackhole`); its
pods have host routes on their `cali` interfaces.
Also the one JSON form of a route (`FibRoute.to_json` / `from_json`) and the one sort order of
prefixes (`prefix_sort_key`) every table of routes uses.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from meshemu.model.names import IPIP_DEVICE, UPLINK, VXLAN_DEVICE
from meshemu.model.wire import Fields

ROUTE_TYPES = ("unicast", "blackhole")


@functools.lru_cache(maxsize=1 << 16)
def prefix_sort_key(prefix: str) -> tuple[int, int, int, str]:
    """The one order of prefixes: IPv4 before IPv6, then by address, then shorter first.

    Text that is no prefix sorts last (by its text) rather than failing: this orders tables
    of observed routes too. Cached, because the planner sorts every node's routes.
    """
    try:
        network = ipaddress.ip_network(prefix, strict=False)
    except ValueError:
        return (7, 0, 0, prefix)
    return (network.version, int(network.network_address), network.prefixlen, "")


@functools.lru_cache(maxsize=1 << 14)
def parsed_network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """`ipaddress.ip_network(text)`, cached: an agent decides a route for every update it
    hears, and parsing the same few hundred prefixes again was a fifth of its CPU."""
    return ipaddress.ip_network(text)


@functools.lru_cache(maxsize=1 << 14)
def parsed_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """`ipaddress.ip_address(text)`, cached (see `parsed_network`)."""
    return ipaddress.ip_address(text)


def block_has_blackhole(cidr: str) -> bool:
    """Whether the node owning IPAM block `cidr` installs a blackhole route for it.

    Calico programs one for every local block except a one-address block (/32, /128): that
    address is the pod's, and a blackhole would hide the pod's own route
    (projectcalico/calico felix/dataplane/linux/route_mgr.go, `routeIsLocalBlock`).
    """
    network = ipaddress.ip_network(cidr)
    return network.prefixlen != network.max_prefixlen


@dataclass(frozen=True, slots=True)
class NextHop:
    """One next hop of a multipath (ECMP) kernel route: one `rtnexthop` of RTA_MULTIPATH."""

    via: str | None
    dev: str | None

    def text(self) -> str:
        return " ".join(
            [*([f"via {self.via}"] if self.via else []), *([f"dev {self.dev}"] if self.dev else [])]
        )


@dataclass(frozen=True, slots=True)
class FibRoute:
    """One expected (or observed) kernel route of a node."""

    prefix: str
    type: str  # unicast | blackhole
    via: str | None = None
    dev: str | None = None
    onlink: bool = False
    reason: str = ""
    # Who writes it: felix (Felix's route managers), bgp (BIRD, or the agent standing in for
    # it, from a BGP best path) or local (the node's own blackholes and pod routes); "" when
    # unknown (an observed route of another protocol).
    source: str = ""
    # The kernel metric it is written with; None: the kernel's default (IPv4 0, IPv6 1024).
    metric: int | None = None
    # A multipath route's next hops (then `via` and `dev` are None, as the kernel reports
    # them: RTA_MULTIPATH instead of RTA_GATEWAY and RTA_OIF); empty for one next hop.
    nexthops: tuple[NextHop, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The one JSON form of a route (the plan's `fib` entries; field names, `source`
        included, are a contract CI jobs may rely on)."""
        return {
            "prefix": self.prefix,
            "via": self.via,
            "dev": self.dev,
            "onlink": self.onlink,
            "type": self.type,
            "source": self.source,
            "reason": self.reason,
            **({"metric": self.metric} if self.metric is not None else {}),
            **(
                {"nexthops": [{"via": h.via, "dev": h.dev} for h in self.nexthops]}
                if self.nexthops
                else {}
            ),
        }

    @classmethod
    def from_json(cls, data: object, where: str = "route") -> FibRoute:
        """Read `to_json`'s form back; `reason` may be absent (observed routes carry none).

        Raises LabError naming the field when the data is not a route.
        """
        fields = Fields(data, where)
        kind = fields.text("type")
        if kind not in ROUTE_TYPES:
            fields.fail("type", f"{kind!r} is not one of {', '.join(ROUTE_TYPES)}")
        return cls(
            prefix=fields.text("prefix"),
            type=kind,
            via=fields.opt_text("via"),
            dev=fields.opt_text("dev"),
            onlink=fields.flag("onlink", default=False),
            reason=fields.text("reason", default=""),
            source=fields.text("source", default=""),
            metric=fields.opt_number("metric") if "metric" in fields.data else None,
            nexthops=tuple(
                NextHop(hop.opt_text("via"), hop.opt_text("dev"))
                for hop in fields.objects("nexthops")
            )
            if "nexthops" in fields.data
            else (),
        )

    def key(self) -> tuple[object, ...]:
        """What must be equal between expected and observed (the reason is commentary):
        (prefix, type, via, dev, onlink), and a multipath route's next hops in any order."""
        base = (self.prefix, self.type, self.via, self.dev, self.onlink)
        return (*base, frozenset(self.nexthops)) if self.nexthops else base

    def text(self) -> str:
        if self.type == "blackhole":
            return f"blackhole {self.prefix}"
        parts = [self.prefix]
        if self.via:
            parts.append(f"via {self.via}")
        if self.dev:
            parts.append(f"dev {self.dev}")
        if self.onlink:
            parts.append("onlink")
        parts += [f"nexthop {hop.text()}" for hop in self.nexthops]
        return " ".join(parts)


# Kernel route protocols: Felix's (felix/dataplane/linux/dataplanedefs/dataplane_defs.go:24),
# BIRD's (RTPROT_BIRD, BIRD 1.6.8 sysdep/linux/netlink.c:958) and the boot protocol Felix's
# endpoint manager and VXLAN tunnel routes use (its DeviceRouteProtocol default 3).
PROTO_FELIX = 80
PROTO_BIRD = 12
PROTO_BOOT = 3
# BIRD's kernel metric of a BGP route is this minus its local preference (2147483547 for
# the default 100): confd's `SetMetricForBGPRoutes`, bgp_processor.go:242-252.
BIRD_METRIC_BASE = 2147483647


def kernel_protocol(route: FibRoute) -> int:
    """The protocol a route is written with, as Calico writes it: BIRD's routes 12; Felix's
    80 (blackholes included), except its VXLAN tunnel routes, which carry the route table's
    DeviceRouteProtocol (route_mgr.go:144-145), as pod routes do (endpoint_mgr.go:1026-1043).
    The agent writes BIRD's blackholes with `PROTO_BIRD` itself."""
    if route.source == "bgp":
        return PROTO_BIRD
    if route.dev in VXLAN_DEVICE.values() or (route.source == "local" and route.dev is not None):
        return PROTO_BOOT
    return PROTO_FELIX


def source_of(proto: int, kind: str, dev: str | None) -> str:
    """Which component wrote an observed route, from its protocol (the inverse of
    `kernel_protocol`; Calico's e2e tests tell Felix's and BIRD's routes apart the same way,
    e2e/pkg/tests/networking/routes.go:36-45): "" for a protocol no Calico component uses."""
    if kind == "blackhole":
        return "local" if proto in (PROTO_FELIX, PROTO_BIRD) else ""
    if proto == PROTO_BIRD:
        return "bgp"
    if proto == PROTO_FELIX:
        return "felix"
    if proto == PROTO_BOOT and dev is not None:
        return "felix" if dev in VXLAN_DEVICE.values() else "local"
    return ""


PoolKind = Literal["vxlan", "ipip", "none"]
KINDS: tuple[PoolKind, ...] = ("vxlan", "ipip", "none")


def pool_kind(ipip_mode: str, vxlan_mode: str) -> PoolKind:
    """Felix's pool type (felix/calc/l3_route_resolver.go:626-640): VXLAN first."""
    if vxlan_mode != "Never":
        return "vxlan"
    if ipip_mode != "Never":
        return "ipip"
    return "none"


@dataclass(frozen=True)
class PoolRule:
    """A pool's encapsulation as the route decision needs it."""

    name: str
    cidr: str
    ipip_mode: str
    vxlan_mode: str

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return parsed_network(self.cidr)

    def rule_text(self) -> str:
        if self.ipip_mode == "Always":
            return "IPIP always (tunl0)"
        if self.ipip_mode == "CrossSubnet":
            return "IPIP across subnets, direct inside the subnet"
        if self.vxlan_mode == "Always":
            return "VXLAN always"
        if self.vxlan_mode == "CrossSubnet":
            return "VXLAN across subnets, direct inside the subnet"
        return "no encapsulation (native routing)"

    def encapsulation(self) -> str:
        """The conformance category: what Calico's BIRD config says about this pool."""
        if self.ipip_mode != "Never":
            return "ipip"
        if self.vxlan_mode != "Never":
            return "vxlan"
        return "none"


@dataclass(frozen=True)
class RouteContext:
    """What a node knows when it programs a learned route."""

    node_subnet: Mapping[int, str]  # family -> this node's subnet prefix
    gateway: Mapping[int, str]  # family -> default router address
    vteps: Mapping[str, str]  # remote node address -> its VTEP address (same family)
    # The prefixes the default router installs from BGP (a router that runs BIRD); empty when
    # it knows no pod routes (meshemu's plain routers; the agents never need to know).
    gateway_routes: frozenset[str] = frozenset()
    # Who writes these routes and why, in words, prefixed to each reason ("" for none).
    programmer: str = ""


def pool_of(prefix: str, pools: Sequence[PoolRule]) -> PoolRule | None:
    network = parsed_network(prefix)
    for pool in pools:
        candidate = pool.network
        if candidate.version == network.version and network.subnet_of(candidate):  # type: ignore[arg-type]
            return pool
    return None


def route_for(prefix: str, next_hop: str, pools: Sequence[PoolRule], ctx: RouteContext) -> FibRoute:
    """The kernel route for a learned `prefix` whose BGP next hop is `next_hop`."""
    family = parsed_network(prefix).version
    hop = parsed_address(next_hop)
    subnet = ctx.node_subnet.get(family)
    same_subnet = subnet is not None and hop in parsed_network(subnet)
    where = "inside" if same_subnet else "outside"
    pool = pool_of(prefix, pools)
    mode_ipip = pool.ipip_mode if pool else "Never"
    mode_vxlan = pool.vxlan_mode if pool else "Never"
    pool_text = f"{ctx.programmer}pool {pool.name}" if pool else f"{ctx.programmer}no pool"
    if family == 4 and (mode_ipip == "Always" or (mode_ipip == "CrossSubnet" and not same_subnet)):
        return FibRoute(
            prefix,
            "unicast",
            next_hop,
            IPIP_DEVICE,
            True,
            f"{pool_text} ipipMode {mode_ipip}: next hop {next_hop} is {where} this node's "
            f"subnet {subnet}, so IP-in-IP through tunl0",
            "bgp",
        )
    if mode_vxlan == "Always" or (mode_vxlan == "CrossSubnet" and not same_subnet):
        vtep = ctx.vteps.get(next_hop)
        if vtep is not None:
            return FibRoute(
                prefix,
                "unicast",
                vtep,
                VXLAN_DEVICE[family],
                True,
                f"{pool_text} vxlanMode {mode_vxlan}: next hop {next_hop} is {where} this node's "
                f"subnet {subnet}, so VXLAN to its VTEP {vtep}",
                "bgp",
            )
    encap_mode = mode_ipip if family == 4 and mode_ipip != "Never" else mode_vxlan
    if same_subnet:
        return FibRoute(
            prefix,
            "unicast",
            next_hop,
            UPLINK,
            False,
            f"{pool_text} mode {encap_mode}: next hop {next_hop} is inside this node's subnet "
            f"{subnet}, so routed directly over {UPLINK}",
            "bgp",
        )
    gateway = ctx.gateway.get(family)
    there = (
        "which learned it over BGP and forwards it"
        if prefix in ctx.gateway_routes
        else "which knows no pod routes (traffic stops there)"
    )
    return FibRoute(
        prefix,
        "unicast",
        gateway,
        UPLINK,
        False,
        f"{pool_text} mode {encap_mode}: next hop {next_hop} is outside this node's subnet "
        f"{subnet} and the pool does not encapsulate, so the route resolves through the default "
        f"router {gateway}, {there}",
        "bgp",
    )
