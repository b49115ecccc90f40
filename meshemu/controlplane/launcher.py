"""The slim parent of a lab's speakers: imports ExaBGP (and nothing heavy), forks one per node.

Owns turning `launch.json` (written by `lab` into the state folder: per node its namespace,
ExaBGP config, environment and output file) into running speakers, and recording each one in
the state folder. It is its own small process, not `meshemu up` itself, because a forked child
keeps every page its parent had: forking from the CLI (pydantic, pyroute2, networkx loaded)
would make each speaker twice as large. It exits once every speaker is started.

Run by `lab` as `python -m meshemu.controlplane.launcher --state DIR`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from meshemu import process
from meshemu.controlplane.speaker import SpeakerLauncher
from meshemu.state import LabState, Resource

LAUNCH_FILE = "launch.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="start a lab's ExaBGP speakers")
    parser.add_argument("--state", required=True, type=Path)
    args = parser.parse_args(argv)
    spec = json.loads((args.state / LAUNCH_FILE).read_text())
    state = LabState(spec["lab"], root=args.state.parent)
    launcher = SpeakerLauncher()
    gate = Path(spec["gate"])
    for node in spec["nodes"]:
        name = f"speaker:{node['name']}"
        state.record(Resource("process", name, None, None, "speaker-starting"))
        pid = launcher.start(
            node["netns"], Path(node["config"]), node["env"], Path(node["output"]), gate
        )
        state.record(Resource("process", name, pid, process.start_time(pid), "speaker"))
        print(json.dumps({"node": node["name"], "pid": pid}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
