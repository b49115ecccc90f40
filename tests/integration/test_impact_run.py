"""`meshemu impact --run` for real: the old input's lab and the new input's lab brought up one
after the other, observed with packets, and the prediction checked against them.

racks-always -> racks-never (tests/data/impact): inside rack 1 the pod pairs leave the IP-in-IP
tunnel for the subnet, across the racks they lose reachability (the plain router knows no pod
routes). Every predicted change must be what the labs show, and both labs must be gone
afterwards (labs `impact-o....` / `impact-n....` under the test's own state root; the fixture's
leak check covers namespaces and processes).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from meshemu.cli import insight_cmds

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[1] / "data" / "impact"


def _impact(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="meshemu")
    insight_cmds.add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["impact", *argv])
    code: int = args.func(args)
    return code


def test_impact_run_confirms_the_prediction(
    lab_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = str(DATA / "racks-always.yaml"), str(DATA / "racks-never.yaml")
    code = _impact(
        [old, new, "--run", "--lab-prefix", "impact", "--format", "json", "--timeout", "60"]
    )
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    failed = [c for c in data["run"]["checks"] if c["status"] == "fail"]
    assert code == 0 and data["run"]["ok"], failed
    names = [c["name"] for c in data["run"]["checks"]]
    # The lost pairs and the changed paths were each checked on both sides.
    assert "new: ipv4 node1/pod1 -> node3/pod1 (lost)" in names
    assert "old: ipv4 node1/pod1 -> node3/pod1 (lost)" in names
    assert "new: ipv4 node1/pod1 -> node2/pod1 (path)" in names
    assert "new: every pod pair as the plan expects" in names
    assert data["summary"]["pairs_lost"] == 4 and data["summary"]["pairs_path"] == 2
    # Both labs were brought up and down, one after the other.
    assert captured.err.count("bringing up the") == 2
    assert captured.err.count(" down: ") == 2
    assert [p for p in lab_env.iterdir() if p.is_dir()] == []


def test_impact_run_with_a_protected_pair_that_breaks(
    lab_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The labs confirm the prediction, and the protected pair across the racks breaks: exit 1
    (the report in Markdown, as a pull-request comment would carry it)."""
    old, new = str(DATA / "racks-always.yaml"), str(DATA / "racks-never.yaml")
    code = _impact([old, new, "--run", "--protect-pairs", "node1:node3", "--format", "markdown"])
    out = capsys.readouterr().out
    assert code == 1
    assert "❌ **protected: BREAKS 1 of 1 protected pod pairs**" in out
    assert "✅ `--run`:" in out
    assert [p for p in lab_env.iterdir() if p.is_dir()] == []
