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
from dataclasses import dataclass, field
from typing import Any

from meshemu.dataplane.netlink import RouteEvent, RouteWatch, read_fib
from meshemu.model.plan import LabPlan, NodePlan, RouterPlan
from meshemu.model.routes import FibRoute
from meshemu.state import LabState
from meshemu.verify.fib import FibDiff, compare_fib
from meshemu.verify.observation import reported_sessions
from meshemu.verify.observe import asked_agent_states, node_state


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


def _reports_expected_sessions(node: NodePlan, reported: dict[str, Any] | None) -> bool:
    """The node's state names every session the plan expects up as established."""
    sessions = reported_sessions(reported)
    seen = {peer for peer, s in sessions.items() if s.get("state") == "established"}
    return set(node.expected_up) <= seen


def _wait_sessions_reported(plan: LabPlan, state: LabState, deadline: float) -> None:
    """Until every node reports its expected sessions (an agent is asked to write its state,
    which it otherwise writes less often the busier the machine; a node that has reported is
    not asked again), or the deadline."""
    left = list(plan.nodes)
    while True:
        agents = asked_agent_states(state, [n.name for n in left if n.speaker == "exabgp"])
        left = [
            node
            for node in left
            if not _reports_expected_sessions(
                node, agents[node.name] if node.name in agents else node_state(state, node, False)
            )
        ]
        if not left or time.monotonic() >= deadline:
            return
        time.sleep(0.1)


@dataclass
class _Watched:
    """What the wait knows of one pending node's FIB since it last read it."""

    last_read: float = 0.0  # time.monotonic(); 0: not read yet
    last_event: float = 0.0
    # Prefixes found missing or wrong by the last read with no route event since: the FIB
    # cannot equal the plan before each has one (`FibDiff.awaited`).
    awaited: set[str] = field(default_factory=set)

    def due(self, now: float) -> bool:
        """Worth reading now: never read, or every awaited prefix changed and the table has
        been quiet for QUIET, or RECHECK passed (the kernel flushes IPv4 routes silently).
        With a prefix awaited, never: the FIB cannot be right yet, and at the deadline every
        FIB is read whatever (`wait_converged`), so a wrong guess costs time, never a result."""
        if not self.last_read:
            return True
        if self.awaited:
            return False
        quiet = self.last_event >= self.last_read and now - self.last_event >= QUIET
        return quiet or now - self.last_read >= RECHECK

    def read(self, diff: FibDiff, when: float) -> None:
        self.last_read = when
        self.awaited = set(diff.awaited())

    def saw(self, event: RouteEvent) -> None:
        self.last_event = event.seen
        if event.prefix:
            self.awaited.discard(event.prefix)
        else:  # events were lost: any prefix may have changed
            self.awaited.clear()


def wait_converged(plan: LabPlan, state: LabState, seconds: float) -> list[FibDiff]:
    """Wait until every FIB equals the plan; returns the differences left ([] = converged).

    Reading a hundred 400-route tables takes about a core-second, and every read takes CPU
    from the speakers the lab waits for (reading each changed table after 0.2 s of quiet took
    19 s of the CLI's CPU while a 100-node ExaBGP mesh converged). So a node's FIB is read
    again only when it can have become right (`_Watched.due`), which the route events of every
    namespace (`netlink.RouteWatch`) tell. Once no node is pending, every node is confirmed once
    more. Then also waits (within the same time) until the agents report their sessions, so
    `status` right after agrees.
    """
    deadline = time.monotonic() + seconds
    everyone: list[NodePlan | RouterPlan] = [*plan.nodes, *checked_routers(plan)]
    by_netns = {n.netns: n for n in everyone}
    with _watch(list(by_netns)) as watch:
        pending = {netns: _Watched() for netns in by_netns}
        while True:
            for netns, watched in sorted(pending.items()):
                if watched.due(time.monotonic()):
                    when = time.monotonic()
                    diff = fib_diff(plan, by_netns[netns])
                    if diff.ok:
                        del pending[netns]
                    watched.read(diff, when)
            if not pending:
                pending = _confirm_all(plan, everyone)
                if not pending:
                    break
            if time.monotonic() > deadline:
                return [d for d in fib_diffs(plan) if not d.ok]
            for event in watch.poll(QUIET):
                if event.netns in pending:
                    pending[event.netns].saw(event)
    _wait_sessions_reported(plan, state, deadline)
    return []


def _confirm_all(plan: LabPlan, everyone: list[NodePlan | RouterPlan]) -> dict[str, _Watched]:
    """Every FIB read once more: the nodes found wrong, pending again."""
    when = time.monotonic()
    pending = {}
    for node, diff in zip(everyone, fib_diffs(plan), strict=True):
        if not diff.ok:
            pending[node.netns] = watched = _Watched()
            watched.read(diff, when)
    return pending


QUIET = 0.2  # seconds without a route event before a changed FIB is read again
RECHECK = 3.0  # seconds: a pending node with nothing awaited is read at least this often


@contextlib.contextmanager
def _watch(namespaces: list[str]) -> Iterator[RouteWatch]:
    watch = RouteWatch(namespaces)
    try:
        yield watch
    finally:
        watch.close()
