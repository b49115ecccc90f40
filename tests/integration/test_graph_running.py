"""`meshemu graph` of a running lab: sessions coloured by what the lab shows now (all
established, then down towards a node whose speaker stopped), `up --json` printing only JSON,
and a graph of the lab once it is down refused (exit 2)."""

from __future__ import annotations

import importlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from meshemu.lab import live
from meshemu.state import LabState

# (the module, not the `main` function `meshemu.cli` exports under the same name)
cli_main = importlib.import_module("meshemu.cli.main")

pytestmark = pytest.mark.integration

TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """`meshemu ARGS...` in this process."""

    def run(*args: str) -> tuple[int, str, str]:
        code: int = cli_main.main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def graph_json(run: Any, lab: str, out: Path) -> dict[str, Any]:
    code, stdout, err = run("graph", lab, "-o", str(out), "--json")
    assert code == 0, err
    data: dict[str, Any] = json.loads(stdout)
    return data


def test_graph_of_a_running_lab(lab_env: Path, tmp_path: Path, cli: Any) -> None:
    lab = "gfxrun"
    code, stdout, err = cli("up", str(TOPOLOGIES / "flagship.yaml"), "--name", lab, "--json")
    assert code == 0, err
    assert json.loads(stdout)["converged"] is True  # stdout: the JSON only
    assert "converged" in err  # the phases went to stderr

    picture = tmp_path / "running.svg"
    data = graph_json(cli, lab, picture)
    assert data["running"] is True
    assert {s["state"] for s in data["sessions"]} == {"established"}
    assert picture.read_bytes().startswith(b"<?xml")

    live.stop_speaker(LabState(lab), "node4")
    deadline = time.monotonic() + 20
    while True:  # node4's side says down at once; its peers notice when the TCP session ends
        data = graph_json(cli, lab, tmp_path / "fault.png")
        states = {(s["a"], s["b"]): s["state"] for s in data["sessions"]}
        if all(v == "down" for k, v in states.items() if "node:node4" in k):
            break
        assert time.monotonic() < deadline, states
        time.sleep(0.5)
    assert all(v == "established" for k, v in states.items() if "node:node4" not in k)
    assert (tmp_path / "fault.png").read_bytes().startswith(b"\x89PNG")

    code, _out, err = cli("down", lab)
    assert code == 0, err
    code, _out, err = cli("graph", lab, "-o", str(tmp_path / "after.svg"))
    assert code == 2 and f"no lab named '{lab}' is up" in err
    assert not (tmp_path / "after.svg").exists()
