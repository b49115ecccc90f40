"""Pure checks: the plan's expectations against what was observed, as `CheckResult`s.

Owns the verdicts of `verify`: health (every node's namespace, speaker, agent and tunnel, and
the lab's route programmer, exist and run: a dead part is named, never judged from the stale
state it left behind), sessions (every planned session Established, no unplanned ones),
RIB (every expected best path with its next hop, ORIGINATOR_ID and CLUSTER_LIST, nothing
leaked or looped), FIB (kernel routes equal the plan's), each of them for the BGP routers too
(`verify.router_checks`), and dataplane (every pod reaches every
pod by ICMP and TCP, along the expected path as seen on the wire). No I/O here.
"""

from __future__ import annotations

from typing import Any

from meshemu.model.plan import LabPlan
from meshemu.model.routes import FibRoute
from meshemu.verify.fib import compare_fib
from meshemu.verify.observation import (
    NodeHealth,
    Observation,
    PathCell,
    reported_best_paths,
    reported_sessions,
)
from meshemu.verify.outside import check_outside
from meshemu.verify.results import FAIL, PASS, SKIP, CheckResult
from meshemu.verify.router_checks import check_routers

PATH_WORDS = {
    "local": "inside the node",
    "direct": "directly over the subnet",
    "router": "through the router, unencapsulated",
    "ipip": "IP-in-IP",
    "vxlan": "VXLAN",
    "unseen": "no packet seen on the fabric",
    "none": "no route",
}


HEALTHY = NodeHealth()


def check_health(
    plan: LabPlan, health: dict[str, NodeHealth], fibd_alive: bool = True
) -> list[CheckResult]:
    """One result per node (and one for the route programmer): what is dead or gone."""
    results = [
        CheckResult(
            "health",
            "route programmer",
            PASS if fibd_alive else FAIL,
            "running",
            "running" if fibd_alive else "dead",
            ""
            if fibd_alive
            else "the lab's route programmer (fibd) died: agents cannot "
            "change kernel routes (meshemu repair restarts it)",
        )
    ]
    for node in plan.nodes:
        dead = health.get(node.name, HEALTHY).dead()
        results.append(
            CheckResult(
                "health",
                f"health {node.name}",
                FAIL if dead else PASS,
                "namespace, speaker, agent and pods present",
                "; ".join(dead) if dead else "all present",
                f"{node.name}: {', '.join(dead)} (meshemu repair restarts and rebuilds them)"
                if dead
                else "",
                node.name,
            )
        )
    return results


def _dead_reason(node: str, health: dict[str, NodeHealth]) -> str | None:
    seen = health.get(node, HEALTHY)
    return None if seen.control_alive else ", ".join(seen.dead())


def _not_observed(category: str, node: str, expected: str, why: str) -> CheckResult:
    """The verdict on a node whose state cannot be observed (its speaker or agent is dead)."""
    return CheckResult(category, f"{category} {node}", FAIL, expected, "not observed", why, node)


def check_sessions(
    plan: LabPlan,
    agents: dict[str, dict[str, Any] | None],
    health: dict[str, NodeHealth] | None = None,
) -> list[CheckResult]:
    health = health or {}
    results = []
    for node in plan.nodes:
        agent = agents.get(node.name)
        dead = _dead_reason(node.name, health)
        expected = f"{len(node.expected_up)} sessions Established"
        if dead is not None:
            why = f"{node.name} cannot hold BGP sessions: {dead}"
            results.append(_not_observed("sessions", node.name, expected, why))
            continue
        if agent is None:
            why = f"{node.name}'s agent never wrote its state: is it running? (meshemu status)"
            results.append(_not_observed("sessions", node.name, expected, why))
            continue
        observed = reported_sessions(agent)
        planned = {s.peer_ip: s for s in node.sessions}
        for session in node.sessions:
            name = f"session {node.name} -> {session.peer_ip}"
            if session.peer_ip not in node.expected_up:
                why = (
                    "external peer, not emulated"
                    if not session.emulated
                    else "the plan does not expect it to come up (see plan notes)"
                )
                results.append(CheckResult("sessions", name, SKIP, diagnosis=why, node=node.name))
                continue
            seen = observed.get(session.peer_ip, {})
            state = seen.get("state", "absent")
            if state == "established":
                results.append(
                    CheckResult(
                        "sessions", name, PASS, "Established", "Established", node=node.name
                    )
                )
                continue
            info = f" ({seen['info']})" if seen.get("info") else ""
            peer = session.peer_name
            peer_dead = _dead_reason(peer or "", health)
            cause = (
                f"the cause is {peer}: {peer_dead}"
                if peer_dead is not None
                else f"is {peer}'s speaker running and its link up?"
            )
            results.append(
                CheckResult(
                    "sessions",
                    name,
                    FAIL,
                    "Established",
                    f"{state}{info}",
                    f"{node.name} has no BGP session with {peer} "
                    f"({session.peer_ip}, {session.kind}); {cause}",
                    node.name,
                )
            )
        for peer_ip, seen in observed.items():
            if peer_ip not in planned and seen.get("state") == "established":
                results.append(
                    CheckResult(
                        "sessions",
                        f"session {node.name} -> {peer_ip}",
                        FAIL,
                        "no session",
                        "Established",
                        f"{node.name} has a session the plan does not have",
                        node.name,
                    )
                )
    return results


def check_rib(
    plan: LabPlan,
    agents: dict[str, dict[str, Any] | None],
    health: dict[str, NodeHealth] | None = None,
) -> list[CheckResult]:
    health = health or {}
    results = []
    for node in plan.nodes:
        dead = _dead_reason(node.name, health)
        if dead is not None:
            why = (
                f"{node.name}'s BGP table cannot be read: {dead} (its last state file is "
                "stale and is not trusted)"
            )
            results.append(_not_observed("rib", node.name, "learned best paths", why))
            continue
        agent = agents.get(node.name) or {}
        best = {p: r for p, r in reported_best_paths(agent).items() if r.get("learned_from")}
        expected = {r.prefix: r for r in node.rib if r.learned_from is not None}
        problems = []
        for prefix, want in sorted(expected.items()):
            have = best.get(prefix)
            if have is None:
                problems.append(f"missing {prefix} (block of {want.origin_node})")
                continue
            if have["next_hop"] != want.next_hop:
                problems.append(f"{prefix}: next hop {have['next_hop']}, expected {want.next_hop}")
            if (have.get("originator_id"), tuple(have.get("cluster_list", ()))) != (
                want.originator_id,
                want.cluster_list,
            ):
                problems.append(
                    f"{prefix}: ORIGINATOR_ID {have.get('originator_id')} CLUSTER_LIST "
                    f"{have.get('cluster_list')}, expected {want.originator_id} "
                    f"{list(want.cluster_list)}"
                )
        for prefix in sorted(set(best) - set(expected)):
            problems.append(
                f"unexpected {prefix} from {best[prefix]['learned_from']} (leaked or looped)"
            )
        name = f"rib {node.name}"
        if problems:
            results.append(
                CheckResult(
                    "rib",
                    name,
                    FAIL,
                    f"{len(expected)} learned best paths",
                    "; ".join(problems[:6]) + (" ..." if len(problems) > 6 else ""),
                    f"{node.name}'s BGP table differs from the plan in {len(problems)} "
                    "place(s): a missing session or a wrong reflection",
                    node.name,
                    details={"problems": problems},
                )
            )
        else:
            results.append(
                CheckResult(
                    "rib",
                    name,
                    PASS,
                    f"{len(expected)} learned best paths",
                    f"{len(best)} learned best paths",
                    node=node.name,
                )
            )
    return results


def check_fib(plan: LabPlan, fibs: dict[str, list[FibRoute]]) -> list[CheckResult]:
    pools = [p.cidr for p in plan.pools]
    results = []
    for node in plan.nodes:
        name = f"fib {node.name}"
        if node.name not in fibs:
            why = f"{node.name}'s namespace is gone, so are its routes (meshemu repair)"
            results.append(_not_observed("fib", node.name, f"{len(node.fib)} routes", why))
            continue
        diff = compare_fib(node.name, node.fib, fibs[node.name], pools)
        if diff.ok:
            results.append(
                CheckResult("fib", name, PASS, f"{len(node.fib)} routes", "equal", node=node.name)
            )
        else:
            lines = diff.describe()
            results.append(
                CheckResult(
                    "fib",
                    name,
                    FAIL,
                    f"{len(node.fib)} routes as planned",
                    "; ".join(lines[:6]) + (" ..." if len(lines) > 6 else ""),
                    f"{node.name}'s kernel routes differ from the plan "
                    f"({len(diff.missing)} missing, {len(diff.unexpected)} unexpected, "
                    f"{len(diff.wrong)} wrong)",
                    node.name,
                    details={"lines": lines},
                )
            )
    return results


def check_dataplane(cells: list[PathCell]) -> list[CheckResult]:
    results = []
    for entry in cells:
        cell = entry.cell
        name = f"ipv{cell.family} {cell.source} -> {cell.target}"
        expected = f"reachable, {PATH_WORDS.get(cell.path, cell.path)}"
        problems = []
        if cell.error:
            problems.append(f"not probed: {cell.error}")
        elif not cell.ok:
            problems.append("no ICMP echo reply")
        if entry.tcp_ok is False:
            problems.append("TCP connect failed")
        path_ok = entry.observed_path == cell.path or (
            cell.path == "direct" and entry.observed_path == "direct"
        )
        if cell.ok and not path_ok:
            problems.append(f"took {PATH_WORDS.get(entry.observed_path, entry.observed_path)}")
        observed = "reachable" if cell.ok else "unreachable"
        observed += f", {PATH_WORDS.get(entry.observed_path, entry.observed_path)}"
        if cell.rtt_ms is not None:
            observed += f", {cell.rtt_ms} ms"
        node = cell.source.split("/")[0]
        details = {
            "family": cell.family,
            "source": cell.source,
            "target": cell.target,
            "expected_path": cell.path,
            "observed_path": entry.observed_path,
            "icmp": cell.ok,
            "tcp": entry.tcp_ok,
            "rtt_ms": cell.rtt_ms,
        }
        if problems:
            results.append(
                CheckResult(
                    "dataplane",
                    name,
                    FAIL,
                    expected,
                    observed,
                    f"{cell.source} ({cell.source_ip}) to {cell.target} ({cell.target_ip}): "
                    + ", ".join(problems),
                    node,
                    details=details,
                )
            )
        else:
            results.append(
                CheckResult("dataplane", name, PASS, expected, observed, node=node, details=details)
            )
    return results


def verify_results(plan: LabPlan, observation: Observation) -> list[CheckResult]:
    # A BGP router's BIRD is the speaker at the other end of its nodes' sessions: a dead one
    # is named as the cause of theirs.
    health = {
        **observation.health,
        **{name: NodeHealth(speaker=seen.running) for name, seen in observation.routers.items()},
    }
    routers = check_routers(plan, observation.routers)
    return (
        check_health(plan, health, observation.fibd)
        + routers["health"]
        + check_sessions(plan, observation.agents, health)
        + routers["sessions"]
        + check_rib(plan, observation.agents, health)
        + routers["rib"]
        + check_fib(plan, observation.fibs)
        + routers["fib"]
        + check_dataplane(observation.matrix)
        + check_outside(plan, observation.outside)
    )
