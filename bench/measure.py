"""One benchmark run of one lab: every phase timed, memory and idle CPU read from /proc.

Owns the measurement of a lab through meshemu's own entry points (`build_plan`, `up`, `down`,
`verify_lab`, the speaker stop/start of live changes), and the guarantee that every lab it
creates is brought down: `down` runs in a `finally`, after Ctrl-C or SIGTERM too.

Figures (seconds unless named otherwise):
- plan: topology read and validated, plan built;
- dataplane: namespaces, links, addresses, neighbours, pods (`up`'s nodes + pods phases);
- speakers: tunnels, route programmer and speakers started, start gate open;
- converged: from the gate to every node's kernel FIB equal to the plan;
- up: all of `up` (dataplane + speakers + converged);
- verify: `meshemu verify`'s observation and checks (control plane; `--verify-dataplane` adds
  the packets);
- withdraw: one node's speaker stopped as a configuration change stops it (its agent withdraws
  first; a BIRD node sends a Cease) until its blocks left the FIB of every node that had them;
- announce: that speaker started again until its blocks are back in every such FIB;
- down: `meshemu down`;
- rss_mb / pss_mb: per node, every process in the node's namespace (ExaBGP with its agent
  thread, BIRD, tunnel) plus its share (1/N) of the lab-wide ones (route programmer, shared
  tunnel);
- idle_cpu: CPU of all the lab's processes over a quiet window after convergence, percent of
  one core; and (`cpu` in the JSON) the CPU seconds each kind of process used to come up.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.topologies import lab_name, topology
from meshemu.dataplane import build
from meshemu.dataplane.netlink import RouteWatch, pids_in_netns
from meshemu.lab import down, live, supervise, up
from meshemu.lab.lifecycle import record_netns
from meshemu.lab.preflight import preflight
from meshemu.model.load import load_topology
from meshemu.model.plan import LabPlan, NodePlan, build_plan
from meshemu.state import LabState, LabSummary

Say = Callable[[str], None]
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Options:
    idle_seconds: float = 5.0
    verify_dataplane: bool = False
    timeout: float | None = None  # up's convergence limit; default 60 s + 1 s per node
    events_timeout: float = 30.0


@dataclass
class Run:
    """The figures of one run; `figures` holds what was measured (a failed step: absent)."""

    kind: str
    nodes: int
    speaker: str
    rep: int
    figures: dict[str, float] = field(default_factory=dict)
    memory: dict[str, float] = field(default_factory=dict)  # per node, MB, by role
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds used by `up`, by role
    converged: bool = False
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "nodes": self.nodes,
            "speaker": self.speaker,
            "rep": self.rep,
            "converged": self.converged,
            "figures": self.figures,
            "memory": self.memory,
            "cpu": self.cpu,
            "error": self.error,
        }


def _write_topology(folder: Path, kind: str, nodes: int, speaker: str) -> Path:
    path = folder / f"{lab_name(kind, nodes, speaker)}.yaml"
    path.write_text(yaml.safe_dump(topology(kind, nodes, speaker), sort_keys=False))
    return path


def clear_leftover(name: str, say: Say) -> None:
    """A lab of this name left by an interrupted earlier run (its state folder) goes first."""
    if LabState(name).dir.is_dir():
        say(f"  {name}: a previous run left it up; bringing it down first")
        down(name, progress=lambda _m: None)


def run_lab(kind: str, nodes: int, speaker: str, rep: int, options: Options, say: Say) -> Run:
    """Up, measure, down; never leaves the lab behind."""
    result = Run(kind, nodes, speaker, rep)
    name = lab_name(kind, nodes, speaker)
    clear_leftover(name, say)
    with tempfile.TemporaryDirectory(prefix="meshemu-bench-") as folder:
        path = _write_topology(Path(folder), kind, nodes, speaker)
        started = time.monotonic()
        topo = load_topology(path)
        plan = build_plan(topo)
        result.figures["plan"] = time.monotonic() - started
        with _always_down(name, result, say):
            limit = options.timeout if options.timeout is not None else 60 + nodes
            outcome = up(plan, topo, path, progress=lambda _m: None, timeout=limit)
            seconds = outcome.seconds
            result.converged = outcome.converged
            result.figures["dataplane"] = sum(seconds.get(k, 0.0) for k in ("nodes", "pods"))
            result.figures["speakers"] = sum(
                seconds.get(k, 0.0) for k in ("tunnels", "routers", "speakers")
            )
            if outcome.converged:  # a lab that timed out has no "up" time, only its limit
                result.figures["converged"] = seconds["converged"]
                result.figures["up"] = seconds["total"]
                _measure_running(plan, result, options, say)
            else:  # what it cost so far says where the time went
                result.cpu = cpu_by_role(plan)
                result.memory = memory_per_node(plan)
                say(f"  {name}: not converged within {limit:.0f} s; CPU used {result.cpu}")
    return result


@contextlib.contextmanager
def _always_down(name: str, result: Run, say: Say) -> Iterator[None]:
    """The lab is brought down (and timed) however the block ends; an error of the block is
    the run's error, so one failed lab does not lose the others' figures (Ctrl-C and SIGTERM
    still end the benchmark, after the lab is down)."""
    try:
        yield
    except Exception as err:
        result.error = f"{type(err).__name__}: {err}"
        say(f"  {name}: {result.error}")
    finally:
        started = time.monotonic()
        down(name, progress=lambda _m: None)
        result.figures["down"] = time.monotonic() - started


def _measure_running(plan: LabPlan, result: Run, options: Options, say: Say) -> None:
    state = LabState(plan.name)
    result.cpu = cpu_by_role(plan)
    result.figures["up_cpu"] = result.cpu["total"]
    result.memory = memory_per_node(plan)
    result.figures["rss_mb"] = result.memory["rss"]
    result.figures["pss_mb"] = result.memory["pss"]
    result.figures["idle_cpu"] = idle_cpu(plan, options.idle_seconds)
    from meshemu.verify.run import verify_lab

    report, _observation = verify_lab(state, plan, dataplane=options.verify_dataplane)
    result.figures["verify"] = report.seconds
    failed = [r for r in report.results if not r.ok]
    if failed:
        say(f"  verify: {len(failed)} of {len(report.results)} checks failed")
    target = _probe_node(plan)
    withdrawn, announced = block_round_trip(plan, state, target, options.events_timeout, say)
    if withdrawn is not None:
        result.figures["withdraw"] = withdrawn
    if announced is not None:
        result.figures["announce"] = announced


def run_floor(nodes: int, say: Say) -> Run:
    """The dataplane alone (the mesh lab's namespaces, links, pods; no process), then down."""
    result = Run("floor", nodes, "exabgp", 0)
    name = lab_name("floor", nodes, "exabgp")
    clear_leftover(name, say)
    with tempfile.TemporaryDirectory(prefix="meshemu-bench-") as folder:
        path = _write_topology(Path(folder), "floor", nodes, "exabgp")
        topo = load_topology(path)
        plan = build_plan(topo)
        ipip = preflight(plan)
        state = LabState(name)
        state.create()
        state.write_summary(LabSummary(name, str(path), "creating", ipip, time.time()))
        with _always_down(name, result, say):
            record = record_netns(state)
            started = time.monotonic()
            build.build_nodes(plan, record, ipip_kernel=ipip == "kernel")
            build.build_pods(plan, record)
            result.figures["dataplane"] = time.monotonic() - started
            result.converged = True
    return result


# -- memory and CPU ---------------------------------------------------------------------------


def _smaps(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of a process in KiB; (0, 0) when it is gone."""
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    except (OSError, ValueError):
        pass
    return rss, pss


def role_of(pid: int) -> str:
    """What a lab process is, from its command line."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "gone"
    for marker, role in (
        # ExaBGP forked from the launcher, with the node's agent as one of its threads
        ("meshemu.controlplane.launcher", "speaker"),
        ("meshemu.dataplane.ipip_tun", "tunnel"),
        ("meshemu.dataplane.fibd", "fibd"),
        ("bird", "bird"),
    ):
        if marker in argv:
            return role
    return "other"


def lab_pids(plan: LabPlan) -> tuple[dict[str, list[int]], list[int]]:
    """Per node, the pids in its namespace; and the lab-wide pids (fabric, routers)."""
    per_node = {n.name: pids_in_netns(n.netns) for n in plan.nodes}
    shared = pids_in_netns(plan.fabric_netns)
    for router in plan.routers:
        shared += pids_in_netns(router.netns)
    return per_node, shared


def memory_per_node(plan: LabPlan) -> dict[str, float]:
    """Mean per node, MB: rss, pss, and pss by role (the lab-wide processes as `shared`)."""
    per_node, shared = lab_pids(plan)
    count = max(1, len(plan.nodes))
    totals: dict[str, float] = {"rss": 0.0, "pss": 0.0}
    for pids in [*per_node.values(), shared]:
        for pid in pids:
            rss, pss = _smaps(pid)
            role = "shared" if pid in shared else role_of(pid)
            totals["rss"] += rss
            totals["pss"] += pss
            totals[f"pss_{role}"] = totals.get(f"pss_{role}", 0.0) + pss
            totals[f"rss_{role}"] = totals.get(f"rss_{role}", 0.0) + rss
    return {k: round(v / count / 1024, 2) for k, v in totals.items()}


def cpu_by_role(plan: LabPlan) -> dict[str, float]:
    """CPU seconds the lab's running processes used so far (right after `up`: what bringing
    the lab up and converging cost), by role, and their total."""
    per_node, shared = lab_pids(plan)
    used: dict[str, float] = {}
    for pid in [p for pids in per_node.values() for p in pids] + shared:
        role = role_of(pid)
        used[role] = used.get(role, 0.0) + _ticks(pid) / TICKS
    used["total"] = sum(used.values())
    return {k: round(v, 2) for k, v in used.items()}


def _ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except (OSError, IndexError, ValueError):
        return 0


def idle_cpu(plan: LabPlan, seconds: float) -> float:
    """Percent of one core all the lab's processes use over `seconds` of a converged lab."""
    per_node, shared = lab_pids(plan)
    pids = [p for pids in per_node.values() for p in pids] + shared
    before = {p: _ticks(p) for p in pids}
    started = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - started
    used = sum(max(0, _ticks(p) - before[p]) for p in pids)
    return round(100.0 * used / TICKS / elapsed, 2)


# -- a block withdrawn and announced ------------------------------------------------------------


def _probe_node(plan: LabPlan) -> NodePlan:
    """The node whose blocks come and go: a client in the middle of the lab, not a reflector."""
    clients = [n for n in plan.nodes if n.cluster_id is None and n.blocks] or list(plan.nodes)
    return clients[len(clients) // 2]


def holders(plan: LabPlan, node: NodePlan) -> set[tuple[str, str]]:
    """(namespace, prefix) of every other node whose planned FIB has one of `node`'s blocks
    as learned over BGP (a route Felix writes, of an encapsulating pool, stays when the
    speaker stops, as in Calico)."""
    blocks = {b.cidr for b in node.blocks}
    return {
        (other.netns, route.prefix)
        for other in plan.nodes
        if other.name != node.name
        for route in other.fib
        if route.prefix in blocks and getattr(route, "source", "bgp") == "bgp"
    }


def wait_events(
    watch: RouteWatch, wanted: set[tuple[str, str]], added: bool, start: float, limit: float
) -> float | None:
    """Seconds from `start` until every (namespace, prefix) saw an event of this kind; None
    when some did not within `limit`."""
    left = set(wanted)
    last = start
    while left and time.monotonic() < start + limit:
        for event in watch.poll(0.05):
            key = (event.netns, event.prefix)
            if event.added == added and key in left:
                left.discard(key)
                last = event.seen
    return None if left else round(last - start, 3)


class _Worker(threading.Thread):
    """A lab action run beside the route watch; what it raised is kept, not printed."""

    def __init__(self, action: Callable[[], object]) -> None:
        super().__init__(daemon=True)
        self.action = action
        self.failure = ""

    def run(self) -> None:
        try:
            self.action()
        except Exception as err:
            self.failure = f"{type(err).__name__}: {err}"


def block_round_trip(
    plan: LabPlan, state: LabState, node: NodePlan, limit: float, say: Say
) -> tuple[float | None, float | None]:
    """Stop `node`'s speaker as a configuration change does (withdrawals first) and time its
    blocks leaving every FIB; start it again and time them coming back."""
    wanted = holders(plan, node)
    if not wanted:
        return None, None
    watch = RouteWatch(sorted({netns for netns, _prefix in wanted}))
    try:
        withdraw = node.speaker != "bird"
        results: list[float | None] = []
        for added, action in (
            (False, lambda: supervise.stop_speaker(state, node.name, withdraw=withdraw)),
            (True, lambda: live.start_speaker(state, plan, node.name)),
        ):
            watch.poll(0)  # drop what came before
            started = time.monotonic()
            worker = _Worker(action)
            worker.start()
            results.append(wait_events(watch, wanted, added, started, limit))
            worker.join()
            if worker.failure:
                say(f"  {node.name}: {'start' if added else 'stop'} said {worker.failure}")
        return results[0], results[1]
    finally:
        watch.close()
