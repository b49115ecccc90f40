"""Probing the policy matrix (I/O): TCP and UDP to every port a pod declares, from every other
pod.

Owns grouping the expected matrix's port probes by source pod and sending each group at once
with `verify.connect.connect_many` (the lab's responder answers every declared port). A
connection or an answer, or a refusal (a reset or a port unreachable: it comes from the target
itself), means the packet passed every policy on its way; Felix's drop says nothing. ICMP is
`verify.probe.reachability_matrix`'s. It reads the plan; it changes nothing. The verdicts are
`verify.policy`'s.
"""

from __future__ import annotations

from meshemu.model.labplan import LabPlan
from meshemu.model.policy import PROTOCOL_NAMES
from meshemu.model.policy_eval import TCP, UDP, ExpectedCell
from meshemu.verify.connect import Target, connect_many

Key = tuple[str, str, int, str]


def port_matrix(
    plan: LabPlan, cells: list[ExpectedCell], timeout: float = 1.0
) -> dict[Key, bool | str]:
    """Every TCP/UDP cell of the expected matrix probed: got through (True), dropped (False),
    or why it could not be probed (text)."""
    by_source: dict[str, list[ExpectedCell]] = {}
    for cell in cells:
        if cell.packet.protocol in (TCP, UDP) and cell.packet.port:
            by_source.setdefault(cell.source, []).append(cell)
    netns = {f"{n.name}/{p.name}": p.netns for n in plan.nodes for p in n.pods}
    seen: dict[Key, bool | str] = {}
    for source, mine in by_source.items():
        targets = [
            Target(c.target_ip, c.packet.port or 0, PROTOCOL_NAMES[c.packet.protocol].upper())
            for c in mine
        ]
        for cell, result in zip(mine, connect_many(netns[source], targets, timeout), strict=True):
            if result.error and not (result.ok or result.refused):
                seen[cell.key] = f"not probed: {result.error}"
            else:
                seen[cell.key] = result.ok or result.refused
    return seen
