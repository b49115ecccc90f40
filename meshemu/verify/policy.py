"""Pure checks of network policy: the plan's verdict of every probe against what it did.

Owns the `policy` results of `verify` and of a scenario's `matrix` expectation in a lab with
policies: every cell of the expected matrix (`model.policy_eval.expected_matrix`: an ICMP echo
and each declared port, per family, pod to pod) passes when an allowed probe got through AND
when a denied probe did not; a denied probe that got through is a failure ("not enforced"),
as is an allowed one that got no answer. The path checks of `dataplane` stay, for the cells
whose echo the plan allows (a denied echo has no path to take). No I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from meshemu.model.policy_eval import ExpectedCell
from meshemu.verify.checks import check_dataplane
from meshemu.verify.observation import PathCell
from meshemu.verify.results import FAIL, PASS, SKIP, CheckResult

CATEGORY = "policy"
Seen = Mapping[tuple[str, str, int, str], bool | str]


def _echo(source: str, target: str, family: int) -> tuple[str, str, int, str]:
    return (source, target, family, "echo")


def icmp_seen(matrix: Sequence[PathCell]) -> dict[tuple[str, str, int, str], bool | str]:
    """The echoes of the dataplane matrix: answered, or why they were not sent."""
    out: dict[tuple[str, str, int, str], bool | str] = {}
    for entry in matrix:
        cell = entry.cell
        out[_echo(cell.source, cell.target, cell.family)] = (
            f"not probed: {cell.error}" if cell.error else cell.ok
        )
    return out


def seen_of(cell: ExpectedCell, icmp: Seen, ports: Seen) -> bool | str | None:
    if cell.packet.icmp_type is not None:
        return icmp.get(_echo(cell.source, cell.target, cell.family))
    return ports.get(cell.key)


def judge(cell: ExpectedCell, seen: bool | str | None) -> CheckResult:
    """One probe: its verdict in the plan against what it did."""
    what = f"{cell.packet.text()}"
    name = f"ipv{cell.family} {cell.source} -> {cell.target} {what}"
    expected = f"{'allowed' if cell.allowed else 'denied'}: {cell.reason}"
    details = {
        "family": cell.family,
        "source": cell.source,
        "target": cell.target,
        "probe": what,
        "allowed": cell.allowed,
        "passed": seen if isinstance(seen, bool) else None,
    }
    node = cell.source.split("/")[0]
    if seen is None or isinstance(seen, str):
        why = seen or "not probed"
        return CheckResult(CATEGORY, name, SKIP, expected, why, why, node, details=details)
    observed = "got through" if seen else "dropped (no answer)"
    if seen == cell.allowed:
        return CheckResult(CATEGORY, name, PASS, expected, observed, node=node, details=details)
    if seen:
        diagnosis = (
            f"{cell.source} ({cell.source_ip}) reached {cell.target} ({cell.target_ip}) by "
            f"{what}, which the plan denies ({cell.reason}): the policy is not enforced"
        )
    else:
        diagnosis = (
            f"{cell.source} ({cell.source_ip}) could not reach {cell.target} "
            f"({cell.target_ip}) by {what}, which the plan allows ({cell.reason})"
        )
    return CheckResult(CATEGORY, name, FAIL, expected, observed, diagnosis, node, details=details)


def check_policy(
    cells: Sequence[ExpectedCell], matrix: Sequence[PathCell], ports: Seen
) -> list[CheckResult]:
    icmp = icmp_seen(matrix)
    return [judge(cell, seen_of(cell, icmp, ports)) for cell in cells]


def allowed_echoes(cells: Sequence[ExpectedCell], matrix: Sequence[PathCell]) -> list[PathCell]:
    """The dataplane cells whose echo the plan allows (their paths are still checked)."""
    allowed = {
        _echo(c.source, c.target, c.family)
        for c in cells
        if c.packet.icmp_type is not None and c.allowed
    }
    return [e for e in matrix if _echo(e.cell.source, e.cell.target, e.cell.family) in allowed]


def with_policy(
    cells: Sequence[ExpectedCell],
    results: Sequence[CheckResult],
    matrix: Sequence[PathCell],
    ports: Seen,
) -> list[CheckResult]:
    """`verify`'s results in a lab with policy (`cells`: its expected matrix): the dataplane
    results of the allowed echoes only, and a policy result per probe."""
    kept = [r for r in results if r.category != "dataplane"]
    dataplane = check_dataplane(allowed_echoes(cells, matrix)) if matrix else []
    return kept + dataplane + (check_policy(cells, matrix, ports) if matrix else [])
