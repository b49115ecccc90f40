"""`meshemu init` (a commented starter topology that plans cleanly, never overwritten without
--force) and `meshemu completion` (shtab's bash and zsh scripts cover every command)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from meshemu.model.load import load_topology
from meshemu.model.plan import build_plan
from meshemu.report.plan_text import plan_summary


def test_init_writes_a_starter_that_plans_cleanly(tmp_path: Path, cli: Any) -> None:
    path = tmp_path / "my-lab.yaml"
    code, out, err = cli("init", str(path))
    assert code == 0, err
    assert f"wrote {path}" in out
    text = path.read_text()
    assert text.startswith("# A meshemu lab")
    assert text.count("\n#") >= 10  # commented: each section says what it is
    plan = build_plan(load_topology(path))
    assert plan.name == "my-lab"
    assert not plan.notes, plan.notes
    assert plan_summary(plan).startswith("lab my-lab: 3 nodes, 2 subnets")
    # The commands in its comments are the real ones, and validate accepts the file.
    assert f"meshemu validate {path}" in text
    code, out, err = cli("validate", str(path))
    assert code == 0 and out.startswith("valid: lab my-lab"), err
    assert oct(path.stat().st_mode & 0o777) == "0o644"


def test_init_quotes_the_path_in_the_commands_it_shows(tmp_path: Path, cli: Any) -> None:
    path = tmp_path / "my lab!.yaml"
    code, out, err = cli("init", str(path))
    assert code == 0, err
    assert f"`meshemu validate '{path}'`" in out
    assert f"meshemu validate '{path}'" in path.read_text()
    assert load_topology(path).name == "my-lab"


def test_init_never_overwrites_without_force(tmp_path: Path, cli: Any) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text("mine\n")
    code, _out, err = cli("init", str(path))
    assert code == 2 and "exists" in err and "--force" in err
    assert path.read_text() == "mine\n"
    code, _out, err = cli("init", str(path), "--force")
    assert code == 0, err
    assert path.read_text().startswith("# A meshemu lab")
    assert sorted(os.listdir(tmp_path)) == ["lab.yaml"]


def test_init_default_file_name(tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, _out, err = cli("init")
    assert code == 0, err
    assert build_plan(load_topology(tmp_path / "lab.yaml")).name == "lab"


@pytest.mark.parametrize("target", ["missing/lab.yaml", ".", "file/lab.yaml"])
def test_init_bad_paths_are_exit_2(
    tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch, target: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file").write_text("x")
    code, _out, err = cli("init", target)
    assert code == 2, err
    assert "Traceback" not in err
    assert sorted(os.listdir(tmp_path)) == ["file"]


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_covers_every_command(cli: Any, shell: str) -> None:
    code, out, err = cli("completion", shell)
    assert code == 0, err
    for command in ("validate", "plan", "up", "status", "verify", "run", "graph", "init"):
        assert command in out
    for option in ("--json", "--pods", "--force", "--output"):
        assert option in out


def test_bash_completion_script_completes(cli: Any, tmp_path: Path) -> None:
    _code, out, _err = cli("completion", "bash")
    script = tmp_path / "meshemu.bash"
    script.write_text(out)
    # Load it into bash and ask for the completions of `meshemu gr`, `meshemu init --f` and
    # `meshemu plan to` (a file name).
    probe = f"""
source {script}
COMP_WORDS=(meshemu gr); COMP_CWORD=1; COMP_LINE="meshemu gr"; COMP_POINT=${{#COMP_LINE}}
_shtab_meshemu meshemu gr meshemu; echo "1:${{COMPREPLY[*]}}"
COMP_WORDS=(meshemu init --f); COMP_CWORD=2; COMP_LINE="meshemu init --f"
COMP_POINT=${{#COMP_LINE}}; _shtab_meshemu meshemu --f init; echo "2:${{COMPREPLY[*]}}"
cd {tmp_path}; COMP_WORDS=(meshemu plan to); COMP_CWORD=2; COMP_LINE="meshemu plan to"
COMP_POINT=${{#COMP_LINE}}; _shtab_meshemu meshemu to plan; echo "3:${{COMPREPLY[*]}}"
"""
    (tmp_path / "topo.yaml").write_text("x")
    result = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=False)
    assert "1:graph" in result.stdout, result.stdout + result.stderr
    assert "2:--force" in result.stdout, result.stdout + result.stderr
    assert "3:topo.yaml" in result.stdout, result.stdout + result.stderr  # file names complete


def test_completion_refuses_other_shells(cli: Any) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli("completion", "tcsh")
    assert exit_info.value.code == 2
