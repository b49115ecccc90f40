"""Tests of regression snapshots: normalization, files, comparison and its text."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest

from meshemu.errors import ConfigError
from meshemu.verify.snapshot import (
    FORMAT,
    KINDS,
    Change,
    diff_snapshots,
    normalize,
    read_snapshot,
    render_diff,
    write_snapshot,
)

PLAN: dict[str, Any] = {
    "name": "flagship",
    "nodes": [{"name": "node1", "sessions": []}, {"name": "node2"}, {"name": "node3"}],
}


def _session(peer_ip: str, node: str, state: str = "established") -> dict[str, Any]:
    return {
        "peer_ip": peer_ip,
        "peer_node": node,
        "kind": "mesh",
        "state": state,
        "since": 1714557600.123,
        "info": "",
        "prefixes_received": 2,
    }


def _path(prefix: str, next_hop: str, peer: str | None, best: bool = True) -> dict[str, Any]:
    return {
        "prefix": prefix,
        "next_hop": next_hop,
        "learned_from": peer,
        "as_path": [],
        "local_pref": 100,
        "originator_id": None,
        "cluster_list": [],
        "best": best,
    }


def _route(prefix: str, via: str | None, dev: str | None, onlink: bool = False) -> dict[str, Any]:
    return {"prefix": prefix, "via": via, "dev": dev, "onlink": onlink, "type": "unicast"}


def _agent(node: str, pid: int = 4242, started: float = 1.0) -> dict[str, Any]:
    return {
        "node": node,
        "pid": pid,
        "started": started,
        "updated": started + 10,
        "errors": ["transient"],
        "sessions": [_session("10.0.1.3", "node3"), _session("10.0.0.2", "node2")],
        "rib": [
            _path("10.244.2.0/26", "10.0.1.3", "10.0.1.3"),
            _path("10.244.2.0/26", "10.0.0.9", "10.0.0.9", best=False),
            _path("10.244.0.0/26", "10.0.0.1", None),
            _path("fd00:244:0:0:1::/122", "FD00::2", "fd00::2"),
        ],
        "adj_out": {"10.0.0.2": ["10.244.0.0/26"]},
        "fib": [_route("10.244.9.0/26", "10.0.0.9", "eth0")],
    }


def _fibs() -> dict[str, list[dict[str, Any]]]:
    return {
        "node1": [
            _route("10.244.2.0/26", "10.0.1.3", "tunl0", onlink=True),
            {"prefix": "10.244.0.0/26", "via": None, "dev": None, "onlink": False,
             "type": "blackhole"},
            _route("10.244.1.0/26", "10.0.0.2", "eth0"),
        ],
        "node2": [_route("10.244.1.0/26", None, "lo")],
    }  # fmt: skip


def _snapshot() -> dict[str, Any]:
    return normalize(PLAN, {"node1": _agent("node1"), "node2": _agent("node2")}, _fibs())


# --- normalize ------------------------------------------------------------------------------


def test_normalize_shape_and_format() -> None:
    snap = _snapshot()
    assert snap["format"] == FORMAT == "meshemu-snapshot/1"
    assert snap["lab"] == "flagship"
    assert sorted(snap["nodes"]) == ["node1", "node2", "node3"]
    node1 = snap["nodes"]["node1"]
    assert node1["sessions"] == [
        {"peer_ip": "10.0.0.2", "peer_node": "node2", "kind": "mesh", "state": "established"},
        {"peer_ip": "10.0.1.3", "peer_node": "node3", "kind": "mesh", "state": "established"},
    ]
    assert [(p["prefix"], p["next_hop"], p["learned_from"]) for p in node1["rib"]] == [
        ("10.244.0.0/26", "10.0.0.1", None),
        ("10.244.2.0/26", "10.0.1.3", "10.0.1.3"),  # the best path only
        ("fd00:244:0:0:1::/122", "fd00::2", "fd00::2"),  # canonical IPv6 text
    ]
    assert set(node1["rib"][0]) == {
        "prefix", "next_hop", "learned_from", "as_path", "originator_id", "cluster_list"
    }  # fmt: skip
    assert [r["prefix"] for r in node1["fib"]] == [
        "10.244.0.0/26",
        "10.244.1.0/26",
        "10.244.2.0/26",
    ]
    assert node1["fib"][0] == {
        "prefix": "10.244.0.0/26", "type": "blackhole", "via": None, "dev": None, "onlink": False
    }  # fmt: skip
    # A node with no agent state and no FIB is still listed, empty: it is in the plan.
    assert snap["nodes"]["node3"] == {"sessions": [], "rib": [], "fib": []}


def test_normalize_drops_times_pids_and_errors() -> None:
    text = json.dumps(_snapshot())
    for word in ("since", "pid", "started", "updated", "errors", "transient", "info",
                 "prefixes_received", "local_pref", "best", "adj_out", "1714557600"):  # fmt: skip
        assert word not in text, word


def test_normalize_is_stable_across_runs_and_orders() -> None:
    first = _snapshot()
    agent = _agent("node1", pid=999, started=5000.0)
    agent["sessions"].reverse()
    agent["rib"].reverse()
    for session in agent["sessions"]:
        session["since"] = 77.0
    fibs = _fibs()
    fibs["node1"].reverse()
    again = normalize(PLAN, {"node2": _agent("node2", pid=7), "node1": agent}, fibs)
    assert again == first
    assert json.dumps(again, sort_keys=True) == json.dumps(first, sort_keys=True)


def test_normalize_fib_falls_back_to_agent_and_includes_unplanned_nodes() -> None:
    snap = normalize(PLAN, {"node4": _agent("node4")}, {})
    assert "node4" in snap["nodes"]  # joined during a scenario, not in the plan
    assert snap["nodes"]["node4"]["fib"] == [
        {"prefix": "10.244.9.0/26", "type": "unicast", "via": "10.0.0.9", "dev": "eth0",
         "onlink": False}
    ]  # fmt: skip


def test_fib_sorted_numerically_ipv4_before_ipv6() -> None:
    prefixes_in = ["fd00::/122", "10.244.10.0/26", "10.244.9.0/26", "10.244.9.0/24"]
    fibs = {"node1": [_route(p, None, "x") for p in prefixes_in]}
    prefixes = [r["prefix"] for r in normalize(PLAN, {}, fibs)["nodes"]["node1"]["fib"]]
    assert prefixes == ["10.244.9.0/24", "10.244.9.0/26", "10.244.10.0/26", "fd00::/122"]


# --- files ----------------------------------------------------------------------------------


def test_write_read_round_trip_is_deterministic(tmp_path: Path) -> None:
    snap = _snapshot()
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    write_snapshot(a, snap)
    write_snapshot(b, copy.deepcopy(snap))
    text = a.read_text()
    assert text == b.read_text()
    assert text.endswith("}\n") and not text.endswith("\n\n")
    assert text.index('"format"') < text.index('"lab"') < text.index('"nodes"')  # sorted keys
    assert read_snapshot(a) == snap
    assert [p.name for p in tmp_path.iterdir()] != [] and not any(
        p.name.endswith(".tmp") for p in tmp_path.iterdir()
    )


def test_read_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        read_snapshot(tmp_path / "nope.json")
    problem = err.value.problems[0]
    assert problem.location == str(tmp_path / "nope.json")
    assert "no such snapshot" in problem.message and problem.hint


def test_read_invalid_json_is_located(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{\n  "format": "meshemu-snapshot/1",\n  "lab": oops\n}\n')
    with pytest.raises(ConfigError) as err:
        read_snapshot(path)
    assert err.value.problems[0].location == f"{path}:3:10"
    assert "not valid JSON" in err.value.problems[0].message


def test_read_wrong_structure_lists_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "wrong.json"
    data = {
        "format": "meshemu-snapshot/0",
        "lab": 3,
        "nodes": {"node1": {"sessions": [{"peer_ip": "10.0.0.2"}], "fib": "none"}, "node2": []},
    }
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError) as err:
        read_snapshot(path)
    locations = [p.location for p in err.value.problems]
    assert locations == [
        f"{path}: format",
        f"{path}: lab",
        f"{path}: nodes.node1.sessions[0]",
        f"{path}: nodes.node1.fib",
        f"{path}: nodes.node2",
    ]
    assert "kind, peer_node, state" in err.value.problems[2].message
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="JSON object"):
        read_snapshot(path)


# --- diff -----------------------------------------------------------------------------------


def test_identical_snapshots_have_no_changes() -> None:
    assert diff_snapshots(_snapshot(), _snapshot()) == []
    assert render_diff([]) == "no differences\n"


def test_route_changes_are_classified() -> None:
    before = _snapshot()
    after = copy.deepcopy(before)
    fib = after["nodes"]["node1"]["fib"]
    fib[1]["via"] = "10.0.0.22"  # 10.244.1.0/26: next hop changed
    fib[2]["dev"], fib[2]["onlink"] = "eth0", False  # 10.244.2.0/26 left the tunnel
    del fib[0]  # the blackhole is gone
    fib.append(_route("10.244.7.0/26", "10.0.0.7", "eth0"))
    after["nodes"]["node2"]["fib"][0]["type"] = "local"  # any other difference
    changes = diff_snapshots(before, after)
    assert [(c.node, c.kind, c.prefix_or_peer) for c in changes] == [
        ("node1", "route removed", "10.244.0.0/26"),
        ("node1", "next hop changed", "10.244.1.0/26"),
        ("node1", "device changed", "10.244.2.0/26"),
        ("node1", "route added", "10.244.7.0/26"),
        ("node2", "route changed", "10.244.1.0/26"),
    ]
    assert changes[0] == Change("node1", "route removed", "10.244.0.0/26",
                                "blackhole 10.244.0.0/26", None)  # fmt: skip
    assert changes[2].before == "10.244.2.0/26 via 10.0.1.3 dev tunl0 onlink"
    assert changes[2].after == "10.244.2.0/26 via 10.0.1.3 dev eth0"
    assert changes[3].before is None and changes[3].after == "10.244.7.0/26 via 10.0.0.7 dev eth0"
    assert all(c.kind in KINDS for c in changes)


def test_session_rib_and_node_changes() -> None:
    before = _snapshot()
    after = copy.deepcopy(before)
    node1 = after["nodes"]["node1"]
    node1["sessions"][1]["state"] = "active"
    node1["sessions"].append({"peer_ip": "10.0.9.9", "peer_node": None, "kind": "global",
                              "state": "established"})  # fmt: skip
    del node1["sessions"][0]
    node1["rib"][1]["next_hop"] = "10.0.1.4"
    node1["rib"][1]["cluster_list"] = ["1.1.1.1"]
    del after["nodes"]["node3"]
    after["nodes"]["node4"] = {"sessions": [], "rib": [], "fib": []}
    changes = diff_snapshots(before, after)
    assert [(c.node, c.kind, c.prefix_or_peer) for c in changes] == [
        ("node1", "session removed", "10.0.0.2"),
        ("node1", "session state changed", "10.0.1.3"),
        ("node1", "session added", "10.0.9.9"),
        ("node1", "rib changed", "10.244.2.0/26"),
        ("node3", "node removed", ""),
        ("node4", "node added", ""),
    ]
    assert changes[1].before == "node3 (mesh) established"
    assert changes[1].after == "node3 (mesh) active"
    assert changes[2].after == "external peer (global) established"
    assert changes[3].before == "next hop 10.0.1.3, from 10.0.1.3"
    assert changes[3].after == "next hop 10.0.1.4, from 10.0.1.3, cluster list 1.1.1.1"
    assert changes[5].after == "0 sessions, 0 best paths, 0 routes"


def test_diff_is_directional() -> None:
    before = _snapshot()
    after = copy.deepcopy(before)
    after["nodes"]["node2"]["fib"] = []
    assert [c.kind for c in diff_snapshots(before, after)] == ["route removed"]
    assert [c.kind for c in diff_snapshots(after, before)] == ["route added"]


def test_render_diff_groups_per_node() -> None:
    before = _snapshot()
    after = copy.deepcopy(before)
    after["nodes"]["node1"]["fib"][2]["dev"] = "eth0"
    after["nodes"]["node1"]["sessions"][0]["state"] = "idle"
    after["nodes"]["node2"]["fib"] = []
    text = render_diff(diff_snapshots(before, after))
    lines = text.splitlines()
    assert lines[0] == "node1: 2 changes"
    assert lines[1].split() == ["session", "state", "changed", "10.0.0.2:", "node2", "(mesh)",
                                "established"]  # fmt: skip
    assert lines[2].strip() == "-> node2 (mesh) idle"
    assert lines[3].split()[:3] == ["device", "changed", "10.244.2.0/26"]  # prefix said once
    assert lines[3].count("10.244.2.0/26") == 1
    assert lines[4].strip() == "-> 10.244.2.0/26 via 10.0.1.3 dev eth0 onlink"
    assert lines[5] == "node2: 1 change"
    assert "route removed" in lines[6] and "10.244.1.0/26 dev lo" in lines[6]
    assert text.endswith("\n")


def test_change_text() -> None:
    change = Change("n1", "next hop changed", "10.0.0.0/26", "via a", "via b")
    assert change.text() == "next hop changed: 10.0.0.0/26: via a -> via b"
    assert Change("n1", "node added", "", None, "x").text() == "node added: x"


@pytest.mark.timeout(10)
@pytest.mark.parametrize("kind", ["fifo", "folder", "binary", "deep"])
def test_diff_of_a_file_that_is_no_snapshot_is_exit_2(
    tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Once `meshemu diff` read snapshots without bound: a FIFO hung it, a deep file crashed."""
    from meshemu.cli import main

    path = tmp_path / "snap.json"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    elif kind == "binary":
        path.write_bytes(b"\xff\xfe\x00garbage")
    else:
        path.write_text("[" * 100_000 + "]" * 100_000)
    assert main(["diff", str(path), str(path)]) == 2
    assert "Traceback" not in capsys.readouterr().err
