"""Expected vs observed FIB of one node (pure).

Owns the comparison `up` waits on and `verify` reports: only routes meshemu and Calico manage
are compared (prefixes inside the lab's pools: blackholes, learned blocks, pod host routes);
the node's connected and default routes are not Calico's and are left out.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from meshemu.model.routes import FibRoute


@dataclass(frozen=True)
class FibDiff:
    node: str
    missing: tuple[FibRoute, ...]  # expected, absent
    unexpected: tuple[FibRoute, ...]  # present, not expected
    wrong: tuple[tuple[FibRoute, FibRoute], ...]  # (expected, observed) for the same prefix

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.wrong)

    def describe(self) -> list[str]:
        lines = [f"{self.node}: missing {r.text()}" for r in self.missing]
        lines += [f"{self.node}: unexpected {r.text()}" for r in self.unexpected]
        lines += [
            f"{self.node}: {e.prefix} expected '{e.text()}', observed '{o.text()}'"
            for e, o in self.wrong
        ]
        return lines


def managed(routes: Iterable[FibRoute], pool_cidrs: Sequence[str]) -> list[FibRoute]:
    pools = [ipaddress.ip_network(c) for c in pool_cidrs]
    out = []
    for route in routes:
        network = ipaddress.ip_network(route.prefix)
        if any(
            p.version == network.version and network.subnet_of(p)  # type: ignore[arg-type]
            for p in pools
        ):
            out.append(route)
    return out


def compare_fib(
    node: str, expected: Iterable[FibRoute], observed: Iterable[FibRoute], pool_cidrs: Sequence[str]
) -> FibDiff:
    want = {r.prefix: r for r in managed(expected, pool_cidrs)}
    have = {r.prefix: r for r in managed(observed, pool_cidrs)}
    missing = tuple(want[p] for p in sorted(want) if p not in have)
    unexpected = tuple(have[p] for p in sorted(have) if p not in want)
    wrong = tuple(
        (want[p], have[p]) for p in sorted(want) if p in have and want[p].key() != have[p].key()
    )
    return FibDiff(node, missing, unexpected, wrong)
