#!/usr/bin/env python3
"""Benchmark: bring up N-node dual-stack full meshes, time convergence and down, measure memory.

Usage (as root, from the repository): .venv/bin/python scripts/bench.py [N ...]   (default 20 50)
Each lab: one subnet, N nodes, an IPv4 and an IPv6 pool (native routing), 2 pods per node,
the node-to-node mesh (N*(N-1) sessions per family). Prints one line per lab and leaves nothing.
Memory per node is the summed RSS of the node's ExaBGP speaker and agent (and PSS, which counts
pages shared after fork once).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import yaml

from meshemu.lab import down, up
from meshemu.model.load import load_topology
from meshemu.model.plan import build_plan
from meshemu.state import LabState


def topology(n: int) -> dict[str, object]:
    return {
        "name": f"bench{n}",
        "subnets": {"lan": {"ipv4": "10.77.0.0/23", "ipv6": "fd00:77::/64"}},
        "nodes": {f"n{i:03d}": {"subnet": "lan", "pods": 2} for i in range(1, n + 1)},
        "pools": {
            "v4": {"cidr": "10.244.0.0/16", "ipipMode": "Never"},
            "v6": {"cidr": "fd00:244::/64", "vxlanMode": "Never"},
        },
    }


def memory_kib(pid: int) -> tuple[int, int]:
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def run(n: int) -> str:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"bench{n}.yaml"
        path.write_text(yaml.safe_dump(topology(n)))
        topo = load_topology(path)
        plan = build_plan(topo)
        started = time.monotonic()
        result = up(plan, topo, path, progress=lambda _m: None, timeout=120)
        up_seconds = time.monotonic() - started
        speakers = [r.pid for r in LabState(plan.name).resources() if r.role == "speaker" and r.pid]
        rss = pss = speaker_rss = 0
        for pid in speakers:
            for process in (pid, *children(pid)):
                r, p = memory_kib(process)
                rss, pss = rss + r, pss + p
                if process == pid:
                    speaker_rss += r
        downed = down(plan.name, progress=lambda _m: None)
    sessions = sum(len(node.sessions) for node in plan.nodes) // 2
    return (
        f"{n:>3} nodes: {sessions} sessions, {sum(len(x.pods) for x in plan.nodes)} pods; up+converged "
        f"{up_seconds:5.2f}s ({'converged' if result.converged else 'NOT converged'}; phases "
        + ", ".join(f"{k} {v:.2f}s" for k, v in result.seconds.items() if k != "total")
        + f"); down {downed.seconds:.2f}s; memory per node (speaker+agent) RSS "
        f"{rss / len(speakers) / 1024:.1f} MiB (speaker {speaker_rss / len(speakers) / 1024:.1f}),"
        f" PSS {pss / len(speakers) / 1024:.1f} MiB"
    )


if __name__ == "__main__":
    sizes = [int(a) for a in sys.argv[1:]] or [20, 50]
    for size in sizes:
        print(run(size), flush=True)
