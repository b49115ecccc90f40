"""Services in the kernel: loading each node's `kube-proxy` tables (nftables).

Owns applying `model.services_nft.services_ruleset` in every node's namespace with `nft -f`
(`dataplane.nat.load_rules`: a thread that entered the namespace, one transaction per node, as
kube-proxy programs the host namespace), at `up` and after each live change. A lab that has no
Service and never had one loads nothing and needs no nft.
"""

from __future__ import annotations

from meshemu.dataplane.nat import load_rules, nft_binary
from meshemu.model.plan import LabPlan
from meshemu.model.services_nft import services_ruleset


def apply_services(plan: LabPlan, force: bool = False) -> int:
    """Load every node's Service rules; nothing when the lab has no Service, unless `force` (a
    live change that removed the last one must clear the old tables). Returns how many nodes
    were loaded."""
    if (plan.services is None or not plan.services.services) and not force:
        return 0
    nft = nft_binary()
    for node in plan.nodes:
        load_rules(node, services_ruleset(plan, node), nft, what="Service (kube-proxy)")
    return len(plan.nodes)
