"""Tests of the `meshemu validate` and `meshemu plan` commands: output contracts and exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from meshemu.cli import main

TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"
FLAGSHIP = str(TOPOLOGIES / "flagship.yaml")
RR = str(TOPOLOGIES / "route-reflectors.yaml")

NODE_KEYS = {"name", "ipv4", "ipv6", "subnet", "blocks", "sessions", "fib"}
SESSION_KEYS = {
    "peer_ip",
    "peer_as",
    "local_as",
    "kind",
    "passive",
    "rr_client",
    "cluster_id",
    "password",
}
FIB_KEYS = {"prefix", "via", "dev", "onlink", "type"}


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def plan_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    code, out, err = run(capsys, "plan", *args, "--json")
    assert code == 0, err
    assert err == ""
    data: dict[str, Any] = json.loads(out)
    return data


@pytest.mark.parametrize("path", [FLAGSHIP, RR])
def test_json_key_contract(capsys: pytest.CaptureFixture[str], path: str) -> None:
    data = plan_json(capsys, path)
    assert isinstance(data["nodes"], list) and data["nodes"]
    for node in data["nodes"]:
        assert set(node) >= NODE_KEYS, NODE_KEYS - set(node)
        assert isinstance(node["name"], str)
        assert isinstance(node["ipv4"], str) and isinstance(node["ipv6"], str)
        assert isinstance(node["subnet"], str)
        assert isinstance(node["blocks"], list)
        assert all(isinstance(b, str) and "/" in b for b in node["blocks"])
        assert node["sessions"], node["name"]
        for session in node["sessions"]:
            assert set(session) >= SESSION_KEYS, SESSION_KEYS - set(session)
            assert session["kind"] in {"mesh", "global", "node"}
            assert isinstance(session["passive"], bool)
            assert isinstance(session["rr_client"], bool)
            assert isinstance(session["password"], bool)
            assert isinstance(session["peer_as"], int) and isinstance(session["local_as"], int)
            assert session["cluster_id"] is None or isinstance(session["cluster_id"], str)
        for route in node["fib"]:
            assert set(route) >= FIB_KEYS, FIB_KEYS - set(route)
            assert route["type"] in {"unicast", "blackhole"}
            assert isinstance(route["onlink"], bool)
            if route["type"] == "blackhole":
                assert route["via"] is None and route["dev"] is None
            else:
                assert isinstance(route["dev"], str)


def test_json_flagship_values(capsys: pytest.CaptureFixture[str]) -> None:
    data = plan_json(capsys, FLAGSHIP)
    assert [n["name"] for n in data["nodes"]] == ["node1", "node2", "node3", "node4"]
    node1 = data["nodes"][0]
    assert node1["ipv4"] == "10.10.1.2" and node1["subnet"] == "rack1"
    assert node1["blocks"] == ["192.168.0.0/26", "fd80:24e2:f998:72d7::/122"]
    assert {s["kind"] for s in node1["sessions"]} == {"mesh"}
    assert all(s["password"] is False for s in node1["sessions"])
    route = next(r for r in node1["fib"] if r["prefix"] == "192.168.0.128/26")
    assert route == {**route, "via": "10.10.2.2", "dev": "tunl0", "onlink": True, "type": "unicast"}
    hole = next(r for r in node1["fib"] if r["prefix"] == "192.168.0.0/26")
    assert hole["type"] == "blackhole"


def test_json_rr_values(capsys: pytest.CaptureFixture[str]) -> None:
    data = plan_json(capsys, RR)
    rr1 = next(n for n in data["nodes"] if n["name"] == "rr1")
    clients = [s for s in rr1["sessions"] if s["rr_client"]]
    assert len(clients) == 8
    assert {s["cluster_id"] for s in clients} == {"244.0.0.1"}
    assert {s["kind"] for s in rr1["sessions"]} == {"node"}


def test_json_password_is_a_flag_not_the_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "pw.yaml"
    path.write_text(
        "name: pw\nsubnets:\n  lan: {ipv4: 10.0.0.0/24}\n"
        "nodes:\n  a: {subnet: lan}\n  b: {subnet: lan}\n"
        "pools:\n  p: {cidr: 192.168.0.0/16}\n"
        "bgp:\n  nodeMeshPassword: s3cret-value\n"
    )
    code, out, err = run(capsys, "plan", str(path), "--json")
    assert code == 0, err
    assert "s3cret-value" not in out
    data = json.loads(out)
    assert [s["password"] for n in data["nodes"] for s in n["sessions"]] == [True, True]


def test_json_node_filter(capsys: pytest.CaptureFixture[str]) -> None:
    data = plan_json(capsys, FLAGSHIP, "--node", "node3")
    assert [n["name"] for n in data["nodes"]] == ["node3"]
    assert data["nodes"][0]["ipv4"] == "10.10.2.2"


def test_text_node_filter(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "plan", FLAGSHIP, "--node", "node2")
    assert code == 0, err
    assert "node node2 " in out
    for other in ("node1", "node3", "node4"):
        assert f"node {other} " not in out
    assert "pools:" not in out  # the per-lab sections are left out


@pytest.mark.parametrize("extra", [[], ["--json"]])
def test_unknown_node_exit_2(capsys: pytest.CaptureFixture[str], extra: list[str]) -> None:
    code, out, err = run(capsys, "plan", FLAGSHIP, "--node", "node9", *extra)
    assert code == 2
    assert out == ""
    assert "node9" in err
    assert "Traceback" not in err


def test_validate_one_line_summary(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "validate", FLAGSHIP)
    assert code == 0
    assert err == ""
    lines = out.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("valid: lab flagship: 4 nodes, 2 subnets, 1 routers, 2 pools")
    assert "24 BGP sessions" in lines[0]
    assert "8 pods" in lines[0]


def test_validate_name_option(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "validate", FLAGSHIP, "--name", "other")
    assert code == 0
    assert out.startswith("valid: lab other:")


def test_plan_json_name_option(capsys: pytest.CaptureFixture[str]) -> None:
    data = plan_json(capsys, FLAGSHIP, "--name", "two")
    assert data["name"] == "two"
    assert data["nodes"][0]["netns"] == "meshemu.two.node1"


@pytest.mark.parametrize("path", [FLAGSHIP, RR])
def test_text_explains_every_session_and_route(
    capsys: pytest.CaptureFixture[str], path: str
) -> None:
    code, out, err = run(capsys, "plan", path)
    assert code == 0, err
    data = plan_json(capsys, path)
    lines = out.splitlines()
    sessions = sum(len(n["sessions"]) for n in data["nodes"])
    routes = sum(len(n["fib"]) for n in data["nodes"])
    whys = [line for line in lines if line.strip().startswith("why: ")]
    assert len(whys) == sessions + routes
    assert all(len(line.strip()) > len("why: ") + 10 for line in whys)
    # Each session / route line is immediately explained.
    for index, line in enumerate(lines):
        stripped = line.strip()
        is_route = stripped.startswith("blackhole ") or " via " in stripped or " dev " in stripped
        if line.startswith("    ") and not line.startswith("      ") and is_route:
            following = [x.strip() for x in lines[index + 1 : index + 3]]
            assert any(x.startswith("why: ") for x in following), line


def test_text_mentions_tunnel_reasons(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "plan", FLAGSHIP, "--node", "node1")
    assert code == 0
    assert "192.168.0.128/26 via 10.10.2.2 dev tunl0 onlink" in out
    assert "so IP-in-IP through tunl0" in out
    assert "so directly over eth0" in out
    assert "so VXLAN to its VTEP" in out
    assert "passive: 10.10.1.3 > 10.10.1.2 as text" in out


def test_text_rr_mentions_reflection(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "plan", RR, "--node", "node1")
    assert code == 0
    assert "reflected: originator 10.30.1.4, cluster list 244.0.0.1" in out
    code, out, _ = run(capsys, "plan", RR, "--node", "rr1")
    assert code == 0
    assert "route reflector, cluster ID 244.0.0.1" in out
    assert "rr-client (cluster 244.0.0.1)" in out


def test_plan_json_is_deterministic(capsys: pytest.CaptureFixture[str]) -> None:
    _, first, _ = run(capsys, "plan", FLAGSHIP, "--json")
    _, second, _ = run(capsys, "plan", FLAGSHIP, "--json")
    assert first == second


def test_output_cut_short_by_the_reader_is_no_traceback(tmp_path: Path) -> None:
    """`meshemu plan FILE | head -1`: the reader goes away; no BrokenPipeError traceback. The
    plan is far bigger than a pipe's buffer, so the writer is still writing when head exits."""
    import subprocess
    import sys

    nodes = "".join(f"  n{i}: {{subnet: lan}}\n" for i in range(40))
    topology = tmp_path / "big.yaml"
    topology.write_text(
        "name: big\nsubnets: {lan: {ipv4: 10.44.0.0/24}}\nnodes:\n" + nodes
        + "pools: {p: {cidr: 10.244.0.0/16}}\n"
    )  # fmt: skip
    done = subprocess.run(
        f"{sys.executable} -m meshemu.cli plan --json {topology} | head -c 10",
        shell=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout.startswith("{")
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr


def test_a_lab_without_bgp_says_so_in_the_summary() -> None:
    from meshemu.model.load import load_topology
    from meshemu.model.plan import build_plan
    from meshemu.report.plan_text import plan_summary

    plan = build_plan(load_topology(TOPOLOGIES / "calico-vxlan-nobgp.yaml"))
    assert "BGP off" in plan_summary(plan) and "BGP sessions" not in plan_summary(plan)
    assert "12 BGP sessions" in plan_summary(build_plan(load_topology(TOPOLOGIES / "mesh.yaml")))
