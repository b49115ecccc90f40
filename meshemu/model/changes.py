"""What a live change to a running lab may not do (pure): the rules `live` applies to a change
and a scenario's checks apply to each step before anything runs.

- A node added to the running lab must not get an address a running node or router holds: the
  running lab keeps its addresses (`Sticky`), so the two would collide.
- IP-in-IP cannot be added to a lab that came up without it (no tunnel device or process).
"""

from __future__ import annotations

from dataclasses import dataclass

from meshemu.model.labplan import LabPlan


@dataclass(frozen=True)
class Collision:
    node: str  # the added node
    family: int
    address: str
    holder: str  # "running node node2" | "router r1"


def address_collisions(old: LabPlan, new: LabPlan) -> list[Collision]:
    """Addresses the nodes `new` adds to `old` would take from what keeps running."""
    kept = {n.name for n in new.nodes}
    holders: dict[str, str] = {}
    for node in old.nodes:
        if node.name in kept:
            for family in (4, 6):
                if (address := node.address(family)) is not None:
                    holders[address] = f"running node {node.name}"
    for router in old.routers:
        for interface in router.interfaces:
            for address in (interface.ipv4, interface.ipv6):
                if address is not None:
                    holders[address] = f"router {router.name}"
    running = {n.name for n in old.nodes}
    return [
        Collision(node.name, family, address, holders[address])
        for node in new.nodes
        if node.name not in running
        for family in (4, 6)
        if (address := node.address(family)) is not None and address in holders
    ]


def uses_ipip(plan: LabPlan) -> bool:
    return any(p.ipip_mode != "Never" for p in plan.pools)


IPIP_ADDED = (
    "this lab comes up without IP-in-IP (no IPIP pool at `up`), and a live change cannot add it",
    "give the topology an IPIP pool from the start, or use vxlanMode",
)
