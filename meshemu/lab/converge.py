"""Convergence: does every node's kernel FIB equal the plan, and has every agent said so?

Owns the wait `up` and live changes make until the running lab matches its plan: FIBs read from
the kernel (`dataplane.netlink.read_fib`), compared with `verify.fib.compare_fib`, and the
agents' session reports read from the state folder (a BIRD node's from its BIRD daemons,
`verify.observe.node_state`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from meshemu.dataplane.netlink import read_fib
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
        reported = reported_sessions(node_state(state, node))
        seen = {peer for peer, s in reported.items() if s.get("state") == "established"}
        if not set(node.expected_up) <= seen:
            return False
    return True


def wait_converged(plan: LabPlan, state: LabState, seconds: float) -> list[FibDiff]:
    """Wait until every FIB equals the plan; returns the differences left ([] = converged).

    Polls only the nodes not converged yet (reading 50 kernels ten times a second would steal
    the CPU the speakers need), then confirms every node once more. Once the FIBs agree, also
    waits (within the same time) until the agents report their sessions, so `status` right
    after agrees.
    """
    deadline = time.monotonic() + seconds
    pause = 0.1 if len(plan.nodes) <= 10 else 0.25
    everyone: list[NodePlan | RouterPlan] = [*plan.nodes, *checked_routers(plan)]
    pending = everyone
    while True:
        pending = [n for n in pending if not fib_diff(plan, n).ok]
        if not pending:
            diffs = fib_diffs(plan)
            if all(d.ok for d in diffs):
                break
            pending = [n for n, d in zip(everyone, diffs, strict=True) if not d.ok]
        if time.monotonic() > deadline:
            return [d for d in fib_diffs(plan) if not d.ok]
        time.sleep(pause)
    while not sessions_reported(plan, state) and time.monotonic() < deadline:
        time.sleep(0.05)
    return []
