"""The benchmark's pure parts: its labs' topologies, the summary of runs, the table."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

# The benchmark lives beside the package, not in it (scripts/bench.py puts it on the path).
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.__main__ import parser
from bench.report import markdown, plot, spread, summarize
from bench.topologies import lab_name, topology
from meshemu.model.load import load_topology
from meshemu.model.plan import build_plan


def _plan(tmp_path: Path, kind: str, nodes: int, speaker: str) -> Any:
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(topology(kind, nodes, speaker)))
    return build_plan(load_topology(path))


def test_mesh_lab_is_a_dual_stack_full_mesh(tmp_path: Path) -> None:
    plan = _plan(tmp_path, "mesh", 6, "exabgp")
    assert plan.name == "benchm6e" == lab_name("mesh", 6, "exabgp")
    nodes = plan.nodes
    assert len(nodes) == 6
    # every node peers with every other one, once per family
    assert all(len(n.expected_up) == 2 * 5 for n in nodes)
    assert all(len(n.pods) == 2 and n.ipv4 and n.ipv6 for n in nodes)
    assert {p.ipip_mode for p in plan.pools} == {"CrossSubnet", "Never"}


def test_reflector_lab_peers_only_with_the_two_reflectors(tmp_path: Path) -> None:
    plan = _plan(tmp_path, "rr", 8, "bird")
    nodes = plan.nodes
    reflectors = [n for n in nodes if n.cluster_id]
    assert len(reflectors) == 2
    clients = [n for n in nodes if not n.cluster_id]
    assert all(len(n.expected_up) == 2 * 2 for n in clients)
    assert all(n.speaker == "bird" for n in nodes)
    # BIRD nodes cannot run an encapsulating pool (no Felix): the reference runs Never
    assert {p.ipip_mode for p in plan.pools} == {"Never"}


def test_topology_refuses_unknown_kinds_and_sizes() -> None:
    with pytest.raises(ValueError):
        topology("ring", 10, "exabgp")
    with pytest.raises(ValueError):
        topology("mesh", 1, "exabgp")
    with pytest.raises(ValueError):
        topology("mesh", 10, "gobgp")


def _run(
    kind: str, speaker: str, up: float, rep: int = 1, converged: bool = True
) -> dict[str, Any]:
    return {
        "kind": kind,
        "nodes": 10,
        "speaker": speaker,
        "rep": rep,
        "converged": converged,
        "figures": {"up": up, "pss_mb": 20.0, "rss_mb": 35.0, "dataplane": 0.5},
        "memory": {},
        "error": "" if converged else "LabError: boom",
    }


def test_spread_is_median_and_range() -> None:
    assert spread([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3}


def test_summary_takes_medians_and_ratios_to_bird() -> None:
    runs = [
        _run("mesh", "exabgp", 6.0, 1),
        _run("mesh", "exabgp", 9.0, 2),
        _run("mesh", "exabgp", 7.0, 3, converged=False),
        _run("mesh", "bird", 2.0),
    ]
    rows = summarize(runs)
    assert [(r["kind"], r["speaker"]) for r in rows] == [("mesh", "exabgp"), ("mesh", "bird")]
    exabgp = rows[0]
    assert exabgp["figures"]["up"] == {"median": 7.0, "min": 6.0, "max": 9.0, "n": 3}
    assert exabgp["converged"] == 2 and exabgp["errors"] == ["LabError: boom"]
    assert exabgp["vs_bird"]["up"] == 3.5
    assert "vs_bird" not in rows[1]


def test_table_and_plot_come_from_the_json(tmp_path: Path) -> None:
    runs = [_run("mesh", "exabgp", 6.0), _run("mesh", "bird", 2.0), _run("floor", "exabgp", 1)]
    data = json.loads(
        json.dumps({"command": "scripts/bench.py --quick", "options": {"reps": 1}, "runs": runs})
    )
    data["summary"] = summarize(data["runs"])
    table = markdown(data)
    lines = table.splitlines()
    assert lines[0].startswith("| lab | nodes | speaker")
    assert "| full mesh | 10 | exabgp | 1/1 |" in table
    assert "6.0 [3x]" in table  # up, with its ratio to BIRD
    assert "| dataplane only | 10 | - |" in table
    assert "`scripts/bench.py --quick`" in table
    plot(data, tmp_path / "bench.png")
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_quick_options_parse() -> None:
    args = parser().parse_args(["--quick", "--mesh", "10,20", "--reps", "2"])
    assert args.quick and args.mesh == [10, 20] and args.reps == 2
    with pytest.raises(SystemExit):
        parser().parse_args(["--mesh", "1"])
