"""The benchmark's command line: which labs, how often, where the results go.

Run as root from the repository: `.venv/bin/python scripts/bench.py [options]` (or
`python -m bench`). Writes `results.json` (every run and the summary), `table.md` and
`bench.png` (rendered from that JSON) into `--out`. Every lab it creates is named `bench...`
and brought down, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.measure import Options, Run, run_floor, run_lab
from bench.report import markdown, plot, summarize

FULL_MESH = [10, 20, 50, 100]
FULL_RR = [100, 200]
QUICK_MESH = [10, 20]
QUICK_RR = [20]


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"not a list of node counts: {text!r}") from err
    if any(not 2 <= size <= 1000 for size in sizes):
        raise argparse.ArgumentTypeError("node counts run from 2 to 1000")
    return sizes


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="scripts/bench.py",
        description="meshemu benchmark: dual-stack full meshes and reflector labs, ExaBGP "
        "against BIRD speakers, with the dataplane-only floor",
    )
    p.add_argument("--quick", action="store_true", help="meshes of 10 and 20, reflectors 20, 1 rep")
    p.add_argument("--mesh", type=_sizes, help=f"full-mesh sizes (default {FULL_MESH})")
    p.add_argument("--rr", type=_sizes, help=f"reflector-lab sizes (default {FULL_RR})")
    p.add_argument("--reps", type=int, help="repetitions of each lab (default 3; --quick 1)")
    p.add_argument(
        "--speakers",
        default="exabgp,bird",
        help="comma-separated: exabgp, bird (the reference); default both",
    )
    p.add_argument("--no-floor", action="store_true", help="skip the dataplane-only runs")
    p.add_argument("--idle", type=float, default=5.0, help="seconds of idle CPU sampling")
    p.add_argument("--timeout", type=float, help="convergence limit per lab (60 s + 1 s/node)")
    p.add_argument("--verify-dataplane", action="store_true", help="verify with packets too")
    p.add_argument("--out", type=Path, default=Path("bench-results"), help="output folder")
    p.add_argument(
        "--render", type=Path, metavar="RESULTS_JSON", help="only render table and plot again"
    )
    return p


def _machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "load_before": round(os.getloadavg()[0], 2),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def write_outputs(data: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(data, indent=1) + "\n")
    (out / "table.md").write_text(markdown(data))
    plot(data, out / "bench.png")


MAIN_PID = os.getpid()
# Below this much available memory the run stops (SIGTERM to itself: the running lab is
# brought down): the machine is shared, a lab too large for it must not take it down.
MEMORY_FLOOR_MB = 2048


def available_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    return 1 << 30


def _memory_watchdog() -> None:
    while True:
        if available_mb() < MEMORY_FLOOR_MB:
            print(f"only {available_mb()} MB of memory left: stopping", flush=True)
            os.kill(MAIN_PID, signal.SIGTERM)
            return
        time.sleep(0.5)


def _stop_on_term(_signum: int, _frame: object) -> None:
    # SIGTERM ends the run like Ctrl-C: the `finally` of the running lab brings it down. A
    # forked helper (pyroute2 forks to open sockets in a namespace, and ends it with SIGTERM)
    # inherits this handler: it just exits.
    if os.getpid() != MAIN_PID:
        os._exit(0)
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.render is not None:
        rendered = json.loads(args.render.read_text())
        write_outputs(rendered, args.out)
        print(markdown(rendered), end="")
        return 0
    if os.geteuid() != 0:
        print("the benchmark needs root (it brings labs up)", file=sys.stderr)
        return 3
    speakers = [s for s in args.speakers.split(",") if s]
    if not set(speakers) <= {"exabgp", "bird"}:
        print(f"--speakers: exabgp and/or bird, not {args.speakers!r}", file=sys.stderr)
        return 2
    mesh = args.mesh if args.mesh is not None else (QUICK_MESH if args.quick else FULL_MESH)
    rr = args.rr if args.rr is not None else (QUICK_RR if args.quick else FULL_RR)
    reps = args.reps if args.reps is not None else (1 if args.quick else 3)
    options = Options(args.idle, args.verify_dataplane, args.timeout)
    data: dict[str, Any] = {
        "command": "scripts/bench.py " + shlex.join(sys.argv[1:] if argv is None else argv),
        "machine": _machine(),
        "options": {"mesh": mesh, "rr": rr, "reps": reps, "speakers": speakers},
        "runs": [],
    }
    signal.signal(signal.SIGTERM, _stop_on_term)
    threading.Thread(target=_memory_watchdog, daemon=True).start()
    labs = [("mesh", n) for n in mesh] + [("rr", n) for n in rr]
    try:
        for rep in range(1, reps + 1):
            for kind, nodes in labs:
                for speaker in speakers:
                    _report(data, run_lab(kind, nodes, speaker, rep, options, print), args.out)
            if not args.no_floor:
                for nodes in sorted(set(mesh) | set(rr)):
                    _report(data, run_floor(nodes, print), args.out)
    except KeyboardInterrupt:
        print("interrupted: the running lab was brought down; writing what was measured")
    data["summary"] = summarize(data["runs"])
    write_outputs(data, args.out)
    print(markdown(data), end="")
    print(
        f"results: {args.out / 'results.json'}, {args.out / 'table.md'}, {args.out / 'bench.png'}"
    )
    return 0


def _report(data: dict[str, Any], run: Run, out: Path) -> None:
    data["runs"].append(run.to_json())
    # On disk after every run: an interrupted or killed long run keeps what it measured.
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(data, indent=1) + "\n")
    figures = " ".join(f"{k}={v:.2f}" for k, v in run.figures.items())
    state = "converged" if run.converged else "NOT converged"
    print(f"{run.kind} {run.nodes} {run.speaker} rep {run.rep}: {state}; {figures}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
