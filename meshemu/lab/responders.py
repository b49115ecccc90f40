"""The lab's responder (`dataplane.responder`): started at `up`, told about pod changes, stopped
by `down` like every recorded process.

Owns writing `responder.json` (every pod that declares ports: its namespace, families and
ports) from the plan, starting the one responder process of the lab in the lab's fabric
namespace (so that `down --recover` finds it there too), recording it (`responder`, role
`responder`) and waiting until it serves the generation just written. A lab whose pods declare
no port starts nothing.
"""

from __future__ import annotations

import json
import signal
import time
from typing import Any

from meshemu import process
from meshemu.dataplane.responder import CONFIG, READY
from meshemu.errors import DataplaneError
from meshemu.lab.supervise import PYTHON, spawn
from meshemu.model.plan import LabPlan
from meshemu.state import LabState, write_json_atomic

NAME = "responder"


def listen_config(plan: LabPlan, generation: int) -> dict[str, Any]:
    """What the responder serves: every pod with ports, in each family it has an address."""
    pods = []
    for node in plan.nodes:
        for pod in node.pods:
            families = [f for f in (4, 6) if pod.address(f) is not None]
            if not pod.ports or not families:
                continue
            pods.append(
                {
                    "netns": pod.netns,
                    "who": f"{node.name}/{pod.name}",
                    "families": families,
                    "ports": [[p.port, p.protocol] for p in pod.ports],
                }
            )
    return {"generation": generation, "pods": pods}


def _generation(state: LabState) -> int:
    try:
        return int(json.loads((state.dir / CONFIG).read_text()).get("generation", 0))
    except (OSError, ValueError, AttributeError):
        return 0


def _wait_ready(state: LabState, generation: int, seconds: float) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            ready = json.loads((state.dir / READY).read_text())
        except (OSError, ValueError):
            ready = None
        if isinstance(ready, dict) and ready.get("generation") == generation:
            if ready.get("errors"):
                raise DataplaneError(
                    "the pods' responder cannot listen: " + "; ".join(ready["errors"][:5])
                )
            return ready
        if not state.running(NAME):
            break
        time.sleep(0.02)
    raise DataplaneError(
        f"the pods' responder did not answer in {seconds:.0f}s; see {state.dir / 'responder.log'}"
    )


def sync_responder(state: LabState, plan: LabPlan, seconds: float = 20) -> int:
    """Make the responder serve `plan`'s pods: start it (the first time some pod declares a
    port) or have it read its configuration again. Returns how many sockets it holds."""
    running = state.running(NAME)
    config = listen_config(plan, _generation(state) + 1)
    if not config["pods"] and not running:
        return 0
    write_json_atomic(state.dir / CONFIG, config)
    if running:
        recorded = state.process(NAME)
        assert recorded is not None and recorded.pid is not None
        process.send(recorded.pid, signal.SIGHUP)
    else:
        spawn(
            state,
            NAME,
            NAME,
            [PYTHON, "-m", "meshemu.dataplane.responder", "--state", str(state.dir)],
            state.dir / "responder.log",
            netns=plan.fabric_netns,
        )
    listening: int = _wait_ready(state, config["generation"], seconds)["listening"]
    return listening
