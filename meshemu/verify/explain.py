"""Where a running node differs from its plan, for `meshemu explain` (pure).

Owns putting an observation of the running lab (`verify.observe`) beside a node's explanation:
each session's observed state (as its speaker reports it), each route as the kernel has it, and
the differences in words: the failed checks of `verify` (`verify.checks`: health, sessions,
RIB, FIB) that concern the node, with their details. No I/O here.
"""

from __future__ import annotations

from meshemu.model.explain import Explanation, with_observed
from meshemu.model.plan import LabPlan
from meshemu.verify.checks import check_fib, check_health, check_rib, check_sessions
from meshemu.verify.fib import compare_fib
from meshemu.verify.observation import Observation, reported_sessions
from meshemu.verify.results import FAIL


def observed_explanation(
    explanation: Explanation, plan: LabPlan, observation: Observation
) -> Explanation:
    node = plan.node(explanation.node)
    agent = observation.agents.get(node.name)
    alive = observation.health.get(node.name)
    sessions = {}
    for peer_ip, seen in reported_sessions(agent).items():
        state = str(seen.get("state", "unknown"))
        info = f" ({seen['info']})" if seen.get("info") else ""
        sessions[peer_ip] = state + info
    if alive is not None and not alive.control_alive:
        sessions = {}  # a dead speaker's last report is stale: say nothing rather than that
    for s in node.sessions:
        sessions.setdefault(s.peer_ip, "not reported")
    routes: dict[str, str] = {}
    fib = observation.fibs.get(node.name)
    if fib is not None:
        diff = compare_fib(node.name, node.fib, fib, [p.cidr for p in plan.pools])
        routes = {r.prefix: "as planned" for r in node.fib}
        routes.update({r.prefix: "missing from the kernel" for r in diff.missing})
        routes.update({e.prefix: f"the kernel has '{o.text()}'" for e, o in diff.wrong})
    results = (
        check_health(plan, observation.health, observation.fibd)
        + check_sessions(plan, observation.agents, observation.health)
        + check_rib(plan, observation.agents, observation.health)
        + check_fib(plan, observation.fibs)
    )
    differences = []
    for result in results:
        if result.status != FAIL or result.node not in (node.name, None):
            continue
        differences.append(f"{result.name}: {result.diagnosis}")
        details = result.details.get("problems") or result.details.get("lines") or ()
        differences += [f"  {line}" for line in details]
    return with_observed(explanation, sessions, routes, differences)
