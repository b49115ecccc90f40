"""A lab name is a short DNS label before it becomes a path, a namespace or a process argument.

`meshemu down ../x` once removed a folder outside the state root, and `down .` would have removed
every lab's state: every lab command now refuses such names with exit 2, touching nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from meshemu.cli import main
from meshemu.errors import ConfigError, LabError
from meshemu.state import LabState, list_labs

BAD_NAMES = ["../x", ".", "..", "/etc", "a/b", "lab\n", "Lab", "-x", "x-", "", "a" * 13, "a b"]


@pytest.fixture
def state_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "state"
    root.mkdir()
    monkeypatch.setenv("MESHEMU_STATE_DIR", str(root))
    return root


@pytest.mark.parametrize("name", BAD_NAMES)
def test_down_refuses_a_name_that_is_no_label(
    name: str, state_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outside = state_root.parent / "x"
    outside.mkdir()
    (outside / "lab.json").write_text("{}")
    (state_root / "kept").mkdir()
    (state_root / "kept" / "lab.json").write_text("{}")
    assert main(["down", "--", name]) == 2
    err = capsys.readouterr().err
    assert "lab name" in err and "Traceback" not in err
    assert (outside / "lab.json").exists() and (state_root / "kept" / "lab.json").exists()


@pytest.mark.parametrize("command", [["status"], ["verify"], ["snapshot", "-o", "x.json"]])
@pytest.mark.parametrize("name", ["../x", "."])
def test_every_lab_command_refuses_it(
    command: list[str], name: str, state_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [command[0], name, *command[1:]]
    assert main(argv) == 2
    assert "lab name" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["routes", "node1", "--lab"], ["exec", "node1", "--lab"]])
def test_lab_options_are_checked_too(
    command: list[str], state_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*command, "../x", "--", "true"][: len(command) + 1]) == 2
    assert "lab name" in capsys.readouterr().err


def test_an_unknown_lab_is_a_usage_error(
    state_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "nosuchlab"]) == 2
    assert "no lab named 'nosuchlab'" in capsys.readouterr().err
    assert main(["verify", "nosuchlab"]) == 2


def test_down_of_a_lab_that_is_not_up_is_idempotent(
    state_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["down", "nosuchlab"]) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_state_objects_refuse_bad_names(state_root: Path) -> None:
    for name in BAD_NAMES:
        with pytest.raises(ConfigError):
            LabState(name)


def test_list_labs_ignores_folders_that_are_no_lab(state_root: Path) -> None:
    for name in ("good", "Bad", "x.y", "with space"):
        (state_root / name).mkdir()
        (state_root / name / "lab.json").write_text("{}")
    os.symlink(state_root / "good", state_root / "link")
    (state_root / "empty").mkdir()
    assert list_labs() == ["good"]


def test_a_state_root_that_is_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("not a folder")
    monkeypatch.setenv("MESHEMU_STATE_DIR", str(blocker))
    assert list_labs() == []
    with pytest.raises(LabError, match="not a folder"):
        LabState("lab1").create()
    assert main(["status"]) == 2
    assert "no lab is up" in capsys.readouterr().err
    assert main(["down", "lab1"]) == 0  # nothing recorded there: nothing to do


def test_down_never_follows_a_symlink_out_of_the_state_folder(state_root: Path) -> None:
    """A link planted in a lab's state folder is removed as a link; its target is untouched."""
    outside = state_root.parent / "precious"
    (outside / "deep").mkdir(parents=True)
    (outside / "deep" / "file").write_text("keep me")
    lab = state_root / "lab1"
    (lab / "nodes" / "node1").mkdir(parents=True)
    (lab / "lab.json").write_text('{"name": "lab1"}')
    os.symlink(outside, lab / "nodes" / "node1" / "link")
    os.symlink(outside / "deep" / "file", lab / "filelink")
    assert main(["down", "lab1"]) == 0
    assert not lab.exists()
    assert (outside / "deep" / "file").read_text() == "keep me"
