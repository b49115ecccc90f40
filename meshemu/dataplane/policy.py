"""Network policy in the kernel: loading each node's policy tables (nftables).

Owns applying `model.policy_nft.policy_ruleset` in every node's namespace with `nft -f`
(`dataplane.nat.load_rules`: a thread that entered the namespace, one transaction per node, as
Felix programs its tables inside calico-node's host namespace), at `up` and after each live
change. A lab that has no policy and never had one loads nothing and needs no nft.
"""

from __future__ import annotations

from meshemu.dataplane.nat import load_rules, nft_binary
from meshemu.model.plan import LabPlan
from meshemu.model.policy_nft import lab_verdicts, policy_ruleset


def apply_policy(plan: LabPlan, force: bool = False) -> int:
    """Load every node's policy tables; nothing when the lab has no policy, unless `force`
    (a live change that removed the last policy must clear the old tables). Returns how many
    nodes were loaded."""
    if plan.policy is None and not force:
        return 0
    nft = nft_binary()
    verdicts = lab_verdicts(plan, plan.policy)
    for node in plan.nodes:
        load_rules(node, policy_ruleset(plan, node, verdicts), nft, what="network policy")
    return len(plan.nodes)
