"""The `export clab` and `import clab` commands: files written whole or not at all, exit 2
with a message for a destination that cannot be written and for input meshemu cannot map."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshemu.cli import clab_cmds
from meshemu.cli.main import report_error
from meshemu.errors import EXIT_BAD_INPUT, MeshemuError
from meshemu.model.clab.export import export_clab
from meshemu.model.load import load_topology
from meshemu.model.plan import build_plan

TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"
SMALL = """
name: small
topology:
  nodes:
    lan: {kind: bridge}
    w1: {kind: linux, labels: {meshemu.role: node}, exec: ["ip address add 10.1.0.11/24 dev eth1"]}
    w2: {kind: linux, labels: {meshemu.role: node}, exec: ["ip address add 10.1.0.12/24 dev eth1"]}
  links:
    - endpoints: ["w1:eth1", "lan:p1"]
    - endpoints: ["w2:eth1", "lan:p2"]
"""


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="meshemu")
    clab_cmds.add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except MeshemuError as err:
        return report_error(err)
    return code


def test_cli_writes_the_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "lab"
    flagship = str(TOPOLOGIES / "flagship.yaml")
    assert _run(["export", "clab", flagship, "-o", str(out)]) == 0
    topo = load_topology(TOPOLOGIES / "flagship.yaml")
    expected = export_clab(build_plan(topo), topo)
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == sorted(name for name, _ in expected.files)
    assert (out / "flagship.clab.yml").read_text() == expected.files[0][1]
    assert (out / "bridges.sh").stat().st_mode & 0o111
    said = capsys.readouterr().out
    # Two lines to run from here, in order: neither changes folder.
    assert f"sudo {out}/bridges.sh up\n" in said
    assert f"sudo containerlab deploy -t {out}/flagship.clab.yml\n" in said
    assert [p.name for p in tmp_path.iterdir()] == ["lab"]  # no temporary folder left


def test_cli_refuses_a_full_folder_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "lab"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    mesh = str(TOPOLOGIES / "mesh.yaml")
    assert _run(["export", "clab", mesh, "-o", str(out)]) == EXIT_BAD_INPUT
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    assert _run(["export", "clab", mesh, "-o", str(out), "--force"]) == 0
    assert not (out / "mine.txt").exists() and (out / "mesh.clab.yml").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lab"]


def test_cli_unwritable_destination(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")  # a folder cannot be made under a regular file, even by root
    mesh = str(TOPOLOGIES / "mesh.yaml")
    assert _run(["export", "clab", mesh, "-o", str(blocker / "out")]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert f"cannot write {blocker / 'out'}: " in err and "hint:" in err  # the -o given
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_cli_failure_halfway_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    written: list[Path] = []
    real = Path.write_text

    def failing(self: Path, text: str, *args: Any, **kwargs: Any) -> int:
        if written:
            raise OSError(28, "No space left on device")
        written.append(self)
        return real(self, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", failing)
    out = tmp_path / "lab"
    assert _run(["export", "clab", str(TOPOLOGIES / "mesh.yaml"), "-o", str(out)]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert written and list(tmp_path.iterdir()) == []


def test_cli_neither_file_nor_lab(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["export", "clab", str(tmp_path / "missing.yaml")]) == EXIT_BAD_INPUT
    assert "missing.yaml" in capsys.readouterr().err


def test_cli_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flagship = TOPOLOGIES / "flagship.yaml"
    assert _run(["export", "clab", str(flagship), "-o", str(tmp_path / "x")]) == 0
    out = tmp_path / "back.yaml"
    assert _run(["import", "clab", str(tmp_path / "x/flagship.clab.yml"), "-o", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert build_plan(load_topology(out)).to_json() == build_plan(load_topology(flagship)).to_json()
    # Without -o the topology goes to stdout.
    assert _run(["import", "clab", str(tmp_path / "x/flagship.clab.yml")]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["name"] == "flagship"


def test_cli_bad_file_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "bad.clab.yml"
    source.write_text(SMALL.replace("lan: {kind: bridge}", "lan: {kind: arista_ceos}"))
    out = tmp_path / "out.yaml"
    assert _run(["import", "clab", str(source), "-o", str(out)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "'lan'" in err and "arista_ceos" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.clab.yml"]


def test_cli_topology_problems_stop_the_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file meshemu maps, but whose lab breaks meshemu's rules: exit 2, nothing written."""
    source = tmp_path / "lab.clab.yml"
    source.write_text(SMALL.replace("meshemu.role: node}", "meshemu.role: node, meshemu.as: 0}", 1))
    out = tmp_path / "out.yaml"
    assert _run(["import", "clab", str(source), "-o", str(out)]) == EXIT_BAD_INPUT
    assert "nodes.w1.asNumber" in capsys.readouterr().err
    assert not out.exists()


def test_cli_unwritable_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "lab.clab.yml"
    source.write_text(SMALL)
    (tmp_path / "file").write_text("")
    assert _run(["import", "clab", str(source), "-o", str(tmp_path / "file/x.yaml")]) == 2
    assert "cannot write" in capsys.readouterr().err
