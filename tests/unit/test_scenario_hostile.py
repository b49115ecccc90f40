"""Hostile scenario files and the topology files they name: every one is a located ConfigError
(exit 2) in bounded time, never a traceback or a hang. `is_scenario_document` never hangs or
raises either (the CLI's `validate` calls it on anything it is given)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from meshemu.errors import ConfigError
from meshemu.scenario.model import is_scenario_document, load_scenario

ROOT = Path(__file__).resolve().parents[2]
MESH = ROOT / "topologies" / "mesh.yaml"
GOOD = f"name: s\nlab: sc-s\ntopology: {MESH}\nsteps:\n  - up: {{}}\n"


def _binary(path: Path) -> None:
    path.write_bytes(bytes(range(256)) * 8)


def _utf16(path: Path) -> None:
    path.write_bytes(GOOD.encode("utf-16"))


def _latin1(path: Path) -> None:
    path.write_bytes(GOOD.replace("name: s", "name: caf\xe9").encode("latin-1"))


def _huge(path: Path) -> None:
    with path.open("wb") as f:  # sparse: costs no disk, and reading it all would take minutes
        f.truncate(4 * 1024**3)


def _huge_text(path: Path) -> None:
    path.write_text(GOOD + "# " + "x" * (3 * 1024 * 1024) + "\n")


def _deep_flow(path: Path) -> None:
    path.write_text("name: s\nsteps: " + "[" * 5000 + "]" * 5000 + "\n")


def _deep_block(path: Path) -> None:
    path.write_text("name: s\nsteps:\n" + "".join(" " * i + "- \n" for i in range(1, 800)))


def _deep_mapping(path: Path) -> None:
    path.write_text(GOOD + "description:\n" + "".join(" " * i + "a:\n" for i in range(1, 600)))


def _laughs(path: Path) -> None:
    # Each alias level multiplies the expanded size by ten: 10**9 steps once expanded.
    levels = ["a: &a [{wait: 1}, {wait: 1}, {wait: 1}, {wait: 1}, {wait: 1}]"]
    for prev, cur in zip("abcdefgh", "bcdefghi", strict=True):
        levels.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 10) + "]")
    path.write_text(
        "x-anchors:\n" + "".join(f"  {line}\n" for line in levels) + f"name: s\ntopology: {MESH}\n"
        "steps: *i\n"
    )


def _many_steps(path: Path) -> None:
    path.write_text(GOOD + "".join("  - add-pods: {node: node1}\n" for _ in range(5000)))


def _nul(path: Path) -> None:
    path.write_bytes(GOOD.encode() + b"\x00\x00")


def _empty(path: Path) -> None:
    path.write_text("")


def _list(path: Path) -> None:
    path.write_text("- a\n- b\n")


def _two_documents(path: Path) -> None:
    path.write_text(GOOD + "---\n" + GOOD)


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _directory(path: Path) -> None:
    path.mkdir()


def _loop(path: Path) -> None:
    path.symlink_to(path.name)


def _dangling(path: Path) -> None:
    path.symlink_to("nowhere.yaml")


CONTENTS: dict[str, Callable[[Path], None]] = {
    "binary": _binary,
    "utf-16": _utf16,
    "latin-1": _latin1,
    "huge sparse": _huge,
    "huge text": _huge_text,
    "deep flow nesting": _deep_flow,
    "deep block nesting": _deep_block,
    "deep mapping": _deep_mapping,
    "alias bomb": _laughs,
    "too many steps": _many_steps,
    "nul bytes": _nul,
    "empty": _empty,
    "a list": _list,
    "two documents": _two_documents,
}
KINDS: dict[str, Callable[[Path], None]] = {
    "fifo": _fifo,
    "directory": _directory,
    "symlink loop": _loop,
    "dangling symlink": _dangling,
}


@pytest.mark.timeout(20)
@pytest.mark.parametrize("case", sorted(CONTENTS) + sorted(KINDS))
def test_a_hostile_scenario_file(case: str, tmp_path: Path) -> None:
    path = tmp_path / "scenario.yaml"
    (CONTENTS | KINDS)[case](path)
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    problems = info.value.problems
    assert problems and all(p.location for p in problems)
    assert any(str(path) in p.location or p.location.startswith("steps") for p in problems)
    assert len(str(info.value)) < 20_000  # readable, not a dump of the input
    assert isinstance(is_scenario_document(path), bool)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("case", sorted(KINDS))
def test_a_topology_that_is_not_a_file(case: str, tmp_path: Path) -> None:
    KINDS[case](tmp_path / "topo.yaml")
    path = tmp_path / "scenario.yaml"
    path.write_text("name: s\nlab: sc-s\ntopology: topo.yaml\nsteps:\n  - up: {}\n")
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    assert [p.location for p in info.value.problems] == ["topology"], info.value
    assert info.value.problems[0].hint


@pytest.mark.parametrize("name", ["''", "'.'", "'a\\0b'", "'..'", "/"])
def test_a_topology_name_that_is_no_file(name: str, tmp_path: Path) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text(
        f'name: s\nlab: sc-s\ntopology: "{name.strip(chr(39))}"\nsteps:\n  - up: {{}}\n'
    )
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    assert [p.location for p in info.value.problems] == ["topology"], info.value


def test_a_topology_through_a_symlink_is_read(tmp_path: Path) -> None:
    (tmp_path / "link.yaml").symlink_to(MESH)
    path = tmp_path / "scenario.yaml"
    path.write_text("name: s\nlab: sc-s\ntopology: link.yaml\nsteps:\n  - up: {}\n")
    _scenario, topo, topo_path = load_scenario(path)
    assert topo.name == "sc-s" and topo_path == MESH.resolve()


# The topology's content is read by `meshemu.model.load.load_topology`, hardened separately;
# these cases pass once that loader turns every one of them into a ConfigError.
LOADER_CASES = {
    "binary": _binary,
    "utf-16": _utf16,
    "latin-1": _latin1,
    "deep flow nesting": _deep_flow,
    "huge sparse": _huge,
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", sorted(LOADER_CASES))
def test_a_hostile_topology_file(case: str, tmp_path: Path) -> None:
    LOADER_CASES[case](tmp_path / "topo.yaml")
    path = tmp_path / "scenario.yaml"
    path.write_text("name: s\nlab: sc-s\ntopology: topo.yaml\nsteps:\n  - up: {}\n")
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    assert all(p.location.startswith("topology") for p in info.value.problems), info.value


def test_is_scenario_document(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(GOOD)
    assert is_scenario_document(path)
    assert not is_scenario_document(MESH)
    assert not is_scenario_document(ROOT / "topologies" / "calico-bundle.yaml")
    assert not is_scenario_document(tmp_path / "missing.yaml")
    path.write_text("name: s\nsteps: [\n")
    assert not is_scenario_document(path)
    path.write_text("topology: x\nsteps: 3\n")  # shaped like a scenario: load_scenario says why
    assert is_scenario_document(path)


def test_every_problem_of_the_head_is_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text("name: s\nlab: ../x\ntopology: nowhere.yaml\nsteps:\n  - up: {}\n")
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    assert [p.location for p in info.value.problems] == ["lab", "topology"], info.value
