"""Tests of meshemu.state: a lab's state folder, with the state root in a temporary folder.

Covered: where the root is, lab-name validation before any path is built, the resource record
(append order, a line cut short by a crash, lines that are not records), the summary, the plan,
agent states, atomic JSON writes, reading files meshemu did not write (a FIFO, a folder, a huge
file, non-UTF-8, JSON nested too deep) without hanging or a traceback, listing labs, and the
process identity (pid + start time) the record relies on.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from meshemu.errors import ConfigError, LabError, MeshemuError
from meshemu.model.load import load_topology
from meshemu.model.plan import LabPlan, build_plan
from meshemu.process import start_time as process_start_time
from meshemu.state import (
    MAX_STATE_FILE,
    LabState,
    LabSummary,
    Resource,
    list_labs,
    read_json,
    state_root,
    write_json_atomic,
)

TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "state"
    monkeypatch.setenv("MESHEMU_STATE_DIR", str(path))
    return path


@pytest.fixture
def lab(root: Path) -> LabState:
    state = LabState("lab1")
    state.create()
    return state


# --- the root ------------------------------------------------------------------------------------


def test_the_root_comes_from_the_environment(root: Path) -> None:
    assert state_root() == root
    assert LabState("lab1").dir == root / "lab1"


def test_the_default_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MESHEMU_STATE_DIR", raising=False)
    assert state_root() == Path("/run/meshemu")


def test_an_explicit_root_wins(root: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    assert LabState("lab1", root=other).dir == other / "lab1"
    assert list_labs(other) == []


# --- lab names -----------------------------------------------------------------------------------

BAD_NAMES = ["../x", ".", "..", "", "a/b", "/abs", "Lab", "lab\n", "-lab", "lab-", "a b", "x" * 13]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_name_that_is_no_label_is_a_config_error(name: str, root: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        LabState(name)
    assert caught.value.problems and "lab name" in str(caught.value)
    assert not root.exists()  # nothing created, not even the root


@pytest.mark.parametrize("name", ["../x", "."])
def test_a_path_name_never_reaches_outside(name: str, root: Path, tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "lab.json").write_text("{}")
    with pytest.raises(MeshemuError):
        LabState(name).create()
    assert (tmp_path / "x" / "lab.json").read_text() == "{}"


@pytest.mark.parametrize("name", ["a", "lab-2", "x" * 12, "0"])
def test_good_names(name: str, root: Path) -> None:
    assert LabState(name).dir == root / name


def test_list_labs_ignores_what_is_no_lab(root: Path) -> None:
    for name in ["good", "also-good", "Bad", "has_underscore", ".hidden", "x" * 13, "empty"]:
        (root / name).mkdir(parents=True)
        if name != "empty":
            (root / name / "lab.json").write_text("{}")
    (root / "only-record").mkdir()
    (root / "only-record" / "resources.jsonl").write_text("")
    (root / "afile").write_text("not a folder")
    (root / "linked").symlink_to(root / "good")
    assert list_labs() == ["also-good", "good", "only-record"]


def test_list_labs_without_a_root(root: Path) -> None:
    assert list_labs() == []
    root.parent.mkdir(parents=True, exist_ok=True)
    root.write_text("a file where the root should be")
    assert list_labs() == []


def test_list_labs_ignores_a_lab_json_that_is_a_folder(root: Path) -> None:
    (root / "odd" / "lab.json").mkdir(parents=True)
    assert list_labs() == []


# --- create, exists, folders ---------------------------------------------------------------------


def test_create_makes_the_folders(root: Path) -> None:
    state = LabState("lab1")
    assert not state.exists
    state.create()
    assert (root / "lab1" / "nodes").is_dir()
    assert state.node_dir("node1") == root / "lab1" / "nodes" / "node1"
    assert state.node_dir("node1").is_dir()


def test_a_lab_exists_once_it_records_something(lab: LabState) -> None:
    assert not lab.exists  # folders alone are no lab
    lab.record(Resource("netns", "me.lab1"))
    assert lab.exists
    assert list_labs() == ["lab1"]


def test_create_refuses_a_lab_that_is_up(lab: LabState) -> None:
    lab.record(Resource("netns", "me.lab1"))
    with pytest.raises(LabError, match="already up"):
        LabState("lab1").create()


def test_create_under_a_root_that_is_a_file(root: Path) -> None:
    root.parent.mkdir(parents=True, exist_ok=True)
    root.write_text("")
    with pytest.raises(LabError):
        LabState("lab1").create()


# --- the resource record -------------------------------------------------------------------------


def test_resources_come_back_in_order(lab: LabState) -> None:
    records = [
        Resource("netns", "me.lab1"),
        Resource("process", "fibd", 4242, 123456, "fibd"),
        Resource("netns", "me.lab1.node1"),
        Resource("process", "speaker:node1", 4243, 123460, "speaker"),
    ]
    for resource in records:
        lab.record(resource)
    assert lab.resources() == records
    assert LabState("lab1").resources() == records  # read by another process later


def test_no_record_is_no_resources(lab: LabState) -> None:
    assert lab.resources() == []


def test_a_last_line_cut_short_is_ignored(lab: LabState) -> None:
    lab.record(Resource("netns", "me.lab1"))
    with open(lab.dir / "resources.jsonl", "a") as handle:
        handle.write('{"kind": "process", "name": "speaker:no')  # a crash mid-write
    assert lab.resources() == [Resource("netns", "me.lab1")]


def test_a_record_after_a_cut_line_is_not_lost(lab: LabState) -> None:
    lab.record(Resource("netns", "a"))
    with open(lab.dir / "resources.jsonl", "a") as handle:
        handle.write('{"kind": "netns", "na')
    lab.record(Resource("process", "speaker:node1", 4243, 123460, "speaker"))
    assert [r.name for r in lab.resources()] == ["a", "speaker:node1"]


@pytest.mark.parametrize(
    "line",
    [
        "",
        "   ",
        "[]",
        "42",
        "null",
        '"text"',
        '{"kind": "netns"}',
        '{"kind": "volcano", "name": "x"}',
        '{"kind": "netns", "name": 5}',
        '{"kind": "process", "name": "p", "pid": -1}',
        '{"kind": "process", "name": "p", "pid": true}',
        '{"kind": "process", "name": "p", "pid": "12"}',
        '{"kind": "process", "name": "p", "role": 7}',
        "\x00\x01garbage",
        "[" * 100_000,
    ],
)
def test_lines_that_are_not_records_are_skipped(lab: LabState, line: str) -> None:
    lab.record(Resource("netns", "first"))
    with open(lab.dir / "resources.jsonl", "a") as handle:
        handle.write(line + "\n")
    lab.record(Resource("netns", "last"))
    assert [r.name for r in lab.resources()] == ["first", "last"]


def test_a_record_that_is_not_utf8_is_read_around(lab: LabState) -> None:
    lab.record(Resource("netns", "first"))
    with open(lab.dir / "resources.jsonl", "ab") as handle:
        handle.write(b"\xff\xfe\x00bad\n")
    lab.record(Resource("netns", "last"))
    assert [r.name for r in lab.resources()] == ["first", "last"]


def test_processes_by_role_and_the_latest_record_of_a_name(lab: LabState) -> None:
    lab.record(Resource("netns", "me.lab1"))
    lab.record(Resource("process", "speaker:node1", 100, 1, "speaker"))
    lab.record(Resource("process", "fibd", 200, 2, "fibd"))
    lab.record(Resource("process", "speaker:node1", 300, 3, "speaker"))  # restarted
    assert [r.pid for r in lab.processes("speaker")] == [100, 300]
    assert [r.name for r in lab.processes()] == ["speaker:node1", "fibd", "speaker:node1"]
    latest = lab.process("speaker:node1")
    assert latest is not None and latest.pid == 300
    assert lab.process("speaker:node9") is None


def test_running_tells_a_recorded_process_from_a_reused_pid(lab: LabState) -> None:
    me = os.getpid()
    started = process_start_time(me)
    lab.record(Resource("process", "me", me, started, "up"))
    lab.record(Resource("process", "impostor", me, (started or 0) + 1, "up"))
    assert lab.running("me")
    assert not lab.running("impostor")
    assert not lab.running("never-recorded")


# --- summary, plan, agent states -----------------------------------------------------------------


def test_summary_round_trip(lab: LabState) -> None:
    summary = LabSummary(
        name="lab1",
        topology="/topologies/flagship.yaml",
        phase="up",
        ipip="userspace",
        created=1714557600.5,
        converged=True,
        up_seconds={"plan": 0.1, "speakers": 2.5},
    )
    lab.write_summary(summary)
    assert lab.summary() == summary
    assert LabState("lab1").summary() == summary
    assert json.loads((lab.dir / "lab.json").read_text())["name"] == "lab1"


def test_summary_of_a_lab_without_one(lab: LabState) -> None:
    """`down --recover` of a lab whose `up` died before writing one."""
    summary = lab.summary()
    assert (summary.name, summary.phase) == ("lab1", "recovered")


@pytest.mark.parametrize("text", ["[1, 2]", '{"phase": "up"}', '{"name": "x", "created": "soon"}'])
def test_a_summary_meshemu_did_not_write_is_a_lab_error(lab: LabState, text: str) -> None:
    (lab.dir / "lab.json").write_text(text)
    with pytest.raises(LabError):
        lab.summary()


@pytest.fixture(scope="module")
def flagship() -> LabPlan:
    return build_plan(load_topology(TOPOLOGIES / "flagship.yaml"))


def test_plan_round_trip(lab: LabState, flagship: LabPlan) -> None:
    lab.write_plan(flagship)
    assert LabState("lab1").plan() == flagship
    # MD5 passwords are in there: only the owner may read it.
    assert stat.S_IMODE((lab.dir / "plan.json").stat().st_mode) == 0o600


def test_a_lab_without_a_plan(lab: LabState) -> None:
    with pytest.raises(LabError, match="no plan"):
        lab.plan()


def test_agent_state(lab: LabState) -> None:
    assert lab.agent_state("node1") is None
    data = {"node": "node1", "sessions": [], "rib": [], "fib": [], "pid": 7}
    write_json_atomic(lab.node_dir("node1") / "agent.json", data)
    assert lab.agent_state("node1") == data


def test_an_agent_state_that_is_not_an_object_is_none(lab: LabState) -> None:
    write_json_atomic(lab.node_dir("node1") / "agent.json", [1, 2])
    assert lab.agent_state("node1") is None


def test_a_corrupt_agent_state_is_a_lab_error(lab: LabState) -> None:
    (lab.node_dir("node1") / "agent.json").write_text('{"sessions": [')
    with pytest.raises(LabError):
        lab.agent_state("node1")


# --- JSON files ----------------------------------------------------------------------------------


def test_write_json_atomic_replaces_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    write_json_atomic(path, {"a": 1})
    write_json_atomic(path, {"a": [2, "three"], "b": None})
    assert read_json(path) == {"a": [2, "three"], "b": None}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]


def test_write_json_atomic_keeps_the_old_file_when_the_data_is_not_json(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    write_json_atomic(path, {"kept": True})
    with pytest.raises((TypeError, ValueError)):
        write_json_atomic(path, {"bad": object()})
    assert read_json(path) == {"kept": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]


def test_write_json_atomic_with_a_mode(tmp_path: Path) -> None:
    write_json_atomic(tmp_path / "secret.json", {"password": "x"}, mode=0o600)
    assert stat.S_IMODE((tmp_path / "secret.json").stat().st_mode) == 0o600


def test_a_reader_never_sees_half_a_file(tmp_path: Path) -> None:
    """The file is replaced by rename: at every moment it is the old or the new document."""
    path = tmp_path / "x.json"
    big = {"rib": [{"prefix": f"10.{i // 256}.{i % 256}.0/24"} for i in range(20_000)]}
    write_json_atomic(path, {"rib": []})
    child = os.fork()
    if child == 0:  # pragma: no cover - the writer
        try:
            for _ in range(20):
                write_json_atomic(path, big)
                write_json_atomic(path, {"rib": []})
        finally:
            os._exit(0)
    try:
        seen = set()
        for _ in range(200):
            data = read_json(path)
            seen.add(len(data["rib"]))
    finally:
        os.waitpid(child, 0)
    assert seen <= {0, 20_000}


def test_read_json_of_a_missing_file(tmp_path: Path) -> None:
    assert read_json(tmp_path / "nothing.json") is None


@pytest.mark.parametrize(
    "content",
    [b"{", b"not json", b"\xff\xfe{}", b"[" * 100_000 + b"]" * 100_000],
    ids=["cut", "text", "not-utf8", "nested-deep"],
)
def test_read_json_of_a_file_meshemu_did_not_write(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.json"
    path.write_bytes(content)
    with pytest.raises(LabError):
        read_json(path)


def test_read_json_of_a_folder(tmp_path: Path) -> None:
    with pytest.raises(LabError):
        read_json(tmp_path)


@pytest.mark.timeout(10)
def test_read_json_of_a_fifo_does_not_hang(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    os.mkfifo(path)
    with pytest.raises(LabError):
        read_json(path)


def test_read_json_of_a_huge_file(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    with open(path, "wb") as handle:
        handle.truncate(MAX_STATE_FILE + 1)  # sparse: no disk used
    with pytest.raises(LabError):
        read_json(path)


# --- process identity ----------------------------------------------------------------------------


def test_start_time_of_this_process_is_stable() -> None:
    first = process_start_time(os.getpid())
    assert isinstance(first, int) and first > 0
    assert process_start_time(os.getpid()) == first


def test_start_time_of_a_child_with_parentheses_in_its_name(tmp_path: Path) -> None:
    """/proc/<pid>/stat puts the command name in parentheses, which may hold ') ' itself."""
    link = tmp_path / "a) b (c"
    link.symlink_to(sys.executable)
    child = subprocess.Popen(
        [str(link), "-c", "import time; time.sleep(30)"], stdin=subprocess.DEVNULL
    )
    try:
        started = process_start_time(child.pid)
        assert started is not None
        assert started >= (process_start_time(os.getpid()) or 0)
        stat_text = Path(f"/proc/{child.pid}/stat").read_text()
        assert "(a) b (c)" in stat_text
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert process_start_time(child.pid) is None


def test_start_time_of_a_pid_that_does_not_exist() -> None:
    # Above the kernel's pid_max (at most 2^22): never a running process.
    assert process_start_time(2**22 + 1) is None


def test_resources_record_what_they_are_given(lab: LabState) -> None:
    """Resource JSON is exactly what `to_json` wrote (the record is the contract with down)."""
    resource = Resource("process", "tunnel:node1", 99, 12345, "tunnel")
    lab.record(resource)
    line = (lab.dir / "resources.jsonl").read_text().splitlines()[0]
    data: dict[str, Any] = json.loads(line)
    assert data == resource.to_json()
    assert data == {
        "kind": "process",
        "name": "tunnel:node1",
        "pid": 99,
        "start_time": 12345,
        "role": "tunnel",
    }
