"""Scenario files: shipped ones validate; bad ones are rejected before anything is created."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshemu.cli import main
from meshemu.errors import ConfigError
from meshemu.scenario.model import load_scenario

ROOT = Path(__file__).resolve().parents[2]
TOPOLOGY = ROOT / "topologies" / "flagship.yaml"
RR = ROOT / "topologies" / "route-reflectors.yaml"


@pytest.mark.parametrize("path", sorted((ROOT / "scenarios").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_scenarios_validate(path: Path) -> None:
    scenario, _topo, _path = load_scenario(path)
    assert scenario.steps[0].kind == "up"
    assert any(step.kind == "expect" for step in scenario.steps)


BAD = {
    "unknown node": ("- link-down: {node: node9}", "steps[1].link-down.node", "unknown node"),
    "unknown pod": (
        "- expect: {reachable: {from: node1/pod7, to: node2/pod1}}",
        "steps[1].expect.reachable.from",
        "unknown pod",
    ),
    "unknown pool": (
        "- set-pool: {pool: nope, ipipMode: Always}",
        "steps[1].set-pool.pool",
        "unknown pool",
    ),
    "unknown step kind": ("- explode: {node: node1}", "steps[1]", "explode"),
    "two kinds in a step": ("- {wait: 1, link-up: {node: node1}}", "steps[1]", "exactly one"),
    "bad path": (
        "- expect: {reachable: {from: node1/pod1, to: node2/pod1, path: teleport}}",
        "steps[1].expect.reachable.path",
        "",
    ),
    "route with neither prefix nor node": (
        "- expect: {route: {node: node1}}",
        "steps[1].expect.route",
        "prefix or to",
    ),
    "via on an absent route": (
        "- expect: {route: {node: node1, to: node2, present: false, dev: eth0}}",
        "steps[1].expect.route",
        "absent",
    ),
    "removed node used later": (
        "- remove-node: {node: node2}\n  - link-down: {node: node2}",
        "steps[2].link-down.node",
        "unknown node",
    ),
    "ipip on ipv6 pool live": (
        "- set-pool: {pool: ipv6-pool, ipipMode: Always}",
        "steps[1].set-pool",
        "IPv4-only",
    ),
    "stop-reflector on a plain node": (
        "- stop-reflector: {node: node1}",
        "steps[1].stop-reflector.node",
        "not a route reflector",
    ),
    "expectation before up": ("- wait: 1", "", ""),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_scenarios_exit_2_with_location(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    step, location, words = BAD[case]
    path = tmp_path / "bad.yaml"
    path.write_text(f"name: bad\ntopology: {TOPOLOGY}\nsteps:\n  - up: {{}}\n  {step}\n")
    if case == "expectation before up":
        path.write_text(
            f"name: bad\ntopology: {TOPOLOGY}\nsteps:\n"
            "  - link-down: {node: node1}\n  - up: {}\n"
        )
        location, words = "steps[0].link-down", "not up yet"
    code = main(["run", str(path)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert location in err and words in err, err
    assert "Traceback" not in err


def test_unknown_topology_and_bad_yaml(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("name: s\ntopology: nowhere.yaml\nsteps:\n  - up: {}\n")
    with pytest.raises(ConfigError, match="no such file"):
        load_scenario(path)
    path.write_text("name: s\nsteps: [\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        load_scenario(path)
