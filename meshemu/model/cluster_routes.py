"""Who programs a node's cluster routes: Felix, BIRD (BGP), both or neither (pure).

Owns Calico's ownership rule for the routes a node needs to reach other nodes' workloads (block
routes, borrowed /32s) and its own blocks' blackholes, per pool kind, and the warnings for the
settings Calico accepts but that cannot work. Followed, at projectcalico/calico release-v3.33
(`6609dea5`, identical to master `87c15906` for these files):

- VXLAN pools (`vxlanMode` Always/CrossSubnet) are always Felix's (felixconfig.go:630-632;
  confd's kernel filter rejects them: bgp_processor.go:1116-1122);
- IPIP pools: Felix when FelixConfiguration `programClusterRoutes` is Enabled/EnabledIPIPOnly
  (felix/config/config_params.go:608-620), BIRD when BGPConfiguration's is Enabled/
  EnabledIPIPOnly (bgp_processor.go:1158-1192);
- unencapsulated pools: Felix with Enabled/EnabledNoEncapOnly, BIRD likewise;
- defaults: Felix `EnabledIPIPOnly`, BGP `EnabledNoEncapOnly` (felixconfig.go:649,
  bgpconfig.go:176); the classic behaviour (before v3.33: BIRD programs IPIP routes from the
  BGP next hop) is Felix `Disabled` with BGP `Enabled`;
- `ipipEnabled`/`vxlanEnabled: false` switch Felix's manager off (int_dataplane.go:890-924,
  1395-1423), `routeSyncDisabled` all of Felix's routes; with BGP disabled (the operator's
  `calicoNetwork.bgp: Disabled`) no BIRD runs (node/filesystem/etc/rc.local:45-60).

"Both" and "neither" are what the API comments warn of (felixconfig.go:641-644): both write the
route (Felix's, metric 0, wins in the kernel; BIRD's stays beside it at its own metric), neither
leaves the pool without cluster routes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from meshemu.model.labplan import PoolPlan
from meshemu.model.routes import KINDS, PoolKind, pool_kind
from meshemu.model.topology import FelixSpec, Topology

FELIX = "felix"
BGP = "bgp"
LOCAL = "local"


def _ipip(value: str) -> bool:
    return value in ("Enabled", "EnabledIPIPOnly")


def _noencap(value: str) -> bool:
    return value in ("Enabled", "EnabledNoEncapOnly")


@dataclass(frozen=True)
class Ownership:
    """One node's programmers per pool kind, and the settings that decided them."""

    felix_value: str  # FelixConfiguration programClusterRoutes in force on the node
    bgp_value: str  # BGPConfiguration programClusterRoutes (global only: confd client.go:1224)
    bgp_enabled: bool
    felix_ipip: bool
    felix_vxlan: bool
    felix_noencap: bool
    bird_ipip: bool
    bird_noencap: bool

    def owners(self, kind: PoolKind) -> frozenset[str]:
        """Who writes the routes of a pool of `kind` on this node: felix, bgp, both, neither."""
        felix = {"vxlan": self.felix_vxlan, "ipip": self.felix_ipip, "none": self.felix_noencap}
        bird = {"vxlan": False, "ipip": self.bird_ipip, "none": self.bird_noencap}
        return frozenset(
            owner
            for owner, yes in ((FELIX, felix[kind]), (BGP, bird[kind] and self.bgp_enabled))
            if yes
        )

    def why(self, kind: PoolKind) -> str:
        """The settings behind `owners(kind)`, in words."""
        if kind == "vxlan":
            return "VXLAN routes are always Felix's" + (
                "" if self.felix_vxlan else ", and Felix's VXLAN manager is off"
            )
        what = "IP-in-IP" if kind == "ipip" else "unencapsulated"
        bgp = (
            f"BGPConfiguration programClusterRoutes {self.bgp_value}"
            if self.bgp_enabled
            else "BGP disabled"
        )
        return (
            f"FelixConfiguration programClusterRoutes {self.felix_value} and {bgp}, "
            f"for an {what} pool"
        )


def ownership(topo: Topology, node: str) -> Ownership:
    """The ownership on `node`: its own FelixConfiguration (`node.<name>`) or the lab's."""
    spec = topo.nodes[node].felix or topo.felix
    return _ownership(spec, topo.bgp.program_cluster_routes, topo.bgp.enabled)


def felix_programs(topo: Topology, node: str) -> tuple[str, ...]:
    """The pool kinds whose routes Felix writes on `node`."""
    rule = ownership(topo, node)
    return tuple(k for k in KINDS if FELIX in rule.owners(k))


def with_bird_programs(topo: Topology, pools: Sequence[PoolPlan]) -> tuple[PoolPlan, ...]:
    """The pools with `bird_programs` set: BIRD's share is the same on every node (confd reads
    programClusterRoutes only from the default BGPConfiguration)."""
    bird = _ownership(topo.felix, topo.bgp.program_cluster_routes, topo.bgp.enabled)
    return tuple(
        replace(p, bird_programs=BGP in bird.owners(pool_kind(p.ipip_mode, p.vxlan_mode)))
        for p in pools
    )


def _ownership(felix: FelixSpec, bgp_value: str, bgp_enabled: bool) -> Ownership:
    value = felix.program_cluster_routes
    on = not felix.route_sync_disabled
    return Ownership(
        felix_value=value,
        bgp_value=bgp_value,
        bgp_enabled=bgp_enabled,
        felix_ipip=on and _ipip(value) and felix.ipip_enabled is not False,
        felix_vxlan=on and felix.vxlan_enabled is not False,
        felix_noencap=on and _noencap(value),
        bird_ipip=_ipip(bgp_value),
        bird_noencap=_noencap(bgp_value),
    )


def warnings(topo: Topology) -> list[tuple[str, str]]:
    """(location, text) for every pool whose routes nobody or both components program on some
    node, and for BIRD programming IPIP routes (deprecated since v3.33), naming the consequence."""
    out: list[tuple[str, str]] = []
    kinds = {
        name: pool_kind(p.ipip_mode, p.vxlan_mode)
        for name, p in topo.pools.items()
        if not p.disabled
    }
    # Nodes alike (same pool, owners and settings) share one warning naming them all.
    grouped: dict[tuple[str, frozenset[str], str], list[str]] = {}
    rules = {node: ownership(topo, node) for node in topo.nodes}
    for node, rule in rules.items():
        for pool, kind in kinds.items():
            owners = rule.owners(kind)
            if len(owners) != 1:
                grouped.setdefault((pool, owners, rule.why(kind)), []).append(node)
    for (pool, owners, _), nodes in grouped.items():
        rule = rules[nodes[0]]
        where = "every node" if len(nodes) == len(rules) else _nodes_text(nodes)
        out.append((f"pools.{pool}", _conflict_text(pool, kinds[pool], owners, rule, where)))
    if any(topo.nodes) and any(k == "ipip" for k in kinds.values()):
        bird_ipip = [n for n in topo.nodes if BGP in ownership(topo, n).owners("ipip")]
        if bird_ipip:
            out.append(
                (
                    "bgp.programClusterRoutes",
                    f"BIRD programs the IP-in-IP routes on {_nodes_text(bird_ipip)} (the classic "
                    "behaviour): Calico deprecates leaving IPIP cluster routes to BGP as of "
                    "v3.33 (removal planned for v3.35; felixconfig.go:646-647)",
                )
            )
    return out


def _nodes_text(nodes: Sequence[str]) -> str:
    shown = ", ".join(nodes[:5])
    return f"{shown} and {len(nodes) - 5} more" if len(nodes) > 5 else shown


def _conflict_text(
    pool: str, kind: PoolKind, owners: frozenset[str], rule: Ownership, where: str
) -> str:
    why = rule.why(kind)
    if not owners:
        return (
            f"no component programs the routes of pool {pool} on {where} ({why}): its "
            "pods are unreachable from other nodes and the node gets no blackhole for its "
            "blocks"
        )
    return (
        f"both Felix and BIRD program the routes of pool {pool} on {where} ({why}): they "
        "fight over them; Felix's route (metric 0) is the one the kernel uses, BIRD's stays "
        "beside it, and the node's own blackholes are rewritten by each in turn"
    )
