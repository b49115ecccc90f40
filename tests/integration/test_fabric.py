"""The BGP fabric running: BIRD 2 routers with ExaBGP nodes, checked from the running lab.

- eBGP per rack through BIRD top-of-rack routers with `ipipMode: Never`
  (topologies/as-per-rack.yaml): converged, `verify` clean, traffic between racks routed
  through the routers unencapsulated and inside a rack node to node, the ToR's kernel routes
  installed by BIRD via the spine, BIRD's table (read over its control socket) equal to the plan.
- ExaBGP nodes as clients of BIRD route reflectors outside the cluster
  (topologies/external-rr.yaml): next hop, ORIGINATOR_ID and CLUSTER_LIST as planned, FIBs too.
- Calico's AS per rack (as-per-rack-ibgp.yaml) and a calicoctl export of it whose ToR BGPPeers
  become placed BIRD routers (calico-as-per-rack.yaml): `verify` clean.
- Lifecycle through the CLI: `status` names the routers, a killed BIRD fails `verify` naming
  its router, `repair` restarts it, `down` leaves no BIRD and no namespace.
- A user's own BIRD configuration for a ToR: run as given, reported (SKIP) rather than judged;
  an invalid one refused by `up` with BIRD's file:line:col and nothing created.

Every lab here is named `itf...` and lives under this module's own state root; each is brought
down by the fixture or test that brought it up, and the module ends with a leak check.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from meshemu import process
from meshemu.controlplane.birdc import BirdControl
from meshemu.dataplane.netlink import read_fib
from meshemu.lab import down, up
from meshemu.lab.converge import fib_diffs
from meshemu.model.load import load_topology
from meshemu.model.plan import LabPlan, RouterPlan, build_plan
from meshemu.state import LabState
from meshemu.verify.bird_output import BirdRoute, parse_protocols, parse_routes
from meshemu.verify.observe import fresh_agent_states, observe_health
from meshemu.verify.run import verify_lab

from .conftest import TOPOLOGIES, lab_leftovers

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "meshemu.cli"]
DATA = Path(__file__).resolve().parent / "data"
TIMEOUT = float(os.environ.get("IT_TIMEOUT", 60))
RTPROT_BIRD = 12  # linux/rtnetlink.h: the routing protocol number of routes BIRD installs
NETNS_DIR = Path("/run/netns")


# -- the module's labs -------------------------------------------------------------------------


class Labs:
    """This module's state root and the labs it brought up (for the final leak check)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.names: list[str] = []

    @contextlib.contextmanager
    def running(self, topology: Path, name: str) -> Iterator[LabPlan]:
        """The lab `name` up and converged from `topology` (API), brought down afterwards."""
        topo = load_topology(topology, name=name)
        plan = build_plan(topo)
        self.names.append(name)
        try:
            result = up(plan, topo, topology, progress=print, timeout=TIMEOUT)
            assert result.converged, [line for d in result.diffs for line in d.describe()]
            yield plan
        finally:
            down(name, progress=print)


@pytest.fixture(scope="module")
def labs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Labs]:
    if os.geteuid() != 0:
        pytest.skip("integration tests need root (network namespaces)")
    # A short private root: BIRD's control sockets live in it (107 bytes at most).
    root = tmp_path_factory.mktemp("fabric")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MESHEMU_STATE_DIR", str(root))
        registry = Labs(root)
        yield registry
        leaked = {}
        for name in registry.names:
            down(name, progress=lambda _m: None)  # idempotent: nothing to do when already down
            deadline = time.monotonic() + 5
            while (left := lab_leftovers(name, root / name)) and time.monotonic() < deadline:
                time.sleep(0.1)
            if left:
                leaked[name] = left
        assert not leaked, f"labs leaked: {leaked}"


def cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    started = time.monotonic()
    run = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)
    print(f"meshemu {' '.join(args)}: exit {run.returncode} in {time.monotonic() - started:.2f}s")
    return run


def verify_json(lab: str, *options: str) -> tuple[int, dict[str, Any]]:
    run = cli("verify", lab, "--json", *options)
    assert run.stdout.strip(), run.stderr
    return run.returncode, json.loads(run.stdout)


def failures(report: dict[str, Any]) -> list[str]:
    return [
        f"{r['category']} {r['name']}: {r['observed']} ({r['diagnosis']})"
        for r in report["results"]
        if r["status"] == "fail"
    ]


def wait_for(predicate: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds}s waiting for {what}")
        time.sleep(0.05)


def router_plan(plan: LabPlan, name: str) -> RouterPlan:
    return next(r for r in plan.routers if r.name == name)


def bgp_router_index(plan: LabPlan, name: str) -> int:
    """The router's index among all routers: its control socket is `bird-<index>.ctl`."""
    return next(i for i, r in enumerate(plan.routers) if r.name == name)


def bird_routes(plan: LabPlan, router: str) -> list[BirdRoute]:
    """Every route of the router's BIRD (both tables), read over its control socket."""
    control = BirdControl(LabState(plan.name).bird_socket(bgp_router_index(plan, router)))
    routes: list[BirdRoute] = []
    for table in ("master4", "master6"):
        routes += parse_routes(control.command(f"show route all table {table}").lines)
    return routes


def rack_of(plan: LabPlan, pod: str) -> str:
    """The subnet (rack) of the node of `node/pod`."""
    return plan.node(pod.split("/")[0]).subnet


def observed_paths(plan: LabPlan, report: dict[str, Any]) -> dict[tuple[str, str, int], str]:
    """(source pod, target pod, family) -> the path verify saw on the wire."""
    return {
        (d["source"], d["target"], d["family"]): d["observed_path"]
        for r in report["results"]
        if r["category"] == "dataplane"
        for d in [r["details"]]
    }


def assert_routed_by_racks(plan: LabPlan, paths: dict[tuple[str, str, int], str]) -> None:
    """Every pair of pods, both families, probed; between racks through a router without
    encapsulation, inside a rack node to node, on one node locally."""
    pods = [f"{n.name}/{p.name}" for n in plan.nodes for p in n.pods]
    assert len(paths) == 2 * len(pods) * (len(pods) - 1), len(paths)
    wrong = {}
    for (source, target, family), seen in paths.items():
        if source.split("/")[0] == target.split("/")[0]:
            want = "local"
        elif rack_of(plan, source) == rack_of(plan, target):
            want = "direct"
        else:
            want = "router"
        if seen != want:
            wrong[f"ipv{family} {source} -> {target}"] = f"{seen}, expected {want}"
    assert not wrong, wrong


# -- 1. eBGP per rack through BIRD ToRs, ipipMode Never ----------------------------------------


@pytest.fixture(scope="module")
def asrack(labs: Labs) -> Iterator[LabPlan]:
    with labs.running(TOPOLOGIES / "as-per-rack.yaml", "itfasr") as plan:
        yield plan


def test_as_per_rack_verify_passes_and_racks_talk_through_the_routers(asrack: LabPlan) -> None:
    plan = asrack
    # No encapsulation anywhere: what crosses racks can only be routed by the fabric.
    assert {(p.ipip_mode, p.vxlan_mode) for p in plan.pools} == {("Never", "Never")}
    code, report = verify_json(plan.name)
    assert failures(report) == [] and code == 0 and report["ok"]
    # The routers were judged, not skipped: every BGP router has passing sessions, RIB, FIB.
    judged = {
        (r["node"], r["category"])
        for r in report["results"]
        if r["status"] == "pass" and r["category"] in ("sessions", "rib", "fib")
    }
    for router in ("tor1", "tor2", "spine"):
        assert {(router, c) for c in ("sessions", "rib", "fib")} <= judged, router
    assert report["summary"]["skip"] == 0
    assert_routed_by_racks(plan, observed_paths(plan, report))


def test_tor_kernel_routes_to_the_other_rack_go_via_the_spine_installed_by_bird(
    asrack: LabPlan,
) -> None:
    plan = asrack
    tor1, spine = router_plan(plan, "tor1"), router_plan(plan, "spine")
    uplink = tor1.interface_on("uplink1")
    spine_side = spine.interface_on("uplink1")
    assert uplink is not None and spine_side is not None
    other_rack = [b.cidr for n in plan.nodes if n.subnet == "rack2" for b in n.blocks]
    assert len(other_rack) == 4  # node3 and node4, IPv4 and IPv6
    fib = {r.prefix: r for r in read_fib(tor1.netns)}
    got = {
        prefix: (fib[prefix].via, fib[prefix].dev, fib[prefix].reason) if prefix in fib else None
        for prefix in other_rack
    }
    want = {
        prefix: (
            spine_side.address(6 if ":" in prefix else 4),
            uplink.ifname,
            f"proto {RTPROT_BIRD}",
        )
        for prefix in other_rack
    }
    assert got == want
    # The rack's own blocks: straight to the node that owns them, also from BIRD.
    for node in plan.nodes:
        if node.subnet != "rack1":
            continue
        for block in node.blocks:
            route = fib.get(block.cidr)
            assert route is not None, block.cidr
            address = node.ipv6 if ":" in block.cidr else node.ipv4
            assert (route.via, route.reason) == (address, f"proto {RTPROT_BIRD}"), route


@pytest.mark.parametrize("router", ["tor1", "tor2", "spine"])
def test_bird_table_read_over_its_control_socket_equals_the_plan(
    asrack: LabPlan, router: str
) -> None:
    plan = asrack
    bgp = router_plan(plan, router).bgp
    assert bgp is not None and bgp.routes
    routes = [r for r in bird_routes(plan, router) if r.source == "BGP"]
    selected = {r.prefix: (r.bgp_next_hop, r.as_path) for r in routes if r.selected}
    assert selected == {r.prefix: (r.next_hop, r.as_path) for r in bgp.routes}
    # Each best path came from the planned neighbour, among as many candidates as planned.
    for want in bgp.routes:
        best = next(r for r in routes if r.prefix == want.prefix and r.selected)
        learned_from = best.from_address or best.next_hops[0].gateway
        assert learned_from == want.learned_from, (want.prefix, learned_from)
        assert sum(r.prefix == want.prefix for r in routes) == want.paths, want.prefix


# -- 2. ExaBGP nodes as clients of BIRD route reflectors ---------------------------------------


@pytest.fixture(scope="module")
def extrr(labs: Labs) -> Iterator[LabPlan]:
    with labs.running(TOPOLOGIES / "external-rr.yaml", "itfexr") as plan:
        yield plan


def test_nodes_learn_every_block_reflected_by_bird_with_originator_and_cluster_list(
    extrr: LabPlan,
) -> None:
    plan = extrr
    state = LabState(plan.name)
    reflectors = {r.name: r for r in plan.routers if r.bgp is not None}
    assert set(reflectors) == {"rr1", "rr2"}
    cluster_of: dict[str, str] = {}  # reflector address (either family) -> its cluster ID
    for rr in reflectors.values():
        assert rr.bgp is not None and rr.bgp.cluster_id is not None
        for interface in rr.interfaces:
            for address in (interface.ipv4, interface.ipv6):
                if address:
                    cluster_of[address] = rr.bgp.cluster_id
    clusters = sorted(set(cluster_of.values()))
    assert len(clusters) == 2  # two clusters: a node holds one path from each
    agents = fresh_agent_states(state, plan, observe_health(state, plan))
    for node in plan.nodes:
        agent = agents[node.name]
        assert agent is not None, node.name
        learned = [e for e in agent["rib"] if e["learned_from"] is not None]
        for other in plan.nodes:
            if other.name == node.name:
                continue
            for block in other.blocks:
                family = 6 if ":" in block.cidr else 4
                paths = [e for e in learned if e["prefix"] == block.cidr]
                # One path from each reflector, both naming the originating node.
                assert sorted(cluster_of[e["learned_from"]] for e in paths) == clusters, (
                    node.name,
                    block.cidr,
                    paths,
                )
                for path in paths:
                    where = (node.name, block.cidr, path["learned_from"])
                    assert path["next_hop"] == (other.ipv6 if family == 6 else other.ipv4), where
                    assert path["originator_id"] == other.ipv4, where
                    assert path["cluster_list"] == [cluster_of[path["learned_from"]]], where
                best = [e for e in paths if e["best"]]
                assert len(best) == 1, (node.name, block.cidr)
                planned = next(r for r in node.rib if r.prefix == block.cidr)
                assert (
                    best[0]["next_hop"],
                    best[0]["originator_id"],
                    tuple(best[0]["cluster_list"]),
                ) == (planned.next_hop, planned.originator_id, planned.cluster_list)
        # Nothing learned beyond the other nodes' blocks.
        others = {b.cidr for o in plan.nodes if o.name != node.name for b in o.blocks}
        assert {e["prefix"] for e in learned} == others, node.name


def test_reflected_fibs_equal_the_plan_and_verify_rib_checks_pass(extrr: LabPlan) -> None:
    plan = extrr
    diffs = fib_diffs(plan)
    assert [line for d in diffs for line in d.describe()] == []
    # Every node's FIB and every reflector's were compared (and are equal to the plan).
    assert {d.node for d in diffs} == {n.name for n in plan.nodes} | {"rr1", "rr2"}
    # The reflected next hop is the originating node: a rack neighbour's block is routed
    # straight to it on the rack's interface.
    node1, node2 = plan.node("node1"), plan.node("node2")
    fib = {r.prefix: r for r in read_fib(node1.netns)}
    for block in node2.blocks:
        via = node2.ipv6 if ":" in block.cidr else node2.ipv4
        assert (fib[block.cidr].via, fib[block.cidr].dev) == (via, "eth0"), fib[block.cidr]
    # The reflectors' own tables (BIRD, over its control socket): each block with the
    # originating node as next hop and an empty AS path (iBGP), as planned.
    for name in ("rr1", "rr2"):
        bgp = router_plan(plan, name).bgp
        assert bgp is not None
        selected = {
            r.prefix: (r.bgp_next_hop, r.as_path)
            for r in bird_routes(plan, name)
            if r.source == "BGP" and r.selected
        }
        owners = {b.cidr: n for n in plan.nodes for b in n.blocks}
        assert (
            selected
            == {p: (n.ipv6 if ":" in p else n.ipv4, ()) for p, n in owners.items()}
            == {r.prefix: (r.next_hop, r.as_path) for r in bgp.routes}
        ), name
    report, _ = verify_lab(LabState(plan.name), plan, dataplane=False)
    rib = [r for r in report.results if r.category == "rib" and r.node in {"node1", "node2"}]
    assert len(rib) == 2 and all(r.status == "pass" for r in rib), [r.observed for r in rib]
    assert report.failures() == [], [r.diagnosis for r in report.failures()]


# -- 3. Calico's AS per rack: native and as a calicoctl export -----------------------------------


@pytest.mark.parametrize(
    ("topology", "name"),
    [("as-per-rack-ibgp.yaml", "itfibgp"), ("calico-as-per-rack.yaml", "itfcal")],
)
def test_calico_as_per_rack_verify_passes(labs: Labs, topology: str, name: str) -> None:
    with labs.running(TOPOLOGIES / topology, name) as plan:
        routers = [r for r in plan.routers if r.bgp is not None]
        reflectors = [r for r in routers if r.bgp is not None and r.bgp.cluster_id is not None]
        assert len(reflectors) == 2 and len(routers) == 3, [r.name for r in routers]
        report, observation = verify_lab(LabState(plan.name), plan)
        assert report.failures() == [], [f"{r.name}: {r.diagnosis}" for r in report.failures()]
        judged = {r.node for r in report.results if r.category == "rib" and r.status == "pass"}
        assert {r.name for r in routers} <= judged
        paths = {
            (c.cell.source, c.cell.target, c.cell.family): c.observed_path
            for c in observation.matrix
        }
        assert_routed_by_racks(plan, paths)


# -- 4. Lifecycle: status, a dead BIRD, repair, down ---------------------------------------------


def test_status_kill_bird_verify_names_it_repair_and_down_leaves_nothing(labs: Labs) -> None:
    name = "itflife"
    labs.names.append(name)
    topology = TOPOLOGIES / "as-per-rack-ibgp.yaml"
    plan = build_plan(load_topology(topology, name=name))
    try:
        started = cli("up", str(topology), "--name", name)
        assert started.returncode == 0, started.stdout + started.stderr
        assert "converged" in started.stdout

        status = cli("status", name, "--json")
        assert status.returncode == 0, status.stdout + status.stderr
        routers = {r["name"]: r for r in json.loads(status.stdout)["routers"]}
        assert set(routers) == {"tor1", "tor2", "spine"}
        for router in plan.routers:
            assert router.bgp is not None
            seen = routers[router.name]
            assert seen["bird"] == "running", seen
            assert {s["peer_ip"]: s["state"] for s in seen["sessions"]} == {
                s.peer_ip: "established" for s in router.bgp.sessions
            }
        text = cli("status", name).stdout
        assert f"router tor1 ({router_plan(plan, 'tor1').netns}): BIRD running" in text

        state = LabState(name)
        victim = state.process("bird:tor1")
        assert victim is not None and victim.pid is not None
        assert process.command_line(victim.pid)[0].endswith("bird")
        killed = victim.pid
        os.kill(killed, signal.SIGKILL)
        wait_for(lambda: not process.exists(killed), 5, "tor1's BIRD to die")

        # Without packets: with a rack cut off, each probe would wait for its timeout.
        code, report = verify_json(name, "--no-dataplane")
        assert code == 1 and not report["ok"]
        dead = [
            r
            for r in report["results"]
            if r["status"] == "fail" and r["category"] == "health" and r["node"] is not None
        ]
        assert [r["node"] for r in dead] == ["tor1"], dead
        assert "tor1's BIRD is not running" in dead[0]["diagnosis"]
        # rack 1's nodes lose their sessions with tor1, and verify says tor1 is why.
        lost = [
            r
            for r in report["results"]
            if r["status"] == "fail" and r["category"] == "sessions" and r["node"] in ("node1",)
        ]
        assert lost and all("tor1" in r["diagnosis"] for r in lost), lost
        down_status = cli("status", name)
        assert down_status.returncode == 1 and "tor1: BIRD dead" in down_status.stdout

        repaired = cli("repair", name)
        assert repaired.returncode == 0, repaired.stdout + repaired.stderr
        assert "BIRD restarted: tor1" in repaired.stdout
        again = state.process("bird:tor1")
        assert again is not None and again.pid != victim.pid
        assert process.same_process(again.pid, again.start_time)
        code, report = verify_json(name)
        assert code == 0 and failures(report) == []

        birds = [r for r in state.resources() if r.kind == "process" and r.name.startswith("bird:")]
        assert {r.name for r in birds} == {"bird:tor1", "bird:tor2", "bird:spine"}
        namespaces = [
            plan.fabric_netns,
            *(r.netns for r in plan.routers),
            *(n.netns for n in plan.nodes),
            *(p.netns for n in plan.nodes for p in n.pods),
        ]
        assert all((NETNS_DIR / ns).exists() for ns in namespaces)
    finally:
        gone = cli("down", name)
    assert gone.returncode == 0, gone.stdout + gone.stderr
    alive = [r for r in birds if process.same_process(r.pid, r.start_time)]
    assert alive == []
    assert [ns for ns in namespaces if (NETNS_DIR / ns).exists()] == []
    assert not (labs.root / name).exists()


# -- 5. A user's own BIRD configuration for a ToR ------------------------------------------------

OWN_CONFIG = DATA / "tor1-own.conf"
OWN_PROTOCOLS = {
    "rack1_server1_v4",
    "rack1_server1_v6",
    "rack1_server2_v4",
    "rack1_server2_v6",
    "uplink_spine_v4",
    "uplink_spine_v6",
}


def assert_own_bird(plan: LabPlan, router: str, config: Path) -> None:
    """The router's running BIRD was started with `config`, the user's file, and runs its
    protocols (not meshemu's rendering, which is never written)."""
    state = LabState(plan.name)
    bird = state.process(f"bird:{router}")
    assert bird is not None and process.same_process(bird.pid, bird.start_time)
    assert bird.pid is not None
    argv = process.command_line(bird.pid)
    assert argv[argv.index("-c") + 1] == str(config.resolve()), argv
    assert not (state.dir / "routers" / router / "bird.conf").exists()
    control = BirdControl(state.bird_socket(bgp_router_index(plan, router)))
    protocols = parse_protocols(control.command("show protocols all").lines)
    assert {p.name for p in protocols if p.proto == "BGP"} == OWN_PROTOCOLS


def own_config_topology(folder: Path, config_text: str) -> tuple[Path, Path]:
    """as-per-rack.yaml with tor1 running `config_text` (a file in a subfolder, named relative
    to the topology file); the topology's path and the config's."""
    anchor = "      asNumber: 65101\n      peers: [{router: spine}]\n"
    text = (TOPOLOGIES / "as-per-rack.yaml").read_text()
    assert text.count(anchor) == 1  # tor1's block
    topology = folder / "own-tor.yaml"
    topology.write_text(text.replace(anchor, anchor + "      config: bird/tor1.conf\n"))
    config = folder / "bird" / "tor1.conf"
    config.parent.mkdir()
    config.write_text(config_text)
    return topology, config


def test_own_bird_config_is_run_and_reported_not_judged(labs: Labs, tmp_path: Path) -> None:
    topology, config = own_config_topology(tmp_path, OWN_CONFIG.read_text())
    plan = build_plan(load_topology(topology, name="itfown"))
    tor1 = router_plan(plan, "tor1")
    assert tor1.bgp is not None and tor1.bgp.config_file == str(config.resolve())
    with labs.running(topology, "itfown") as plan:
        state = LabState(plan.name)
        bird = state.process("bird:tor1")
        assert bird is not None and bird.pid is not None
        assert_own_bird(plan, "tor1", config)
        control = BirdControl(state.bird_socket(bgp_router_index(plan, "tor1")))
        sessions = parse_protocols(control.command("show protocols all").lines)
        assert all(p.established for p in sessions if p.proto == "BGP"), sessions

        status = cli("status", plan.name, "--json")
        tor1_status = next(r for r in json.loads(status.stdout)["routers"] if r["name"] == "tor1")
        assert tor1_status["config"] == str(config.resolve())

        code, report = verify_json(plan.name)
        assert code == 0 and failures(report) == []
        mine = [r for r in report["results"] if r["node"] == "tor1"]
        by_category: dict[str, set[str]] = {}
        for result in mine:
            by_category.setdefault(result["category"], set()).add(result["status"])
        assert by_category == {
            "health": {"pass"},  # BIRD runs and answers: judged even for the user's file
            "sessions": {"skip"},
            "rib": {"skip"},
            "fib": {"skip"},
        }, by_category
        rib = next(r for r in mine if r["category"] == "rib")
        blocks = sorted(b.cidr for n in plan.nodes for b in n.blocks)
        assert rib["observed"].startswith(f"learned {len(blocks)} BGP routes")
        assert all(b in rib["observed"] for b in blocks), rib["observed"]
        # The other routers and every node are judged, and pass.
        others = [r for r in report["results"] if r["node"] != "tor1"]
        assert others and all(r["status"] == "pass" for r in others), [
            r["name"] for r in others if r["status"] != "pass"
        ]
        assert {r["node"] for r in others if r["category"] == "rib"} >= {
            "node1",
            "node2",
            "node3",
            "node4",
            "tor2",
            "spine",
        }

        # A dead BIRD of the user's comes back from `repair` with the user's file again.
        killed = bird.pid
        os.kill(killed, signal.SIGKILL)
        wait_for(lambda: not process.exists(killed), 5, "tor1's BIRD to die")
        repaired = cli("repair", plan.name)
        assert repaired.returncode == 0, repaired.stdout + repaired.stderr
        assert "BIRD restarted: tor1" in repaired.stdout
        again = state.process("bird:tor1")
        assert again is not None and again.pid != bird.pid
        assert_own_bird(plan, "tor1", config)


def test_invalid_own_bird_config_is_refused_with_birds_location_and_nothing_created(
    labs: Labs, tmp_path: Path
) -> None:
    lines = OWN_CONFIG.read_text().splitlines(keepends=True)
    broken = next(i for i, line in enumerate(lines) if "neighbor 10.41.1.3 as" in line)
    lines[broken] = lines[broken].replace("neighbor", "neighbour")  # not a BIRD keyword
    topology, config = own_config_topology(tmp_path, "".join(lines))
    name = "itfbad"
    labs.names.append(name)
    run = cli("up", str(topology), "--name", name, timeout=60)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "routers.tor1.bgp.config" in run.stderr, run.stderr
    assert re.search(rf"{re.escape(str(config.resolve()))}:{broken + 1}:\d+", run.stderr), (
        run.stderr
    )
    assert not (labs.root / name).exists()
    assert lab_leftovers(name, labs.root / name) == []  # no namespace of the lab, no process
