"""Convergence: does every node's kernel FIB equal the plan, and has every agent said so?

Owns the wait `up` and live changes make until the running lab matches its plan: FIBs read from
the kernel (`dataplane.netlink.read_fib`), compared with `verify.fib.compare_fib`, and the
agents' session reports read from the state folder (a BIRD node's from its BIRD daemons,
`verify.observe.node_state`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence

from meshemu.dataplane.netlink import RouteWatch, read_fib
from meshemu.model.plan import LabPlan, NodePlan, RouterPlan
from meshemu.model.routes import FibRoute
from meshemu.state import LabState
from meshemu.verify.fib import FibDiff, compare_fib
from meshemu.verify.observation import reported_sessions
from meshemu.verify.observe import node_state


def fib_diff(plan: LabPlan, node: NodePlan | RouterPlan) -> FibDiff:
    """A node's FIB, or the BGP routes a router's BIRD installed, against the plan."""
    if isinstance(node, RouterPlan):
        assert node.bgp is not None
        expected: Sequence[FibRoute] = node.bgp.fib()
    else:
        expected = node.fib
    return compare_fib(node.name, expected, read_fib(node.netns), [p.cidr for p in plan.pools])


def checked_routers(plan: LabPlan) -> list[RouterPlan]:
    """The routers whose FIB the plan decides: BIRD with meshemu's configuration (a user's own
    configuration may install anything: `verify` reports it, nothing waits for it)."""
    return [r for r in plan.routers if r.bgp is not None and r.bgp.config_file is None]


def fib_diffs(plan: LabPlan) -> list[FibDiff]:
    everyone: list[NodePlan | RouterPlan] = [*plan.nodes, *checked_routers(plan)]
    return [fib_diff(plan, n) for n in everyone]


def sessions_reported(plan: LabPlan, state: LabState) -> bool:
    """Every agent has written every session the plan expects up as established."""
    for node in plan.nodes:
        reported = reported_sessions(node_state(state, node, routes=False))
        seen = {peer for peer, s in reported.items() if s.get("state") == "established"}
        if not set(node.expected_up) <= seen:
            return False
    return True


def wait_converged(plan: LabPlan, state: LabState, seconds: float) -> list[FibDiff]:
    """Wait until every FIB equals the plan; returns the differences left ([] = converged).

    A node's FIB is read again only once its kernel reported route changes since the last read
    (route events from every namespace, `netlink.RouteWatch`) and then none for `QUIET` seconds
    (it is still being written meanwhile), and every `RECHECK` seconds whatever (IPv4 routes
    the kernel flushes send no event). Reading a hundred 400-route tables takes about a
    core-second: polling them all four times a second took the CPU the speakers needed to
    converge. Once no node is pending, every node is confirmed once more. Then also waits
    (within the same time) until the agents report their sessions, so `status` right after
    agrees.
    """
    deadline = time.monotonic() + seconds
    everyone: list[NodePlan | RouterPlan] = [*plan.nodes, *checked_routers(plan)]
    by_netns = {n.netns: n for n in everyone}
    with _watch(list(by_netns)) as watch:
        pending = set(by_netns)
        changed = dict.fromkeys(pending, 0.0)  # netns -> when its last route event came
        read = dict.fromkeys(pending, 0.0)  # netns -> when its FIB was last read
        while True:
            now = time.monotonic()
            for netns in sorted(pending):
                quiet = now - changed[netns] >= QUIET and changed[netns] >= read[netns]
                if quiet or now - read[netns] >= RECHECK:
                    read[netns] = time.monotonic()
                    if fib_diff(plan, by_netns[netns]).ok:
                        pending.discard(netns)
            if not pending:
                diffs = fib_diffs(plan)
                if all(d.ok for d in diffs):
                    break
                pending = {n.netns for n, d in zip(everyone, diffs, strict=True) if not d.ok}
            if time.monotonic() > deadline:
                return [d for d in fib_diffs(plan) if not d.ok]
            for event in watch.poll(QUIET):
                changed[event.netns] = event.seen
    while not sessions_reported(plan, state) and time.monotonic() < deadline:
        time.sleep(0.05)
    return []


QUIET = 0.2  # seconds without a route event before a changed FIB is read again
RECHECK = 3.0  # seconds: every pending node's FIB is read at least this often


@contextlib.contextmanager
def _watch(namespaces: list[str]) -> Iterator[RouteWatch]:
    watch = RouteWatch(namespaces)
    try:
        yield watch
    finally:
        watch.close()
