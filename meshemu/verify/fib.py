"""Expected vs observed FIB of one node (pure).

Owns the comparison `up` waits on and `verify` reports, per prefix and writer (Felix, BIRD or
the node's own routes, told apart by kernel protocol): only routes meshemu and Calico manage
are compared (prefixes inside the lab's pools: blackholes, learned blocks, pod host routes);
the node's connected and default routes are not Calico's and are left out.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from meshemu.model.routes import FibRoute, parsed_network


@dataclass(frozen=True)
class FibDiff:
    node: str
    missing: tuple[FibRoute, ...]  # expected, absent
    unexpected: tuple[FibRoute, ...]  # present, not expected
    wrong: tuple[tuple[FibRoute, FibRoute], ...]  # (expected, observed) for the same prefix

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.wrong)

    def awaited(self) -> frozenset[str]:
        """The prefixes the kernel must add a route to before this FIB can equal the plan:
        every missing and every wrong one. Only an unexpected route can go without an event of
        its prefix (the kernel flushes the IPv4 routes of a device that goes down silently)."""
        return frozenset(r.prefix for r in self.missing) | {e.prefix for e, _o in self.wrong}

    def describe(self) -> list[str]:
        lines = [f"{self.node}: missing {r.text()}" for r in self.missing]
        lines += [f"{self.node}: unexpected {r.text()}" for r in self.unexpected]
        lines += [
            f"{self.node}: {e.prefix} expected '{e.text()}'{_by(e)}, observed '{o.text()}'{_by(o)}"
            for e, o in self.wrong
        ]
        return lines


def _by(route: FibRoute) -> str:
    return f" by {route.source}" if route.source else " by another protocol"


def managed(routes: Iterable[FibRoute], pool_cidrs: Sequence[str]) -> list[FibRoute]:
    pools = tuple(pool_cidrs)
    return [route for route in routes if _in_pools(route.prefix, pools)]


@functools.lru_cache(maxsize=65536)
def _in_pools(prefix: str, pool_cidrs: tuple[str, ...]) -> bool:
    """Cached: `up` compares every node's table again and again while the lab converges."""
    network = parsed_network(prefix)
    return any(
        p.version == network.version and network.subnet_of(p)  # type: ignore[arg-type]
        for p in map(parsed_network, pool_cidrs)
    )


def compare_fib(
    node: str, expected: Iterable[FibRoute], observed: Iterable[FibRoute], pool_cidrs: Sequence[str]
) -> FibDiff:
    """Routes are compared per prefix and writer (`source`): Felix's and BIRD's route to the
    same prefix are two kernel routes (different metrics). A route present under another
    writer than the plan's is reported as wrong (expected, observed), not as two problems."""
    want = {(r.prefix, r.source): r for r in managed(expected, pool_cidrs)}
    have = {(r.prefix, r.source): r for r in managed(observed, pool_cidrs)}
    missing = [want[k] for k in sorted(want) if k not in have]
    unexpected = [have[k] for k in sorted(have) if k not in want]
    wrong = [
        (want[k], have[k]) for k in sorted(want) if k in have and want[k].key() != have[k].key()
    ]
    # The same prefix missing from one writer and present from another: the wrong programmer.
    extra = {r.prefix: r for r in unexpected}
    for route in list(missing):
        other = extra.pop(route.prefix, None)
        if other is not None:
            missing.remove(route)
            unexpected.remove(other)
            wrong.append((route, other))
    return FibDiff(node, tuple(missing), tuple(unexpected), tuple(wrong))
