"""When the convergence wait reads a pending node's FIB again (`converge._Watched`), and which
prefixes a difference waits for (`FibDiff.awaited`)."""

from __future__ import annotations

from meshemu.dataplane.netlink import RouteEvent
from meshemu.lab.converge import QUIET, RECHECK, _Watched
from meshemu.model.routes import FibRoute
from meshemu.verify.fib import FibDiff, compare_fib

POOLS = ["10.244.0.0/16", "fd00:244::/48"]
BLOCK_A = FibRoute("10.244.1.0/26", "unicast", "10.0.0.2", "eth0", source="bird")
BLOCK_B = FibRoute("10.244.2.0/26", "unicast", "10.0.0.3", "eth0", source="bird")
BLOCK_C = FibRoute("10.244.3.0/26", "unicast", "10.0.0.4", "eth0", source="bird")


def _diff(expected: list[FibRoute], observed: list[FibRoute]) -> FibDiff:
    return compare_fib("n1", expected, observed, POOLS)


def _event(prefix: str, seen: float) -> RouteEvent:
    return RouteEvent("n1", True, prefix, seen)


def test_a_difference_awaits_its_missing_and_wrong_prefixes_not_its_unexpected_ones() -> None:
    moved = FibRoute("10.244.2.0/26", "unicast", "10.0.0.9", "eth0", source="bird")
    diff = _diff([BLOCK_A, BLOCK_B], [moved, BLOCK_C])
    assert diff.awaited() == {"10.244.1.0/26", "10.244.2.0/26"}
    assert _diff([BLOCK_A], [BLOCK_A, BLOCK_C]).awaited() == frozenset()


def test_a_node_never_read_is_due_at_once() -> None:
    assert _Watched().due(100.0)


def test_a_node_waiting_for_prefixes_is_not_read_until_each_has_changed() -> None:
    watched = _Watched()
    watched.read(_diff([BLOCK_A, BLOCK_B], []), 100.0)
    watched.saw(_event("10.244.1.0/26", 100.1))
    watched.saw(_event("10.244.3.0/26", 100.2))  # not awaited
    assert not watched.due(100.0 + RECHECK * 10)  # still waits for 10.244.2.0/26


def test_a_node_whose_awaited_prefixes_all_changed_is_read_once_quiet() -> None:
    watched = _Watched()
    watched.read(_diff([BLOCK_A, BLOCK_B], []), 100.0)
    watched.saw(_event("10.244.1.0/26", 100.1))
    watched.saw(_event("10.244.2.0/26", 100.2))
    assert not watched.due(100.2 + QUIET / 2)  # still being written
    assert watched.due(100.2 + QUIET)


def test_lost_events_make_every_awaited_prefix_possible() -> None:
    watched = _Watched()
    watched.read(_diff([BLOCK_A, BLOCK_B], []), 100.0)
    watched.saw(_event("", 101.0))
    assert watched.due(101.0 + QUIET)


def test_a_node_with_only_unexpected_routes_is_read_again_after_recheck() -> None:
    """The kernel flushes IPv4 routes of a device that goes down without an event."""
    watched = _Watched()
    watched.read(_diff([BLOCK_A], [BLOCK_A, BLOCK_C]), 100.0)
    assert not watched.due(100.0 + RECHECK / 2)
    assert watched.due(100.0 + RECHECK)
