"""The lab's own processes: starting them, recording them, and knowing whether they still run.

Owns the route programmer (`fibd`, one per lab), the user-space `tunl0` of every node (one
process per lab, where the kernel has no `ipip`), the speakers (written configurations, then
the slim launcher forks them behind the start gate) and the per-node agent configuration.
Every process is recorded in the state folder with its pid and start time the moment it
exists, so `down` stops exactly it.

A node with `speaker: bird` runs BIRD 1.6 instead, as calico-node does: `bird` with confd's
bird.cfg for IPv4 and `bird6` with bird6.cfg for IPv6 (`model.calico_bird` renders them into
the node's folder), each `-d` (foreground, logging to the node's `bird.log` / `bird6.log`, as
calico-node starts them) inside the node's namespace, recorded as `speaker:<node>` (the
daemon of its first family) and `speaker6:<node>` (the `bird6` of a dual-stack node). They
have no agent: BIRD's kernel protocol programs the node's FIB (blackholes of its blocks,
learned routes), and `verify.observe` reads sessions and routes over their control sockets.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from meshemu import process
from meshemu.controlplane import agent_control
from meshemu.controlplane.agent import AGENT_CONFIG
from meshemu.controlplane.bird_tools import Bird1, bird1_binaries
from meshemu.controlplane.birdc import MAX_SOCKET_PATH
from meshemu.controlplane.launcher import LAUNCH_FILE
from meshemu.controlplane.speaker import exabgp_environment
from meshemu.dataplane.netlink import entered, in_netns, listening
from meshemu.errors import DataplaneError, EnvironmentProblem, SpeakerError
from meshemu.model import names
from meshemu.model.agent_config import agent_config_of
from meshemu.model.calico_bird import FILES, render_node_bird
from meshemu.model.plan import LabPlan, NodePlan
from meshemu.model.render import render_exabgp
from meshemu.model.topology import BgpSpec
from meshemu.state import LabState, Resource, write_json_atomic, write_text_atomic

# The interpreter of meshemu's own processes, named the same way whichever entry point (the
# `meshemu` script, `python -m meshemu.cli`, a test runner) started the lab, so that a
# rendered configuration only changes when its content does.
PYTHON = (
    str(Path(sys.prefix) / "bin" / "python3")
    if (Path(sys.prefix) / "bin" / "python3").exists()
    else sys.executable
)
GATE_FILE = "start-gate"
FIBD_READY = "fibd.ready"


def spawn(
    state: LabState, name: str, role: str, argv: list[str], log: Path, netns: str | None = None
) -> subprocess.Popen[bytes]:
    """Start and record a process; in `netns` when given.

    The calling thread enters the namespace and the child inherits it: without a `preexec_fn`
    Python starts the child with vfork instead of copying the CLI's whole address space (25 ms
    a process for the 200 daemons of a 100-node BIRD lab)."""
    with open(log, "ab") as handle, entered(netns) if netns else contextlib.nullcontext():
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=handle,
            start_new_session=True,
        )
    state.record(Resource("process", name, proc.pid, process.start_time(proc.pid), role))
    return proc


def _wait_for(ready: Path, proc: subprocess.Popen[bytes], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def start_fibd(state: LabState, plan: LabPlan) -> None:
    """The lab's route programmer, which applies every agent's kernel-route changes.

    It runs in the lab's fabric namespace, like every process of a lab runs in one of the
    lab's namespaces: even with the state folder lost, `down --recover` finds it there.
    """
    (state.dir / FIBD_READY).unlink(missing_ok=True)
    proc = spawn(
        state,
        "fibd",
        "fibd",
        [PYTHON, "-m", "meshemu.dataplane.fibd", "--state", str(state.dir)],
        state.dir / "fibd.log",
        netns=plan.fabric_netns,
    )
    if not _wait_for(state.dir / FIBD_READY, proc, 60):  # (a bound for failure: a busy machine)
        raise SpeakerError(f"the route programmer did not start; see {state.dir / 'fibd.log'}")


def wake_felix(state: LabState) -> None:
    """Felix's part of the route programmer writes every node's Felix routes again now (after
    a new plan, a link brought up, a repair), as Felix reacts to datastore and interface
    changes, instead of at its next periodic resync."""
    fibd = state.process("fibd")
    if fibd is not None and fibd.pid is not None and state.running("fibd"):
        process.send(fibd.pid, signal.SIGHUP)


def start_tunnels(state: LabState, nodes: list[NodePlan]) -> int:
    """User-space tunl0 for these nodes, all served by one process; waits until each is up
    and addressed.

    One process for the lab, not one per node: a Python process with pyroute2 costs about
    34 MB RSS, as much as a node's speaker and agent together. It runs in the lab's fabric
    namespace (like the route programmer) and opens each node's TUN device, raw socket and
    route monitor inside that node's namespace. It is recorded as `tunnel:<node>` for every
    node it serves (the same pid), so `status` and `repair` see each node's tunnel.
    """
    if not nodes:
        return 0
    specs = []
    for node in nodes:
        node_dir = state.node_dir(node.name)
        assert node.ipv4 is not None
        (node_dir / "tunnel.ready").unlink(missing_ok=True)
        specs.append(
            {
                "netns": node.netns,
                "local": node.ipv4,
                "ready": str(node_dir / "tunnel.ready"),
                "stats": str(node_dir / "tunnel.json"),
            }
        )
    spec = state.dir / f"tunnels-{nodes[0].name}.json"
    write_json_atomic(spec, {"nodes": specs, "stats_interval": 5.0})
    argv = [PYTHON, "-m", "meshemu.dataplane.ipip_tun", "--spec", str(spec)]
    log = state.dir / "tunnels.log"
    proc = spawn(
        state, f"tunnel:{nodes[0].name}", "tunnel", argv, log, netns=names.fabric_netns(state.name)
    )
    started = process.start_time(proc.pid)
    for node in nodes[1:]:
        state.record(Resource("process", f"tunnel:{node.name}", proc.pid, started, "tunnel"))
    deadline = time.monotonic() + 60 + 0.2 * len(nodes)  # (a bound for failure: a busy machine)
    for node in nodes:
        ready = state.node_dir(node.name) / "tunnel.ready"
        if not _wait_for(ready, proc, max(0.0, deadline - time.monotonic())):
            raise DataplaneError(f"user-space tunl0 of {node.name} did not start; see {log}")
        if node.ipip_tunnel_address:
            with in_netns(node.netns) as ns:
                ns.add_address(names.IPIP_DEVICE, node.ipip_tunnel_address, 32)
    return len(nodes)


def write_node_configs(
    plan: LabPlan, state: LabState, node: NodePlan, bgp: BgpSpec | None = None
) -> tuple[Path, bool, bool]:
    """Write a node's ExaBGP and agent configuration; say which of the two changed.

    A BIRD node's are its BIRD configuration files (its first family's main file is
    returned); it has no agent. `bgp` is the topology's bgp section the BIRD files need
    (BGPFilters, communities); by default the lab's saved topology's.
    """
    if node.speaker == "bird":
        return write_bird_configs(plan, state, node, bgp)
    node_dir = state.node_dir(node.name)
    if node.speaker == "none":
        return node_dir, False, False  # BGP off: no speaker, no agent, nothing to configure
    agent = [PYTHON, "-m", "meshemu.controlplane.agent", "--state", str(state.dir)]
    agent += ["--node", node.name]
    config = node_dir / "exabgp.conf"
    text = render_exabgp(plan, node, agent)
    speaker_changed = not config.exists() or config.read_text() != text
    if speaker_changed:
        config.write_text(text)
    agent_file = node_dir / AGENT_CONFIG
    # The BGPFilter rules its sessions apply come from the topology (the plan names them).
    if bgp is None and any(s.import_filters or s.export_filters for s in node.sessions):
        bgp = state.topology().bgp
    wanted = agent_config_of(plan, node.name, bgp=bgp).to_json()
    try:
        current = json.loads(agent_file.read_text())
    except (OSError, ValueError):
        current = None
    agent_changed = current != wanted
    if agent_changed:
        write_json_atomic(agent_file, wanted, mode=0o600)
    return config, speaker_changed, agent_changed


def start_speakers(plan: LabPlan, state: LabState, nodes: list[NodePlan]) -> None:
    """Write these nodes' configurations, then let the slim launcher fork their ExaBGP
    speakers; then start the BIRD nodes' daemons (see `start_bird_nodes`)."""
    exabgp = [n for n in nodes if n.speaker == "exabgp"]
    birds = [n for n in nodes if n.speaker == "bird"]
    # (A node of a lab without BGP, speaker "none", runs nothing: Felix's routes are the
    # route programmer's.)
    binaries = bird1_binaries() if birds else None  # exit 3 before anything starts
    if exabgp:
        _launch_exabgp(plan, state, exabgp)
    if birds:
        assert binaries is not None
        # BIRD connects 2 s after it starts (confd's `connect delay time 2`) and, refused,
        # only 5 s later (`connect retry time 5`): the ExaBGP nodes listen first, so its
        # first connection finds them. (Not an error here: `wait_listening` names a speaker
        # that never listens.)
        _wait_listening(exabgp, 10 + 0.2 * len(exabgp))
        start_bird_nodes(plan, state, birds, binaries)


def _launch_exabgp(plan: LabPlan, state: LabState, nodes: list[NodePlan]) -> None:
    launch = []
    for node in nodes:
        node_dir = state.node_dir(node.name)
        config, _speaker_changed, _agent_changed = write_node_configs(plan, state, node)
        bind = [a for a in (node.ipv4, node.ipv6) if a]
        launch.append(
            {
                "name": node.name,
                "netns": node.netns,
                "config": str(config),
                "output": str(node_dir / "exabgp.out"),
                "env": exabgp_environment(bind, node.listen_port, node_dir / "exabgp.log", {}),
            }
        )
    write_json_atomic(
        state.dir / LAUNCH_FILE,
        {"lab": plan.name, "gate": str(state.dir / GATE_FILE), "nodes": launch},
    )
    run = subprocess.run(
        [PYTHON, "-m", "meshemu.controlplane.launcher", "--state", str(state.dir)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if run.returncode != 0:
        raise SpeakerError(f"starting the speakers failed: {run.stderr.strip()[-2000:]}")


def _wait_listening(nodes: list[NodePlan], seconds: float) -> list[NodePlan]:
    """Wait until every one of `nodes` that has a session listens; those that do not."""
    deadline = time.monotonic() + seconds
    waiting = [n for n in nodes if any(s.emulated for s in n.sessions)]
    while waiting:
        waiting = [n for n in waiting if not listening(n.netns, n.listen_port)]
        if not waiting or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return waiting


def wait_listening(state: LabState, nodes: list[NodePlan], seconds: float) -> None:
    """Wait until every speaker that has a session listens; SpeakerError names the others."""
    waiting = _wait_listening(nodes, seconds)
    if waiting:
        raise SpeakerError(
            "speakers not listening: "
            + ", ".join(n.name for n in waiting)
            + f" (see {state.dir}/nodes/<node>/exabgp.log, or bird.log for a BIRD node)"
        )


def open_gate(state: LabState) -> None:
    (state.dir / GATE_FILE).write_text("open\n")


def speaker_running(state: LabState, node: str) -> bool:
    """The node's speaker runs: ExaBGP, or every BIRD daemon of a BIRD node."""
    records = state.speakers().get(node, [])
    return bool(records) and all(process.same_process(r.pid, r.start_time) for r in records)


def stop_speaker(state: LabState, node: str, graceful: bool = True, withdraw: bool = False) -> bool:
    """Stop a node's speaker, both BIRD daemons of a dual-stack BIRD node. False when none was
    running.

    `graceful`: SIGTERM, else SIGKILL (it just vanishes). ExaBGP closes its sessions on SIGTERM
    without a NOTIFICATION, which its peers take for a graceful restart (RFC 4724: they keep
    its routes for its restart time) and its agent keeps the node's routes for the next one
    (see `controlplane.agent`); BIRD sends a Cease.
    `withdraw`: the stop is no restart (a configuration change, which Calico's BIRD makes with
    a Cease): `withdraw_first` before ExaBGP is stopped.
    """
    import signal

    pids = {
        r.pid
        for r in state.speakers().get(node, [])
        if r.pid is not None and process.same_process(r.pid, r.start_time)
    }
    if not pids:
        return False
    if withdraw:
        withdraw_first(state, [node])
    for pid in pids:
        process.send(pid, signal.SIGTERM if graceful else signal.SIGKILL)
    left = process.wait_gone(pids, 5)
    for pid in left:
        process.send(pid, signal.SIGKILL)
    process.wait_gone(left, 2)
    return True


CEASE_WAIT = 5.0  # seconds the agents get to have their withdrawals taken by ExaBGP
# After ExaBGP has acknowledged the withdrawals they are in its Adj-RIB-Out; the peers'
# next turn of its reactor sends them (milliseconds), and SIGTERM is handled at the start of a
# turn, before the peers' (exabgp/reactor/loop.py `run`): this lets that turn come first.
CEASE_FLUSH = 0.3


def withdraw_first(state: LabState, nodes: list[str]) -> None:
    """Ask the agents of these nodes (CEASE, all at once) to withdraw every route from every
    peer and forget what they learned (`Runtime.cease`), and wait until each one's state file
    says ExaBGP has acknowledged every withdrawal, or `CEASE_WAIT` seconds (an agent dead or
    stuck: its stop is then a plain one). ExaBGP 5.0 closes a session that negotiated graceful
    restart without a NOTIFICATION whatever the reason (`Peer._main`; `Peer.shutdown` never
    sends one), so the withdrawals are what tell the peers. A BIRD node has no agent: BIRD
    sends a Cease itself."""
    waiting = [node for node in nodes if agent_control.tell(state.dir, node, agent_control.CEASE)]
    if not waiting:
        return
    deadline = time.monotonic() + CEASE_WAIT
    while waiting and time.monotonic() < deadline:
        for node in list(waiting):
            withdrawn = (state.agent_state(node) or {}).get("stopping") == "withdrawn"
            if withdrawn or not agent_control.running(state.dir, node):
                waiting.remove(node)
        if waiting:
            time.sleep(0.02)
    time.sleep(CEASE_FLUSH)


# -- BIRD nodes ------------------------------------------------------------------------------

BIRD_LOG = {4: "bird.log", 6: "bird6.log"}


def bird_families(node: NodePlan) -> list[int]:
    """The families a BIRD node runs a daemon for: those it has an address in."""
    return [f for f in (4, 6) if node.address(f) is not None]


def bird_process_name(node: NodePlan, family: int) -> str:
    """`speaker:<node>` for the daemon of the node's first family, `speaker6:<node>` for the
    `bird6` of a dual-stack node."""
    return f"speaker:{node.name}" if family == bird_families(node)[0] else f"speaker6:{node.name}"


def write_bird_configs(
    plan: LabPlan, state: LabState, node: NodePlan, bgp: BgpSpec | None = None
) -> tuple[Path, bool, bool]:
    """Render the node's BIRD files (confd's, per family) into its folder; (the first
    family's main file, whether any file changed, False: a BIRD node has no agent)."""
    if bgp is None:
        bgp = state.topology().bgp
    node_dir = state.node_dir(node.name)
    changed = False
    for family in bird_families(node):
        for name, text in render_node_bird(plan, node.name, family, bgp=bgp).items():
            path = node_dir / name
            if not path.is_file() or path.read_text() != text:
                write_text_atomic(path, text)
                changed = True
    return node_dir / FILES[bird_families(node)[0]][0], changed, False


def check_bird_socket_room(state: LabState, plan: LabPlan) -> None:
    """Every BIRD node's control socket path fits a Unix socket address (exit 3 otherwise)."""
    for node in plan.nodes:
        if node.speaker != "bird":
            continue
        for family in bird_families(node):
            path = state.node_bird_socket(node.index, family)
            if len(bytes(path)) > MAX_SOCKET_PATH:
                raise EnvironmentProblem(
                    f"the BIRD control socket {path} would be {len(bytes(path))} bytes long; a "
                    f"Unix socket path holds at most {MAX_SOCKET_PATH} (hint: set "
                    "MESHEMU_STATE_DIR to a shorter folder; the default is /run/meshemu)"
                )


def start_bird_nodes(
    plan: LabPlan,
    state: LabState,
    nodes: list[NodePlan],
    binaries: Bird1 | None = None,
    seconds: float = 20.0,
) -> None:
    """Start the BIRD daemons of these nodes and wait until each has opened its control
    socket and the node listens for BGP; SpeakerError names a daemon that exited or did not
    in time, with the end of its log."""
    binaries = binaries or bird1_binaries()
    check_bird_socket_room(state, plan)
    bgp = state.topology().bgp
    started = []
    for node in nodes:
        # A BIRD node starts as a whole: a daemon of it still running (its other family's
        # died) would keep the BGP port, and the new one would have no listening socket.
        stop_speaker(state, node.name)
        write_bird_configs(plan, state, node, bgp)
        node_dir = state.node_dir(node.name)
        for family in bird_families(node):
            sock = state.node_bird_socket(node.index, family)
            sock.unlink(missing_ok=True)
            config = node_dir / FILES[family][0]
            log = node_dir / BIRD_LOG[family]
            pidfile = node_dir / f"{Path(BIRD_LOG[family]).stem}.pid"
            # `-d`: foreground, log to stderr (Calico's bird.cfg has no `log` line), as
            # calico-node's runit script starts it (`bird -R -s ... -d -c bird.cfg`); not
            # `-R`: a fresh node has no routes to recover, and the recovery would hold the
            # kernel protocol until every peer sent End-of-RIB.
            argv = [binaries.daemon(family), "-d", "-c", str(config), "-s", str(sock)]
            argv += ["-P", str(pidfile)]
            name = bird_process_name(node, family)
            spawn(state, name, "speaker", argv, log, netns=node.netns)
            started.append(StartedBird(f"node {node.name} (IPv{family})", name, sock, log))
    deadline = time.monotonic() + seconds
    wait_bird_sockets(state, started, deadline)
    left = _wait_listening(nodes, max(0.0, deadline - time.monotonic()))
    if left:
        raise SpeakerError(
            "BIRD not listening for BGP on "
            + ", ".join(n.name for n in left)
            + f" (see {state.dir}/nodes/<node>/bird.log)"
        )


@dataclass(frozen=True)
class StartedBird:
    """A BIRD just started (a router's, or a node's for one family): what waits for it."""

    what: str  # "router tor1", "node node1 (IPv4)"
    process: str  # its name in the state folder
    socket: Path  # its control socket, which it opens once its configuration is read
    log: Path


def wait_bird_sockets(state: LabState, started: Sequence[StartedBird], deadline: float) -> None:
    """Wait until each started BIRD opened its control socket; SpeakerError names one that
    exited (with the last line it logged) or did not in time."""
    for bird in started:
        while not bird.socket.exists():
            if not state.running(bird.process):
                raise SpeakerError(
                    f"BIRD of {bird.what} exited at start: {_log_tail(bird.log)} (see {bird.log})"
                )
            if time.monotonic() > deadline:
                raise SpeakerError(f"BIRD of {bird.what} did not open {bird.socket} in time")
            time.sleep(0.02)


def _log_tail(log: Path) -> str:
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    return lines[-1][-300:] if lines else "nothing logged"
