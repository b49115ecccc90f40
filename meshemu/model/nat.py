"""natOutgoing and the lab's outside host, decided from the topology and rendered (pure).

Owns three things, none of which touches the kernel:
- `check_outside`: the rules of a topology's `outside:` host (its subnet exists, is joined by a
  router and holds no node; its address lies in that subnet and in no pool), as located
  `Problem`s;
- `plan_outside`: the `OutsidePlan` (namespace, addresses, gateway) once routers are planned;
- `nat_ruleset`: the nftables ruleset a node loads for its pools' natOutgoing, in the form Felix
  writes it (projectcalico/calico felix/rules/nat.go `makeNATOutgoingRuleIPTables` and
  `NATOutgoingChain`; felix/dataplane/linux/masq_mgr.go for the two sets; the nftables text as
  in felix/fv/cali-nftables-dump.txt; see docs/research/felix/nat-outgoing.md).
The dataplane (`dataplane.nat`) loads the text; verify (`verify.outside`) checks what the
outside host sees.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from meshemu.errors import Problem
from meshemu.model import names
from meshemu.model.labplan import OutsidePlan, PoolPlan, RouterPlan
from meshemu.model.topology import Topology

# The outside host's namespace sits under the lab's fabric namespace (so `down` and
# `lab_owns_netns` treat it as the lab's). A node or router name is a DNS label, which never
# starts with '-': this name cannot collide with one of theirs.
OUTSIDE_NAME = "-outside"
OUTSIDE_IFNAME = "eth0"  # inside the outside namespace
OUTSIDE_FABRIC_IFNAME = "out0"  # its end on the subnet's bridge, in the fabric namespace
# The UDP port of the outside host's echo (it answers with the source address it saw).
OUTSIDE_PORT = 7

# A live change cannot move the outside host (its namespace and link are built at `up`).
OUTSIDE_FIXED = (
    "the outside host changed: a running lab keeps it",
    "bring the lab down and up again to change `outside`",
)

# Felix's names: table `ip calico` / `ip6 calico`, sets cali40<id> / cali60<id>.
_TABLE_FAMILY = {4: "ip", 6: "ip6"}
_ADDR_TYPE = {4: "ipv4_addr", 6: "ipv6_addr"}
_MATCH = {4: "ip", 6: "ip6"}


def outside_netns(lab: str) -> str:
    return names.node_netns(lab, OUTSIDE_NAME)


def check_outside(topo: Topology) -> list[Problem]:
    """The outside host's rules; every problem at once, located under `outside`."""
    spec = topo.outside
    if spec is None:
        return []
    problems: list[Problem] = []
    subnet = topo.subnets.get(spec.subnet)
    if subnet is None:
        return [
            Problem(
                "outside.subnet",
                f"no subnet named {spec.subnet!r}",
                "name one of `subnets` (its own small subnet, joined by a router)",
            )
        ]
    if not any(spec.subnet in r.subnets for r in topo.routers.values()):
        problems.append(
            Problem(
                "outside.subnet",
                f"no router joins subnet {spec.subnet}: the outside host would be unreachable",
                f"add {spec.subnet} to a router's `subnets`",
            )
        )
    on_it = sorted(n for n, node in topo.nodes.items() if node.subnet == spec.subnet)
    if on_it:
        problems.append(
            Problem(
                "outside.subnet",
                f"subnet {spec.subnet} is a node subnet (nodes {', '.join(on_it)}): the outside "
                "host stands for the Internet, outside every node subnet",
                "give the outside host a subnet of its own",
            )
        )
    if spec.ipv4 is None and spec.ipv6 is None:
        problems.append(
            Problem("outside", "the outside host has no address", "set ipv4 and/or ipv6")
        )
    pools = _pool_networks(topo)
    for family, address, prefix in ((4, spec.ipv4, subnet.ipv4), (6, spec.ipv6, subnet.ipv6)):
        if address is None:
            continue
        where = f"outside.ipv{family}"
        if prefix is None:
            problems.append(
                Problem(
                    where,
                    f"subnet {spec.subnet} has no IPv{family} prefix",
                    f"add ipv{family} to subnet {spec.subnet} or leave this out",
                )
            )
        elif address not in prefix or address in (prefix.network_address, _last(prefix)):
            problems.append(
                Problem(
                    where,
                    f"{address} is not a host address of subnet {spec.subnet} ({prefix})",
                    f"choose a host address inside {prefix}",
                )
            )
        for pool, net in pools:
            if net.version == family and address in net:
                problems.append(
                    Problem(
                        where,
                        f"{address} is inside pool {pool} ({net}): it would not be outside "
                        "every pool, and pods would reach it without NAT",
                        "choose an address outside every pool, e.g. from 198.51.100.0/24 or "
                        "2001:db8::/32 (documentation ranges)",
                    )
                )
    return problems


def _last(prefix: ipaddress.IPv4Network | ipaddress.IPv6Network) -> object:
    # IPv4's broadcast address is no host; IPv6 has none (its last address is usable).
    return prefix.broadcast_address if prefix.version == 4 else None


def _pool_networks(
    topo: Topology,
) -> list[tuple[str, ipaddress.IPv4Network | ipaddress.IPv6Network]]:
    out: list[tuple[str, ipaddress.IPv4Network | ipaddress.IPv6Network]] = []
    for name, pool in topo.pools.items():
        try:
            out.append((name, ipaddress.ip_network(pool.cidr, strict=False)))
        except ValueError:
            continue  # (`rules` reports a bad pool CIDR)
    return out


def address_clash(topo: Topology, routers: Sequence[RouterPlan]) -> list[Problem]:
    """The outside address must not be one a router took on its subnet."""
    spec = topo.outside
    if spec is None:
        return []
    problems = []
    for router in routers:
        iface = router.interface_on(spec.subnet)
        if iface is None:
            continue
        for family, address in ((4, spec.ipv4), (6, spec.ipv6)):
            if address is not None and iface.address(family) == str(address):
                problems.append(
                    Problem(
                        f"outside.ipv{family}",
                        f"{address} is router {router.name}'s address on {spec.subnet}",
                        "choose a free host address (routers take the first ones)",
                    )
                )
    return problems


def plan_outside(topo: Topology, routers: Sequence[RouterPlan]) -> OutsidePlan | None:
    """The outside host: on its subnet's bridge, default route to the first router on it."""
    spec = topo.outside
    if spec is None:
        return None
    subnet = topo.subnets[spec.subnet]
    gateway: dict[int, str | None] = {4: None, 6: None}
    for router in routers:
        iface = router.interface_on(spec.subnet)
        if iface is None:
            continue
        for family in (4, 6):
            if gateway[family] is None:
                gateway[family] = iface.address(family)
    return OutsidePlan(
        netns=outside_netns(topo.name),
        subnet=spec.subnet,
        ifname=OUTSIDE_IFNAME,
        fabric_ifname=OUTSIDE_FABRIC_IFNAME,
        mac=names.mac_address(topo.name, OUTSIDE_NAME),
        ipv4=None if spec.ipv4 is None else str(spec.ipv4),
        ipv6=None if spec.ipv6 is None else str(spec.ipv6),
        prefix4=None if subnet.ipv4 is None or spec.ipv4 is None else str(subnet.ipv4),
        prefix6=None if subnet.ipv6 is None or spec.ipv6 is None else str(subnet.ipv6),
        gateway4=gateway[4] if spec.ipv4 is not None else None,
        gateway6=gateway[6] if spec.ipv6 is not None else None,
        port=OUTSIDE_PORT,
    )


def _family(cidr: str) -> int:
    return ipaddress.ip_network(cidr, strict=False).version


def nat_pools(pools: Sequence[PoolPlan], family: int) -> tuple[str, ...]:
    """Felix's `masq-ipam-pools`: the CIDRs of the family's pools with natOutgoing
    (masq_mgr.go:139-143; a disabled pool's natOutgoing counts too, the manager does not look
    at `disabled`)."""
    return tuple(p.cidr for p in pools if p.nat_outgoing and _family(p.cidr) == family)


def all_pools(pools: Sequence[PoolPlan], family: int) -> tuple[str, ...]:
    """Felix's `network-ip-pools`: every pool of the family, disabled ones included
    (masq_mgr.go:130-138). (meshemu pools have no `allowedUses`, so none is LoadBalancer-only.)"""
    return tuple(p.cidr for p in pools if _family(p.cidr) == family)


def nat_ruleset(pools: Sequence[PoolPlan], nat_address: str | None = None) -> str:
    """The nftables ruleset a node loads: empty when no pool has natOutgoing (Felix's chain has
    rules only then, masq_mgr.go:149-162), else per family with such a pool a table `calico`
    with the two sets, a postrouting nat chain at `srcnat + 10` jumping to
    `nat-cali-nat-outgoing`, whose one rule masquerades (or SNATs to `nat_address`, Felix's
    natOutgoingAddress, IPv4 only: config_params.go:453) traffic from a natOutgoing pool to a
    destination outside every pool (nat.go:55-90).

    Starts by deleting meshemu's own tables (`add` then `delete` is idempotent in one `nft -f`
    transaction), so loading it again replaces the rules of a live change as a whole.
    """
    lines: list[str] = []
    for family in (4, 6):
        table = f"{_TABLE_FAMILY[family]} calico"
        lines += [f"add table {table}", f"delete table {table}"]
    for family in (4, 6):
        masq = nat_pools(pools, family)
        if not masq:
            continue
        prefix = f"cali{family}0"
        match = _MATCH[family]
        if nat_address is not None and family == 4:
            action = f"snat to {nat_address}"
        else:
            action = "masquerade fully-random"
        lines += [
            f"table {_TABLE_FAMILY[family]} calico {{",
            f"\tset {prefix}network-ip-pools {{",
            f"\t\ttype {_ADDR_TYPE[family]}; flags interval;",
            f"\t\telements = {{ {', '.join(all_pools(pools, family))} }}",
            "\t}",
            f"\tset {prefix}masq-ipam-pools {{",
            f"\t\ttype {_ADDR_TYPE[family]}; flags interval;",
            f"\t\telements = {{ {', '.join(masq)} }}",
            "\t}",
            "\tchain nat-POSTROUTING {",
            "\t\ttype nat hook postrouting priority srcnat + 10; policy accept;",
            "\t\tcounter jump nat-cali-POSTROUTING",
            "\t}",
            "\tchain nat-cali-nat-outgoing {",
            f"\t\t{match} saddr @{prefix}masq-ipam-pools {match} daddr != "
            f"@{prefix}network-ip-pools counter {action}",
            "\t}",
            "\tchain nat-cali-POSTROUTING {",
            "\t\tcounter jump nat-cali-nat-outgoing",
            "\t}",
            "}",
        ]
    return "\n".join(lines) + "\n"


def has_nat(pools: Sequence[PoolPlan]) -> bool:
    return any(p.nat_outgoing for p in pools)


def expected_source(pod_ip: str, node_ip: str | None, pools: Sequence[PoolPlan]) -> str | None:
    """The source address the outside host should see for a pod's packet: its node's address
    when the pod's pool NATs (the outside address is in no pool), else the pod's own."""
    address = ipaddress.ip_address(pod_ip)
    for pool in pools:
        if address in ipaddress.ip_network(pool.cidr, strict=False) and pool.nat_outgoing:
            return node_ip
    return pod_ip
