"""Pure checks of the routers that speak BGP: their BIRD against the plan.

Owns the verdicts on each BGP router, in `verify`'s categories: health (its BIRD runs and
answers on its control socket), sessions (each planned session, found by neighbor address in
`show protocols all`, is Established when the plan expects it up; a session that stays down
says BIRD's state and last error), RIB (each expected best path is BIRD's selected route with
the planned BGP next hop and AS path; no other BGP route inside a pool or an advertised Service
CIDR) and FIB (the routes BIRD's kernel protocol installed equal the plan's, inside the pools
and the advertised Service CIDRs, ECMP routes with every planned next hop). A router running
the user's own BIRD configuration is reported, not judged: its results are SKIP with what it
has and learned.
No I/O here.
"""

from __future__ import annotations

from meshemu.model.plan import LabPlan, RouterPlan
from meshemu.model.routes import FibRoute
from meshemu.verify.bird_output import BirdProtocol, BirdRoute
from meshemu.verify.fib import compare_fib, managed
from meshemu.verify.observation import RouterObservation
from meshemu.verify.results import FAIL, PASS, SKIP, CheckResult

CATEGORIES = ("health", "sessions", "rib", "fib")


def check_routers(
    plan: LabPlan, routers: dict[str, RouterObservation]
) -> dict[str, list[CheckResult]]:
    """Per category, the results of every BGP router."""
    out: dict[str, list[CheckResult]] = {c: [] for c in CATEGORIES}
    for router in plan.routers:
        if router.bgp is None:
            continue
        seen = routers.get(router.name, RouterObservation(running=False))
        out["health"].append(_health(router, seen))
        readable = seen.running and seen.error is None
        out["sessions"] += _sessions(router, seen, readable)
        out["rib"].append(_rib(plan, router, seen, readable))
        out["fib"].append(_fib(plan, router, seen, readable))
    return out


def _own_config(router: RouterPlan) -> bool:
    return router.bgp is not None and router.bgp.config_file is not None


def _verdict(router: RouterPlan, ok: bool) -> str:
    """PASS or FAIL; SKIP (reported, not judged) for the user's own configuration."""
    if _own_config(router):
        return SKIP
    return PASS if ok else FAIL


_OWN = "your own BIRD configuration: reported, not checked against the plan"


def _health(router: RouterPlan, seen: RouterObservation) -> CheckResult:
    name = f"health router {router.name}"
    if not seen.running:
        why = f"router {router.name}'s BIRD is not running (meshemu repair restarts it)"
        return CheckResult("health", name, FAIL, "BIRD running", "dead", why, router.name)
    if seen.error is not None:
        why = f"router {router.name}'s BIRD does not answer on its control socket: {seen.error}"
        return CheckResult("health", name, FAIL, "BIRD answering", "no answer", why, router.name)
    return CheckResult("health", name, PASS, "BIRD running", "running", node=router.name)


def _sessions(router: RouterPlan, seen: RouterObservation, readable: bool) -> list[CheckResult]:
    assert router.bgp is not None
    by_neighbor = {p.neighbor_address: p for p in seen.protocols if p.proto == "BGP"}
    up = set(router.bgp.expected_up)
    results = []
    for session in router.bgp.sessions:
        name = f"session {router.name} -> {session.peer_ip}"
        if not readable:
            results.append(
                CheckResult(
                    "sessions",
                    name,
                    FAIL,
                    "Established",
                    "not observed",
                    f"router {router.name}'s BIRD cannot be read",
                    router.name,
                )
            )
            continue
        protocol = by_neighbor.get(session.peer_ip)
        observed = _state_text(protocol)
        if session.peer_ip not in up:
            # Up where the plan says it stays down (a password it expects to differ, an AS
            # it expects not to match): the plan is wrong about this lab, a failure.
            if protocol is not None and protocol.established and not _own_config(router):
                why = "the plan expects this session to stay down, yet BIRD has it Established"
                verdict = FAIL
            else:
                why = "the plan does not expect it to come up (see the plan's router sessions)"
                verdict = SKIP
            results.append(
                CheckResult("sessions", name, verdict, "down", observed, why, router.name)
            )
            continue
        ok = protocol is not None and protocol.established
        why = "" if ok else _down_reason(router, session.peer_name, protocol)
        if _own_config(router):
            why = _OWN + (f"; {why}" if why else "")
        results.append(
            CheckResult(
                "sessions", name, _verdict(router, ok), "Established", observed, why, router.name
            )
        )
    return results


def _state_text(protocol: BirdProtocol | None) -> str:
    if protocol is None:
        return "no such BGP protocol in BIRD"
    text = protocol.bgp_state or protocol.state
    if protocol.last_error:
        text += f" ({protocol.last_error})"
    return text


def _down_reason(router: RouterPlan, peer: str, protocol: BirdProtocol | None) -> str:
    if protocol is None:
        return f"router {router.name}'s BIRD has no session with {peer}"
    if protocol.bgp_state in ("Connect", "Active") and not protocol.last_error:
        # A TCP MD5 mismatch shows as nothing at all: the peer's segments are dropped.
        return (
            f"router {router.name} cannot open the session with {peer}: is {peer}'s speaker "
            "running, and do both sides use the same password?"
        )
    return f"router {router.name}'s session with {peer} is {_state_text(protocol)}"


def _selected_bgp(seen: RouterObservation) -> dict[str, BirdRoute]:
    return {r.prefix: r for r in seen.routes if r.selected and r.source == "BGP"}


def _rib(plan: LabPlan, router: RouterPlan, seen: RouterObservation, readable: bool) -> CheckResult:
    assert router.bgp is not None
    name = f"rib router {router.name}"
    expected = f"{len(router.bgp.routes)} BGP best paths"
    if not readable:
        why = f"router {router.name}'s BIRD cannot be read"
        return CheckResult("rib", name, FAIL, expected, "not observed", why, router.name)
    selected = _selected_bgp(seen)
    held = {(r.prefix, r.bgp_next_hop) for r in seen.routes if r.source == "BGP"}
    planned = {r.prefix for r in router.bgp.routes}
    problems = []
    for want in router.bgp.routes:
        have = selected.get(want.prefix)
        if have is None:
            problems.append(f"missing {want.prefix}")
            continue
        # An ECMP route's other next hops come from paths BIRD holds beside the best one.
        problems += [
            f"{want.prefix}: no path with next hop {hop.next_hop} to merge (ECMP)"
            for hop in want.multipath
            if (want.prefix, hop.next_hop) not in held
        ]
        if have.bgp_next_hop != want.next_hop:
            hop = f"next hop {have.bgp_next_hop}, expected {want.next_hop}"
            problems.append(f"{want.prefix}: {hop}")
        if have.as_path is not None and have.as_path != want.as_path:
            problems.append(
                f"{want.prefix}: AS path {list(have.as_path)}, expected {list(want.as_path)}"
            )
    for prefix in _in_pools(plan, set(selected) - planned):
        problems.append(f"unexpected {prefix} from {selected[prefix].from_address or '?'}")
    observed = "as planned" if not problems else "; ".join(problems[:6])
    if len(problems) > 6:
        observed += f" (+{len(problems) - 6} more)"
    if _own_config(router):
        observed = f"learned {len(selected)} BGP routes: " + ", ".join(sorted(selected)[:12])
        return CheckResult("rib", name, SKIP, expected, observed, _OWN, router.name)
    ok = not problems
    why = "" if ok else f"router {router.name}'s BGP table differs from the plan"
    return CheckResult("rib", name, PASS if ok else FAIL, expected, observed, why, router.name)


def _scope(plan: LabPlan) -> list[str]:
    """The prefixes whose routes Calico's nodes announce: the pools' and the advertised
    Service CIDRs (a LoadBalancer's /32 lies in its CIDR)."""
    services = plan.services.advertised_cidrs() if plan.services is not None else ()
    return [p.cidr for p in plan.pools] + list(services)


def _in_pools(plan: LabPlan, prefixes: set[str]) -> list[str]:
    """Those of `prefixes` inside the lab's pools or advertised Service CIDRs (`_scope`),
    sorted as the FIB comparison decides it."""
    routes = [FibRoute(p, "blackhole") for p in sorted(prefixes)]
    return [r.prefix for r in managed(routes, _scope(plan))]


def _fib(plan: LabPlan, router: RouterPlan, seen: RouterObservation, readable: bool) -> CheckResult:
    assert router.bgp is not None
    name = f"fib router {router.name}"
    expected = f"{len(router.bgp.routes)} BGP routes installed"
    if not seen.running and not seen.fib:
        why = f"router {router.name}'s BIRD is not running, so it installs nothing"
        return CheckResult("fib", name, FAIL, expected, "not observed", why, router.name)
    diff = compare_fib(router.name, router.bgp.fib(), list(seen.fib), _scope(plan))
    if _own_config(router):
        got = managed(seen.fib, _scope(plan))
        observed = f"{len(got)} routes to pod addresses: " + ", ".join(r.text() for r in got[:8])
        return CheckResult("fib", name, SKIP, expected, observed, _OWN, router.name)
    if diff.ok:
        return CheckResult("fib", name, PASS, expected, "as planned", node=router.name)
    lines = diff.describe()
    return CheckResult(
        "fib",
        name,
        FAIL,
        expected,
        f"{len(diff.missing)} missing, {len(diff.unexpected)} unexpected, {len(diff.wrong)} wrong",
        f"router {router.name}'s kernel routes differ from what BIRD should have installed",
        router.name,
        details={"lines": lines},
    )
