"""The lab's own processes: starting them, recording them, and knowing whether they still run.

Owns the route programmer (`fibd`, one per lab), the user-space `tunl0` per node (where the
kernel has no `ipip`), the speakers (written configurations, then the slim launcher forks them
behind the start gate) and the per-node agent configuration. Every process is recorded in the
state folder with its pid and start time the moment it exists, so `down` stops exactly it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from meshemu import process
from meshemu.controlplane.agent import AGENT_CONFIG
from meshemu.controlplane.launcher import LAUNCH_FILE
from meshemu.controlplane.speaker import exabgp_environment
from meshemu.dataplane.netlink import enter_for_good, in_netns, listening
from meshemu.errors import DataplaneError, SpeakerError
from meshemu.model import names
from meshemu.model.agent_config import agent_config_of
from meshemu.model.plan import LabPlan, NodePlan
from meshemu.model.render import render_exabgp
from meshemu.state import LabState, Resource, write_json_atomic

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
    """Start and record a process; in `netns` when given (entered before it runs)."""
    with open(log, "ab") as handle:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=handle,
            start_new_session=True,
            preexec_fn=(lambda: enter_for_good(netns)) if netns else None,
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
    if not _wait_for(state.dir / FIBD_READY, proc, 15):
        raise SpeakerError(f"the route programmer did not start; see {state.dir / 'fibd.log'}")


def start_tunnels(state: LabState, nodes: list[NodePlan]) -> int:
    """User-space tunl0 for these nodes; waits until each is up and addressed."""
    started = []
    for node in nodes:
        node_dir = state.node_dir(node.name)
        assert node.ipv4 is not None
        (node_dir / "tunnel.ready").unlink(missing_ok=True)
        argv = [
            PYTHON,
            "-m",
            "meshemu.dataplane.ipip_tun",
            "--netns",
            node.netns,
            "--local",
            node.ipv4,
            "--ready-file",
            str(node_dir / "tunnel.ready"),
            "--stats-file",
            str(node_dir / "tunnel.json"),
        ]
        proc = spawn(state, f"tunnel:{node.name}", "tunnel", argv, node_dir / "tunnel.log")
        started.append((node, proc))
    for node, proc in started:
        if not _wait_for(state.node_dir(node.name) / "tunnel.ready", proc, 20):
            raise DataplaneError(
                f"user-space tunl0 of {node.name} did not start; see "
                f"{state.node_dir(node.name) / 'tunnel.log'}"
            )
        if node.ipip_tunnel_address:
            with in_netns(node.netns) as ns:
                ns.add_address(names.IPIP_DEVICE, node.ipip_tunnel_address, 32)
    return len(started)


def write_node_configs(plan: LabPlan, state: LabState, node: NodePlan) -> tuple[Path, bool, bool]:
    """Write a node's ExaBGP and agent configuration; say which of the two changed."""
    node_dir = state.node_dir(node.name)
    agent = [PYTHON, "-m", "meshemu.controlplane.agent", "--state", str(state.dir)]
    agent += ["--node", node.name]
    config = node_dir / "exabgp.conf"
    text = render_exabgp(plan, node, agent)
    speaker_changed = not config.exists() or config.read_text() != text
    if speaker_changed:
        config.write_text(text)
    agent_file = node_dir / AGENT_CONFIG
    wanted = agent_config_of(plan, node.name).to_json()
    try:
        current = json.loads(agent_file.read_text())
    except (OSError, ValueError):
        current = None
    agent_changed = current != wanted
    if agent_changed:
        write_json_atomic(agent_file, wanted, mode=0o600)
    return config, speaker_changed, agent_changed


def start_speakers(plan: LabPlan, state: LabState, nodes: list[NodePlan]) -> None:
    """Write these nodes' configurations, then let the slim launcher fork their speakers."""
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


def wait_listening(state: LabState, nodes: list[NodePlan], seconds: float) -> None:
    """Wait until every speaker that has a session listens; SpeakerError names the others."""
    deadline = time.monotonic() + seconds
    waiting = [n for n in nodes if any(s.emulated for s in n.sessions)]
    while waiting:
        waiting = [n for n in waiting if not listening(n.netns, n.listen_port)]
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise SpeakerError(
                "speakers not listening: "
                + ", ".join(n.name for n in waiting)
                + f" (see {state.dir}/nodes/<node>/exabgp.log)"
            )
        time.sleep(0.05)


def open_gate(state: LabState) -> None:
    (state.dir / GATE_FILE).write_text("open\n")


def speaker_running(state: LabState, node: str) -> bool:
    return state.running(f"speaker:{node}")


def stop_speaker(state: LabState, node: str, graceful: bool = True) -> bool:
    """Stop a node's speaker (SIGTERM: it tells its peers; SIGKILL: it just vanishes)."""
    import signal

    resource = state.process(f"speaker:{node}")
    if resource is None or resource.pid is None or not state.running(resource.name):
        return False
    pid = resource.pid
    process.send(pid, signal.SIGTERM if graceful else signal.SIGKILL)
    if process.wait_gone({pid}, 5):
        process.send(pid, signal.SIGKILL)
        process.wait_gone({pid}, 2)
    return True
