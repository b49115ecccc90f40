"""Did the labs show what `meshemu impact` predicted? (pure)

Owns the comparison behind `impact --run`: the old input's lab and the new input's lab were
each brought up and observed (`verify.observe`, packets included); each predicted difference
is checked on both sides (a changed session's state as the speakers report it, a changed
route as the kernel has it, a pod pair's reachability and path as the probes and the capture
show it), and every pod pair's reachability on each side against the plan's expectation. One
`CheckResult` per check (category `impact`); no I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping

from meshemu.model.impact import Impact, PairKey, Reach
from meshemu.model.labplan import LabPlan
from meshemu.model.routes import FibRoute
from meshemu.verify.observation import Observation, PathCell, reported_sessions
from meshemu.verify.results import FAIL, PASS, CheckResult

CATEGORY = "impact"


def _result(name: str, expected: str, observed: str, node: str | None = None) -> CheckResult:
    ok = expected == observed
    why = "" if ok else f"the lab shows {observed}, the prediction was {expected}"
    return CheckResult(CATEGORY, name, PASS if ok else FAIL, expected, observed, why, node)


def _session_state(observation: Observation, node: str, peer_ip: str) -> str:
    seen = reported_sessions(observation.agents.get(node)).get(peer_ip)
    if seen is None:
        return "absent"
    return "established" if seen.get("state") == "established" else "not established"


def _planned_state(plan: LabPlan, node: str, peer_ip: str) -> str:
    me = next((n for n in plan.nodes if n.name == node), None)
    if me is None or not any(s.peer_ip == peer_ip for s in me.sessions):
        return "absent"
    return "established" if peer_ip in me.expected_up else "not established"


def _route_text(routes: list[FibRoute] | None, prefix: str) -> str:
    route = next((r for r in routes or () if r.prefix == prefix), None)
    return route.text() if route is not None else "absent"


def _planned_route(plan: LabPlan, node: str, prefix: str) -> str:
    me = next((n for n in plan.nodes if n.name == node), None)
    route = next((r for r in (me.fib if me else ()) if r.prefix == prefix), None)
    return route.text() if route is not None else "absent"


def _cells(observation: Observation) -> dict[PairKey, PathCell]:
    return {(c.cell.source, c.cell.target, c.cell.family): c for c in observation.matrix}


def _seen(cell: PathCell | None) -> str:
    if cell is None:
        return "not probed"
    if not cell.cell.ok:
        return "unreachable"
    return f"reachable, {cell.observed_path}"


def _predicted(reach: Reach | None) -> str:
    if reach is None:
        return "not probed"
    return f"reachable, {reach.path}" if reach.ok else "unreachable"


def check_prediction(
    impact: Impact,
    labs: Mapping[str, tuple[LabPlan, Observation]],
) -> list[CheckResult]:
    """`labs`: "old" and "new" -> the plan each lab ran and what was observed in it."""
    out: list[CheckResult] = []
    reach = {"old": impact.old_reach, "new": impact.new_reach}
    for side, (plan, observation) in labs.items():
        for node in impact.nodes:
            for s in node.sessions:
                out.append(
                    _result(
                        f"{side}: session {node.node} -> {s.peer} ipv{s.family} ({s.change})",
                        _planned_state(plan, node.node, s.peer_ip),
                        _session_state(observation, node.node, s.peer_ip),
                        node.node,
                    )
                )
            for r in node.routes:
                out.append(
                    _result(
                        f"{side}: route {node.node} {r.prefix} ({r.change})",
                        _planned_route(plan, node.node, r.prefix),
                        _route_text(observation.fibs.get(node.node), r.prefix),
                        node.node,
                    )
                )
        cells = _cells(observation)
        for pair in impact.pairs:
            out.append(
                _result(
                    f"{side}: ipv{pair.family} {pair.source} -> {pair.target} ({pair.change})",
                    _predicted(reach[side].get(pair.key)),
                    _seen(cells.get(pair.key)),
                    pair.source.split("/")[0],
                )
            )
        # Every pair, not only the changed ones: the prediction is only as good as the plan.
        wrong = [
            f"{key[0]} -> {key[1]} ipv{key[2]}: {_seen(cells.get(key))}"
            for key, predicted in sorted(reach[side].items())
            if _predicted(predicted) != _seen(cells.get(key))
        ]
        total = len(reach[side])
        out.append(
            CheckResult(
                CATEGORY,
                f"{side}: every pod pair as the plan expects",
                FAIL if wrong else PASS,
                f"{total} pairs as predicted",
                f"{total - len(wrong)} as predicted"
                + (f"; {'; '.join(wrong[:5])}" if wrong else ""),
                f"{len(wrong)} pod pair(s) of the {side} lab differ from the plan" if wrong else "",
                details={"pairs": wrong},
            )
        )
    return out
