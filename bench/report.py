"""The benchmark's results: medians and spread, ratios to BIRD, the Markdown table, the plot.

Owns turning the runs (`bench.measure.Run.to_json`) into the summary kept in `results.json`,
and rendering that JSON, and only it, into `table.md` and `bench.png`: the documentation's
figures are the benchmark's own output, re-rendered with `--render results.json`.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

FIGURES = (
    "plan",
    "dataplane",
    "speakers",
    "converged",
    "up",
    "verify",
    "withdraw",
    "announce",
    "down",
    "rss_mb",
    "pss_mb",
    "idle_cpu",
    "up_cpu",
)
KIND_TITLE = {"mesh": "full mesh", "rr": "2 reflectors", "floor": "dataplane only"}


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, minimum, maximum and count of a figure over the repetitions."""
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
        "n": len(values),
    }


def summarize(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (kind, nodes, speaker): each figure's spread over the runs that measured
    it, how many runs converged, and the ratio of each median to BIRD's on the same lab."""
    groups: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["kind"], run["nodes"], run["speaker"]), []).append(run)
    rows: list[dict[str, Any]] = []
    for (kind, nodes, speaker), members in sorted(groups.items(), key=_order):
        figures = {}
        for name in FIGURES:
            values = [m["figures"][name] for m in members if name in m["figures"]]
            if values:
                figures[name] = spread(values)
        row: dict[str, Any] = {
            "kind": kind,
            "nodes": nodes,
            "speaker": speaker,
            "runs": len(members),
            "converged": sum(1 for m in members if m["converged"]),
            "errors": sorted({m["error"] for m in members if m["error"]}),
            "figures": figures,
        }
        rows.append(row)
    birds = {(r["kind"], r["nodes"]): r for r in rows if r["speaker"] == "bird"}
    for each in rows:
        bird = birds.get((each["kind"], each["nodes"]))
        if each["speaker"] == "bird" or bird is None:
            continue
        each["vs_bird"] = {
            name: round(value["median"] / bird["figures"][name]["median"], 2)
            for name, value in each["figures"].items()
            if name in bird["figures"] and bird["figures"][name]["median"] > 0
        }
    return rows


def _order(item: tuple[tuple[str, int, str], object]) -> tuple[int, int, int]:
    (kind, nodes, speaker), _ = item
    return (["mesh", "rr", "floor"].index(kind), nodes, 0 if speaker == "exabgp" else 1)


def _cell(row: dict[str, Any], name: str, digits: int = 1) -> str:
    value = row["figures"].get(name)
    if value is None:
        return "-"
    text = f"{value['median']:.{digits}f}"
    if value["n"] > 1 and value["max"] > value["min"]:
        text += f" ({value['min']:.{digits}f}-{value['max']:.{digits}f})"
    ratio = row.get("vs_bird", {}).get(name)
    if ratio is not None and name in ("up", "converged", "pss_mb", "withdraw", "announce"):
        text += f" [{ratio:g}x]"
    return text


def markdown(data: dict[str, Any]) -> str:
    """The results table: medians (min-max over the repetitions) [ratio to BIRD]."""
    lines = [
        "| lab | nodes | speaker | converged runs | plan s | dataplane s | speakers s "
        "| converged s | **up s** | verify s | withdraw s | announce s | down s "
        "| RSS MB/node | PSS MB/node | idle CPU % | CPU s to come up |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in data["summary"]:
        lines.append(
            "| "
            + " | ".join(
                [
                    KIND_TITLE.get(row["kind"], row["kind"]),
                    str(row["nodes"]),
                    "-" if row["kind"] == "floor" else row["speaker"],
                    f"{row['converged']}/{row['runs']}",
                    _cell(row, "plan", 2),
                    _cell(row, "dataplane", 2),
                    _cell(row, "speakers"),
                    _cell(row, "converged"),
                    _cell(row, "up"),
                    _cell(row, "verify"),
                    _cell(row, "withdraw", 2),
                    _cell(row, "announce", 2),
                    _cell(row, "down", 2),
                    _cell(row, "rss_mb"),
                    _cell(row, "pss_mb"),
                    _cell(row, "idle_cpu"),
                    _cell(row, "up_cpu"),
                ]
            )
            + " |"
        )
    machine = data.get("machine", {})
    lines += [
        "",
        f"Medians (min-max) of {data.get('options', {}).get('reps', '?')} repetitions; "
        "[Nx]: ratio to the same lab with BIRD speakers. Machine: "
        f"{machine.get('cpus', '?')} CPUs, load {machine.get('load_before', '?')} before the run,"
        f" kernel {machine.get('kernel', '?')}. Command: `{data.get('command', '')}`",
    ]
    errors = [(r, e) for r in data["summary"] for e in r["errors"]]
    for row, error in errors:
        lines.append(f"- {row['kind']} {row['nodes']} {row['speaker']}: {error}")
    return "\n".join(lines) + "\n"


def plot(data: dict[str, Any], path: Path) -> None:
    """Up-and-converged time and memory per node against the node count, one line per lab
    kind and speaker, the dataplane floor dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    series: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for row in data["summary"]:
        label = (
            "dataplane only (floor)"
            if row["kind"] == "floor"
            else f"{KIND_TITLE[row['kind']]}, {row['speaker']}"
        )
        series.setdefault(label, []).append((row["nodes"], row["figures"]))
    for label, points in series.items():
        points.sort(key=lambda p: p[0])
        figure = "dataplane" if label.startswith("dataplane") else "up"
        xs = [n for n, f in points if figure in f]
        ys = [f[figure]["median"] for _n, f in points if figure in f]
        errors = [
            [f[figure]["median"] - f[figure]["min"] for _n, f in points if figure in f],
            [f[figure]["max"] - f[figure]["median"] for _n, f in points if figure in f],
        ]
        style = "--" if figure == "dataplane" else "-"
        if xs:
            left.errorbar(xs, ys, yerr=errors, fmt=style + "o", capsize=3, label=label)
        mem = [
            (n, f["pss_mb"]["median"], f["rss_mb"]["median"])
            for n, f in points
            if "pss_mb" in f and "rss_mb" in f
        ]
        if mem:
            right.plot([m[0] for m in mem], [m[1] for m in mem], "-o", label=f"{label} PSS")
            right.plot([m[0] for m in mem], [m[2] for m in mem], ":x", label=f"{label} RSS")
    left.set(xlabel="nodes", ylabel="seconds", title="up and converged (median, min-max)")
    right.set(xlabel="nodes", ylabel="MB per node", title="memory per node (all its processes)")
    for axis in (left, right):
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
