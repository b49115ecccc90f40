"""The policy matrix as text: per family, every pod against every pod, one mark per probe.

Owns layout only, from the `policy` results of a report (`verify.policy`): each cell holds one
mark per probe sent to the target, the ICMP echo first, then its declared ports in order:
`+` allowed and it got through, `.` denied and it was dropped, `X` denied but it got through
(the policy is not enforced), `!` allowed but dropped, `?` not probed. It decides nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from meshemu.verify.results import CheckResult

MARKS = "+ allowed, got through; . denied, dropped; X denied but got through; ! allowed, dropped"


def _mark(result: CheckResult) -> str:
    passed, allowed = result.details.get("passed"), result.details.get("allowed")
    if passed is None:
        return "?"
    if allowed:
        return "+" if passed else "!"
    return "X" if passed else "."


def _probe(result: CheckResult) -> str:
    """The probe's name, the same in both families (the echo is ICMP or ICMPv6)."""
    probe = str(result.details["probe"])
    return "echo" if probe.startswith("ICMP") else probe


def render_policy_matrix(results: Sequence[CheckResult]) -> str:
    """The matrix of the report's `policy` results; "" when it has none."""
    cells = [r for r in results if r.category == "policy"]
    if not cells:
        return ""
    pods: list[str] = []
    probes: dict[str, list[str]] = {}
    for r in cells:
        for pod in (r.details["source"], r.details["target"]):
            if pod not in pods:
                pods.append(pod)
        seen = probes.setdefault(r.details["target"], [])
        if _probe(r) not in seen:
            seen.append(_probe(r))
    width = max(len(p) for p in probes.values()) + 1
    name_width = max(len(p) for p in pods) + 4
    lines = []
    for family in (4, 6):
        by_cell: dict[tuple[str, str], dict[str, str]] = {}
        for r in cells:
            if r.details["family"] == family:
                key = (r.details["source"], r.details["target"])
                by_cell.setdefault(key, {})[_probe(r)] = _mark(r)
        if not by_cell:
            continue
        lines.append(f"IPv{family} network policy, one mark per probe (echo, then each port)")
        lines.append(" " * name_width + "".join(str(i + 1).ljust(width) for i in range(len(pods))))
        for i, source in enumerate(pods):
            row = []
            for target in pods:
                got = by_cell.get((source, target))
                text = "".join(got.get(p, "?") for p in probes.get(target, [])) if got else ""
                row.append((text or " ").ljust(width))
            lines.append(f"{i + 1:>2} {source:<{name_width - 3}}" + "".join(row).rstrip())
    lines.append(f"marks: {MARKS}")
    lines.append(
        "probes per target: " + "; ".join(f"{t}: {', '.join(p)}" for t, p in probes.items())
    )
    return "\n".join(lines)
