"""Every shipped scenario passes here; a scenario expecting the wrong thing fails, readably;
`verify`, snapshots and JUnit reports on real labs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from meshemu.lab import down, up
from meshemu.model.load import load_topology
from meshemu.model.plan import build_plan
from meshemu.scenario.model import load_scenario
from meshemu.scenario.runner import Runner
from meshemu.state import LabState

from .conftest import TOPOLOGIES

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((ROOT / "scenarios").glob("*.yaml"))
SCHEMA = ROOT.parent / "shared" / "schemas" / "junit-10.xsd"
CLI = [sys.executable, "-m", "meshemu.cli"]

pytestmark = pytest.mark.integration


def validate_junit(path: Path) -> None:
    if not SCHEMA.exists():
        if os.environ.get("MESHEMU_REQUIRE_SHARED") == "1":
            pytest.fail(f"JUnit schema not found at {SCHEMA} (CI must have it)")
        pytest.skip(f"JUnit schema not found at {SCHEMA}")
    import xmlschema

    xmlschema.XMLSchema(str(SCHEMA)).validate(str(path))


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_shipped_scenario_passes(path: Path, lab_env: Path, tmp_path: Path) -> None:
    junit, report_json = tmp_path / "report.xml", tmp_path / "report.json"
    run = subprocess.run(
        [*CLI, "run", str(path), "--junit", str(junit), "--json", str(report_json)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    print(run.stdout[-3000:], run.stderr[-2000:])
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    validate_junit(junit)
    data = json.loads(report_json.read_text())
    assert data["ok"] and data["summary"]["fail"] == 0
    steps = data["results"]
    assert all(s["seconds"] is not None for s in steps)  # convergence times are in the report
    assert "seconds" in run.stdout


def test_a_scenario_expecting_an_impossible_path_is_rejected_before_anything_runs(
    lab_env: Path, tmp_path: Path
) -> None:
    text = (ROOT / "scenarios" / "flagship.yaml").read_text()
    text = text.replace(
        "reachable: {from: node1/pod1, to: node4/pod2, family: ipv4, path: ipip}",
        "reachable: {from: node1/pod1, to: node4/pod2, family: ipv4, path: direct}",
    ).replace("lab: sc-flagship", "lab: sc-wrong")
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(text.replace("../topologies/", f"{TOPOLOGIES}/"))
    run = subprocess.run([*CLI, "run", str(wrong)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "steps[6].expect.reachable" in run.stderr and "IPIP" in run.stderr
    assert not (lab_env / "sc-wrong").exists()  # nothing was created


def test_a_scenario_whose_expectation_fails_reports_a_diagnosis(
    lab_env: Path, tmp_path: Path
) -> None:
    """node4's uplink goes down, then the scenario expects node1/pod1 to reach node4/pod2."""
    text = (ROOT / "scenarios" / "flagship.yaml").read_text()
    step = "reachable: {from: node1/pod1, to: node4/pod2, family: ipv4, path: ipip}"
    text = text.replace(
        f"  - expect:\n      {step}",
        f"  - link-down: {{node: node4}}\n  - expect:\n      {step}\n      timeout: 2",
    ).replace("lab: sc-flagship", "lab: sc-wrong")
    assert "link-down" in text
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(text.replace("../topologies/", f"{TOPOLOGIES}/"))
    junit = tmp_path / "wrong.xml"
    run = subprocess.run(
        [*CLI, "run", str(wrong), "--junit", str(junit)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    out = run.stdout
    # The failing step comes first, says what was expected and what was seen on the wire.
    failed = out.index("FAILED")
    assert "expected" in out[failed:] and "reachable via ipip" in out[failed:]
    assert "observed:  unreachable" in out[failed:]
    assert "skipped" in out  # the steps after it were not run against an unknown state
    validate_junit(junit)
    assert "<failure" in junit.read_text()
    assert not (lab_env / "sc-wrong").exists()  # brought down, pass or fail


def test_a_scenario_expecting_a_missing_route_fails(lab_env: Path, tmp_path: Path) -> None:
    text = (
        (ROOT / "scenarios" / "ipv6-vxlan.yaml")
        .read_text()
        .replace(
            "route: {node: node4, to: node1, family: ipv6, dev: vxlan-v6.calico}",
            "route: {node: node4, to: node1, family: ipv6, dev: eth0}\n      timeout: 2",
        )
        .replace("lab: sc-ipv6", "lab: sc-miss")
        .replace("../topologies/", f"{TOPOLOGIES}/")
    )
    path = tmp_path / "missing.yaml"
    path.write_text(text)
    scenario, topo, topo_path = load_scenario(path)
    report = Runner(scenario, topo, topo_path, tmp_path, print).run()
    assert not report.ok
    failure = report.failures()[0]
    assert "node4" in failure.diagnosis and "vxlan-v6.calico" in failure.observed


def test_verify_cli_snapshot_and_diff(lab_env: Path, tmp_path: Path) -> None:
    path = TOPOLOGIES / "flagship.yaml"
    topo = load_topology(path, name="it-verify")
    # A killed speaker's peers keep its routes for the restart time (graceful restart, as
    # Calico's BIRD): a short one, so the diff below sees them gone from BGP.
    bgp = topo.bgp.model_copy(update={"node_mesh_max_restart_time": "2s"})
    topo = topo.model_copy(update={"bgp": bgp})
    plan = build_plan(topo)
    assert up(plan, topo, path, print, timeout=60).converged
    junit, report = tmp_path / "verify.xml", tmp_path / "verify.json"
    run = subprocess.run(
        [*CLI, "verify", "it-verify", "--junit", str(junit), "--json-file", str(report)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout
    validate_junit(junit)
    data = json.loads(report.read_text())
    categories = {r["category"] for r in data["results"]}
    assert categories == {"health", "sessions", "rib", "fib", "dataplane"}
    cells = [r for r in data["results"] if r["category"] == "dataplane"]
    assert len(cells) == 112 and all(r["status"] == "pass" for r in cells)
    assert {r["details"]["observed_path"] for r in cells} == {"local", "direct", "ipip", "vxlan"}
    assert "path seen on the wire" in run.stdout

    snap = tmp_path / "before.json"
    assert subprocess.run([*CLI, "snapshot", "it-verify", "-o", str(snap)]).returncode == 0
    same = subprocess.run(
        [*CLI, "diff", str(snap), "--lab", "it-verify"], capture_output=True, text=True
    )
    assert same.returncode == 0 and "no differences" in same.stdout

    pids = [r.pid for r in LabState("it-verify").resources() if r.name == "speaker:node3" and r.pid]
    os.kill(pids[-1], signal.SIGKILL)
    import time

    time.sleep(4.5)
    changed = subprocess.run(
        [*CLI, "diff", str(snap), "--lab", "it-verify"], capture_output=True, text=True
    )
    assert changed.returncode == 1
    # node3's sessions and BGP paths are gone; its blocks' kernel routes are Felix's (IPIP and
    # VXLAN pools, Calico's defaults), which no BGP event removes.
    assert "node1" in changed.stdout and "session state changed" in changed.stdout
    assert "rib" in changed.stdout and "route removed" not in changed.stdout
    broken = subprocess.run(
        [*CLI, "verify", "it-verify", "--no-dataplane"], capture_output=True, text=True
    )
    assert broken.returncode == 1
    first_lines = broken.stdout.splitlines()[:6]
    assert any("FAIL" in line for line in first_lines)  # failures first
    # The dead node is named as the cause, not judged from the state its agent left behind.
    assert "node3: speaker dead" in broken.stdout
    assert "the cause is node3" in broken.stdout
    assert LabState("it-verify").plan().name == "it-verify"
    down("it-verify", print)
