"""Feedback people expect: progress bars only on a terminal and never in --json output, the
convergence-time plot of a scenario run, and --json on every command that prints a table."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from meshemu.cli import check_cmds
from meshemu.cli.common import progress_bar, say, say_aside, sayer
from meshemu.model.load import load_topology
from meshemu.model.plan import build_plan
from meshemu.report import progress
from meshemu.report.convergence import plot_convergence, plot_path, step_kind
from meshemu.report.progress import ProgressBar
from meshemu.verify.results import FAIL, PASS, SKIP, CheckResult, Report
from meshemu.verify.snapshot import normalize, write_snapshot

ROOT = Path(__file__).resolve().parents[2]
FLAGSHIP = str(ROOT / "topologies" / "flagship.yaml")


def test_no_bar_off_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    assert not progress.interactive()  # pytest captures: stdout is no terminal
    with ProgressBar() as bar:
        bar.step("working", 1, 3)
        bar.lines(print, "up x")("  nodes 0.5s")
    out, err = capsys.readouterr()
    assert out == "  nodes 0.5s\n" and err == ""


def test_ci_or_a_dumb_terminal_means_no_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert progress.interactive()
    monkeypatch.setenv("CI", "true")
    assert not progress.interactive()
    monkeypatch.delenv("CI")
    monkeypatch.setenv("TERM", "dumb")
    assert not progress.interactive()


def test_bar_on_a_terminal_draws_on_stderr_and_clears(tmp_path: Path) -> None:
    """In a pseudo-terminal the bar is drawn (stderr) and gone at the end; the lines stay."""
    code = (
        "import time\n"
        "from meshemu.report.progress import ProgressBar\n"
        "with ProgressBar() as bar:\n"
        "    tell = bar.lines(print, 'up big')\n"
        "    for i in range(3):\n"
        "        bar.step('building nodes', i, 3)\n"
        "        tell(f'  phase{i}')\n"
        "        time.sleep(0.15)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "CI"} | {"TERM": "xterm", "COLUMNS": "100"}
    program = tmp_path / "bar.py"
    program.write_text(code)
    script = f"{shlex.quote(sys.executable)} {shlex.quote(str(program))}"
    result = subprocess.run(
        ["script", "-qec", script, "/dev/null"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
        timeout=60,
    )
    if result.returncode != 0 and "script" in result.stderr:
        pytest.skip(f"no `script` to make a pseudo-terminal: {result.stderr}")
    screen = result.stdout
    assert "phase0" in screen and "phase2" in screen
    assert "up big" in screen or "building nodes" in screen  # the bar was drawn


def report_of(*steps: tuple[str, float | None]) -> Report:
    results = tuple(
        CheckResult("step", f"step {i + 1}: s{i + 1}", status, seconds=seconds)
        for i, (status, seconds) in enumerate(steps)
    )
    return Report("scenario link-failure", "sc", results, 12.5)


def test_step_kinds() -> None:
    assert step_kind(PASS, True) == "held"
    assert step_kind(FAIL, True) == "failed"
    assert step_kind(PASS, False) == "action"
    assert step_kind(FAIL, False) == "failed"
    assert step_kind(SKIP, True) == "skipped"


def test_convergence_plot(tmp_path: Path) -> None:
    report = report_of((PASS, 2.1), (PASS, 0.3), (PASS, 9.52), (FAIL, 30.0), (SKIP, None))
    out = tmp_path / "run.convergence.svg"
    plot_convergence(report, [False, True, False, True, True], out)
    svg = out.read_text()
    root = ElementTree.fromstring(svg)
    assert root.tag.endswith("svg")
    for text in ("9.52 s", "30.00 s", "step 5: s5", "expectation held after", "action took"):
        assert text in svg
    assert "FAILED" in svg
    assert sorted(os.listdir(tmp_path)) == ["run.convergence.svg"]


def test_plot_path_is_beside_the_report() -> None:
    assert plot_path("out/link.json") == Path("out/link.convergence.svg")
    assert plot_path("report.xml") == Path("report.convergence.svg")


def test_run_writes_the_plot_beside_its_reports(
    tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`meshemu run` with its lab replaced by a fixed report: the plot, its name in the
    reports, and `--json -` printing only JSON on stdout."""
    report = report_of((PASS, 1.9), (PASS, 9.5), (PASS, 1.3))

    class FakeRunner:
        def __init__(self, *args: Any) -> None:
            self.step = args[-1]

        def run(self) -> Report:
            self.step("step 1", 0, 3)
            return report

    monkeypatch.setattr(check_cmds, "Runner", FakeRunner)
    scenario = str(ROOT / "scenarios" / "link-failure.yaml")
    junit = tmp_path / "r.xml"
    code, out, err = cli("run", scenario, "--json", "-", "--junit", str(junit))
    assert code == 0, err
    data = json.loads(out)  # stdout is the JSON report only
    plot = tmp_path / "r.convergence.svg"
    assert data["properties"]["convergence_plot"] == str(plot)
    assert plot.is_file() and str(plot) in junit.read_text()
    assert "scenario link-failure" in err and "convergence plot" in err
    code, out, err = cli("run", scenario, "--plot", str(tmp_path / "p.pdf"))
    assert code == 2 and ".svg or .png" in err
    # A plot that cannot be written does not cost the run its reports.
    report_file = tmp_path / "kept.json"
    missing = tmp_path / "no" / "p.svg"
    code, out, err = cli("run", scenario, "--json", str(report_file), "--plot", str(missing))
    assert code == 0 and "no convergence plot: cannot write" in out
    assert json.loads(report_file.read_text())["ok"] is True


def test_validate_json(cli: Any) -> None:
    code, out, err = cli("validate", FLAGSHIP, "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["valid"] is True and data["lab"] == "flagship"
    assert data["summary"].startswith("lab flagship: 4 nodes")
    code, out, err = cli("validate", str(ROOT / "scenarios" / "link-failure.yaml"), "--json")
    assert code == 0, err
    assert json.loads(out)["kind"] == "scenario"


def test_every_command_that_prints_a_table_has_json(cli_parser: argparse.ArgumentParser) -> None:
    """Each command a person reads as a table or report accepts --json (run: --json -)."""
    sub = next(a for a in cli_parser._actions if a.__class__.__name__ == "_SubParsersAction")
    tables = ("validate", "plan", "up", "down", "status", "routes", "repair", "verify")
    tables += ("diff", "demo", "graph", "run")
    for name in tables:
        options = {o for a in sub.choices[name]._actions for o in a.option_strings}
        assert "--json" in options, name


def test_diff_json(tmp_path: Path, cli: Any) -> None:
    plan = build_plan(load_topology(Path(FLAGSHIP))).to_json()
    route = {"prefix": "192.168.0.64/26", "type": "unicast", "via": "10.10.1.3", "dev": "eth0"}
    fa, fb = tmp_path / "a.json", tmp_path / "b.json"
    write_snapshot(fa, normalize(plan, {}, {"node1": [route]}))
    write_snapshot(fb, normalize(plan, {}, {"node1": []}))
    code, out, err = cli("diff", str(fa), str(fb), "--json")
    assert code == 1, err
    (change,) = json.loads(out)["changes"]
    assert change["node"] == "node1" and change["prefix_or_peer"] == "192.168.0.64/26"
    assert change["before"] is not None and change["after"] is None
    code, out, _err = cli("diff", str(fa), str(fa), "--json")
    assert code == 0 and json.loads(out) == {"changes": []}


def test_json_means_no_bar_and_progress_on_stderr() -> None:
    assert progress_bar(argparse.Namespace(json=True)).enabled is False
    assert sayer(argparse.Namespace(json=True)) is say_aside
    assert sayer(argparse.Namespace(json=False)) is say
