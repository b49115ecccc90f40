"""natOutgoing in the kernel and the outside host's namespace: the only code of this feature
that touches the kernel.

Owns loading `model.nat.nat_ruleset` into each node's namespace (Debian's `nft -f -`, run by a
thread that entered the namespace, as Felix programs nftables inside calico-node's host
namespace) and building the outside host: its namespace (recorded before it is created, so
`down` removes it), a veth from its subnet's bridge, its addresses and default routes.
Labs without an outside host and pools without natOutgoing cost nothing here.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess

from meshemu.dataplane.build import POD_SYSCTLS, Record, new_netns
from meshemu.dataplane.netlink import entered, in_netns
from meshemu.errors import DataplaneError, EnvironmentProblem
from meshemu.model.nat import has_nat, nat_ruleset
from meshemu.model.plan import LabPlan, NodePlan


def nft_binary() -> str:
    found = shutil.which("nft") or ("/usr/sbin/nft" if shutil.which("/usr/sbin/nft") else None)
    if found is None:
        raise EnvironmentProblem(
            "nft (nftables) is missing: natOutgoing is emulated with it; run scripts/setup.sh "
            "(it installs Debian's nftables)"
        )
    return found


def load_rules(node: NodePlan, ruleset: str, nft: str, what: str = "natOutgoing") -> None:
    """Replace meshemu's `calico` tables in the node's namespace with `ruleset` (one nft
    transaction: all or nothing); `what` names the rules in an error (policy loads its own
    tables the same way)."""
    with entered(node.netns):
        done = subprocess.run(
            [nft, "-f", "-"], input=ruleset, capture_output=True, text=True, check=False
        )
    if done.returncode != 0:
        raise DataplaneError(f"{node.name}: nft -f refused the {what} rules: {done.stderr.strip()}")


def apply_nat(plan: LabPlan, nodes: list[NodePlan] | None = None, force: bool = False) -> int:
    """Load the natOutgoing rules into each node; nothing (and no nft needed) when no pool NATs,
    unless `force` (a live change that turned natOutgoing off must clear the old tables).
    Returns how many nodes were loaded."""
    if not has_nat(plan.pools) and not force:
        return 0
    nft = nft_binary()
    ruleset = nat_ruleset(plan.pools)
    targets = list(plan.nodes) if nodes is None else nodes
    for node in targets:
        load_rules(node, ruleset, nft)
    return len(targets)


def build_outside(plan: LabPlan, record: Record) -> bool:
    """The outside host on its subnet's bridge; False when the lab has none."""
    outside = plan.outside
    if outside is None:
        return False
    bridge = next(s.bridge for s in plan.subnets if s.name == outside.subnet)
    new_netns(outside.netns, record, POD_SYSCTLS)
    with in_netns(plan.fabric_netns) as fabric:
        fabric.add_veth(
            outside.fabric_ifname,
            outside.netns,
            outside.ifname,
            master=bridge,
            peer_mac=outside.mac,
        )
    with in_netns(outside.netns) as ns:
        ns.up(outside.ifname)
        for address, prefix, gateway, default in (
            (outside.ipv4, outside.prefix4, outside.gateway4, "0.0.0.0/0"),
            (outside.ipv6, outside.prefix6, outside.gateway6, "::/0"),
        ):
            if address is None or prefix is None:
                continue
            ns.add_address(outside.ifname, address, ipaddress.ip_network(prefix).prefixlen)
            if gateway is not None:
                ns.route("add", default, via=gateway, dev=outside.ifname)
    return True
