"""The convergence-time plot of a scenario run (matplotlib), written beside its reports.

Owns the picture `meshemu run` attaches to its report: one horizontal bar per step, as long as
the step took (for an expectation: the time until it held, the convergence time after the
fault before it; for an action: the time the action took), coloured by what the step was and
whether it held. Written whole or not at all (`report.figures.write_figure`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.patches import Patch

from meshemu.report.figures import check_output, write_figure
from meshemu.verify.results import FAIL, SKIP, Report

COLOURS = {"held": "#2ca02c", "failed": "#d62728", "action": "#9e9e9e", "skipped": "#dddddd"}
WORDS = {
    "held": "expectation held after",
    "failed": "expectation failed after",
    "action": "action took",
    "skipped": "not run",
}


def plot_path(report_file: str) -> Path:
    """Where the plot of a run goes: beside its report file, `<report>.convergence.svg`."""
    path = Path(report_file)
    return path.with_name(f"{path.stem}.convergence.svg")


def step_kind(status: str, is_expectation: bool) -> str:
    if status == SKIP:
        return "skipped"
    if not is_expectation:
        return "action" if status != FAIL else "failed"
    return "failed" if status == FAIL else "held"


def plot_convergence(report: Report, expectations: Sequence[bool], path: Path) -> None:
    """Draw the time of each step of `report` (`expectations[i]`: step i is an expectation)."""
    check_output(path)
    steps = [r for r in report.results if r.category == "step"]
    kinds = [
        step_kind(r.status, i < len(expectations) and expectations[i]) for i, r in enumerate(steps)
    ]
    seconds = [r.seconds or 0.0 for r in steps]
    fig = Figure(figsize=(10, 1.2 + 0.38 * max(1, len(steps))))
    ax = fig.subplots()
    rows = list(range(len(steps)))
    ax.barh(rows, seconds, color=[COLOURS[k] for k in kinds], edgecolor="#555555", height=0.7)
    ax.set_yticks(rows, [_short(r.name) for r in steps], fontsize=8)
    ax.invert_yaxis()  # step 1 on top
    for row, value, kind in zip(rows, seconds, kinds, strict=True):
        if kind != "skipped":
            ax.annotate(
                f"{value:.2f} s", (value, row), xytext=(4, 0), textcoords="offset points",
                va="center", fontsize=8,
            )  # fmt: skip
    ax.set_xlabel("seconds (an expectation: until it held, i.e. the convergence time)")
    total = sum(seconds)
    ax.set_title(
        f"{report.title}: time per step ({'passed' if report.ok else 'FAILED'}, "
        f"{total:.1f} s in steps)",
        fontsize=10,
    )
    ax.margins(x=0.15)
    used = list(dict.fromkeys(kinds))
    ax.legend(
        handles=[Patch(color=COLOURS[k], label=WORDS[k]) for k in used],
        loc="lower right",
        fontsize=8,
    )
    write_figure(fig, path)


def _short(name: str, limit: int = 70) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"
