"""`meshemu validate SCENARIO` checks a scenario without root, everything `run` checks before it
creates anything, so CI can check scenarios on any runner."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshemu.cli import main

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((ROOT / "scenarios").glob("*.yaml"))


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_every_shipped_scenario_validates(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(path)]) == 0
    assert capsys.readouterr().out.startswith("valid scenario ")


def test_a_scenario_that_can_never_hold_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (ROOT / "scenarios" / "flagship.yaml").read_text()
    text = text.replace("node4/pod2", "node4/pod9").replace("../topologies/", f"{ROOT}/topologies/")
    path = tmp_path / "never.yaml"
    path.write_text(text)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "steps[6].expect.reachable.to" in err and "pod9" in err and "Traceback" not in err
