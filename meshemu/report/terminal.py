"""A `Report` as text for a person at a terminal (at most 100 columns, plain ASCII markup).

Owns layout only: failing checks first with expected, observed and diagnosis; then a table of
nodes x check categories; then, for scenarios, the steps with the seconds each took to hold
(the convergence time after each fault); the one-line summary comes last, where the eye lands.
It must not print, colour, or decide verdicts; every fact comes from the `Report`.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

from meshemu.verify.results import FAIL, PASS, SKIP, CheckResult, Report

WIDTH = 100
STEP = "step"
LAB_WIDE = "(lab-wide)"
# The usual order of evidence: control plane first, then what the kernel and packets show.
_CATEGORY_ORDER = ("sessions", "rib", "fib", "dataplane")


def _wrap(label: str, text: str, indent: int = 4) -> list[str]:
    """`label: text`, continuation lines indented under the text, each line within WIDTH."""
    head = " " * indent + f"{label:<11}"
    pad = " " * len(head)
    lines: list[str] = []
    for i, raw in enumerate(text.splitlines() or [""]):
        prefix = head if i == 0 else pad
        wrapped = textwrap.wrap(
            raw, width=WIDTH, initial_indent=prefix, subsequent_indent=pad + "  "
        )
        lines.extend(wrapped or [prefix.rstrip()])
    return lines


def _status_word(status: str) -> str:
    return {PASS: "ok", FAIL: "FAIL", SKIP: "skip"}.get(status, status)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _failures(failed: Sequence[CheckResult]) -> list[str]:
    lines = [f"FAILED ({len(failed)}):"]
    for result in failed:
        where = f" on {result.node}" if result.node else ""
        lines += textwrap.wrap(
            f"x {result.category}{where}: {result.name}",
            width=WIDTH,
            initial_indent="  ",
            subsequent_indent="      ",
        )
        lines += _wrap("expected:", result.expected or "-")
        lines += _wrap("observed:", result.observed or "-")
        lines += _wrap("diagnosis:", result.diagnosis or "-")
    return lines


def _cell(results: Sequence[CheckResult]) -> str:
    if not results:
        return "-"
    failed = sum(1 for r in results if r.status == FAIL)
    if failed:
        return f"FAIL {failed}"
    if all(r.status == SKIP for r in results):
        return "skip"
    return "ok"


def _categories(results: Sequence[CheckResult]) -> list[str]:
    present = {r.category for r in results}
    known = [c for c in _CATEGORY_ORDER if c in present]
    return known + sorted(present - set(_CATEGORY_ORDER))


def _node_table(results: Sequence[CheckResult]) -> list[str]:
    checks = [r for r in results if r.category != STEP]
    if not checks:
        return []
    categories = _categories(checks)
    nodes = sorted({r.node for r in checks if r.node})
    rows = nodes + ([LAB_WIDE] if any(not r.node for r in checks) else [])
    cell_width = max(10, *(len(c) + 2 for c in categories))
    name_width = min(max(len(n) for n in [*rows, "node"]) + 2, 30)
    # Too many categories for the width: keep the table, let it run long, rather than hide one.
    header = "node".ljust(name_width) + "".join(c.ljust(cell_width) for c in categories)
    lines = ["checks per node:", "  " + header.rstrip()]
    for row in rows:
        cells = []
        for category in categories:
            matching = [
                r
                for r in checks
                if r.category == category and (r.node == row or (row == LAB_WIDE and not r.node))
            ]
            cells.append(_cell(matching).ljust(cell_width))
        name = row if len(row) < name_width else row[: name_width - 4] + "..."
        lines.append(("  " + name.ljust(name_width) + "".join(cells)).rstrip())
    return lines


def _step_table(results: Sequence[CheckResult]) -> list[str]:
    steps = [r for r in results if r.category == STEP]
    if not steps:
        return []
    number_width = len(str(len(steps))) + 2
    name_width = WIDTH - 2 - number_width - 8 - 10
    lines = [
        "steps (seconds = time to hold, the convergence time after a fault):",
        "  "
        + "#".ljust(number_width)
        + "step".ljust(name_width)
        + "status".ljust(8)
        + "seconds".rjust(10),
    ]
    for i, step in enumerate(steps, 1):
        name = step.name if len(step.name) < name_width - 1 else step.name[: name_width - 4] + "..."
        lines.append(
            "  "
            + str(i).ljust(number_width)
            + name.ljust(name_width)
            + _status_word(step.status).ljust(8)
            + _seconds(step.seconds).rjust(10)
        )
    return lines


def summary_line(report: Report) -> str:
    """One line: verdict, counts and the run's seconds."""
    counts = {s: sum(1 for r in report.results if r.status == s) for s in (PASS, FAIL, SKIP)}
    verdict = "OK" if report.ok else "FAILED"
    return (
        f"{report.title}: {verdict} - {counts[PASS]} passed, {counts[FAIL]} failed, "
        f"{counts[SKIP]} skipped in {report.seconds:.2f} s"
    )


def render_report(report: Report) -> str:
    """The whole report as text: failures, node x category table, steps, summary."""
    sections: list[list[str]] = []
    failed = report.failures()
    if failed:
        sections.append(_failures(failed))
    sections.append(_node_table(report.results))
    sections.append(_step_table(report.results))
    sections.append([summary_line(report)])
    return "\n\n".join("\n".join(s) for s in sections if s) + "\n"
