"""A node's routes side by side: BGP best path, kernel route, the plan's expectation (pure).

Owns the comparison `meshemu routes` shows: for every prefix the plan, the agent's RIB or the
kernel knows (inside the lab's pools), and every component writing it (Felix, BIRD, the
node's own), what each says and whether the kernel matches the plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from meshemu.model.plan import LabPlan, NodePlan
from meshemu.model.routes import FibRoute, prefix_sort_key
from meshemu.verify.fib import managed
from meshemu.verify.observation import reported_best_paths


@dataclass(frozen=True)
class RouteRow:
    prefix: str
    rib_next_hop: str | None
    rib_learned_from: str | None
    originator_id: str | None
    cluster_list: tuple[str, ...]
    fib: str | None
    expected: str | None
    matches_plan: bool
    source: str = ""  # who writes the route: felix, bgp, local ("" for a BGP path alone)

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["cluster_list"] = list(self.cluster_list)
        return data


def route_rows(
    plan: LabPlan, node: NodePlan, agent: dict[str, Any] | None, observed: list[FibRoute]
) -> list[RouteRow]:
    """One row per prefix and writer (a prefix Felix and BIRD both write has two), with the
    BGP best path beside each; a prefix only BGP knows has a row of its own."""
    pools = [p.cidr for p in plan.pools]
    expected = {(r.prefix, r.source): r for r in node.fib}
    fib = {(r.prefix, r.source): r for r in managed(observed, pools)}
    best = reported_best_paths(agent)
    keys = set(expected) | set(fib)
    keys |= {(p, "") for p in best if not any(k[0] == p for k in keys)}
    rows = []
    for prefix, source in sorted(keys, key=lambda k: (prefix_sort_key(k[0]), k[1])):
        rib, kernel, want = (
            best.get(prefix),
            fib.get((prefix, source)),
            expected.get((prefix, source)),
        )
        rows.append(
            RouteRow(
                prefix=prefix,
                rib_next_hop=rib.get("next_hop") if rib else None,
                rib_learned_from=rib.get("learned_from") if rib else None,
                originator_id=rib.get("originator_id") if rib else None,
                cluster_list=tuple(rib.get("cluster_list") or ()) if rib else (),
                fib=kernel.text() if kernel else None,
                expected=want.text() if want else None,
                matches_plan=kernel is not None and want is not None and kernel.key() == want.key(),
                source=source,
            )
        )
    return rows
