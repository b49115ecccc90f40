"""A lab's state folder: what exists, recorded before it is created.

Owns the layout of `<state root>/<lab>/` (default root `/run/meshemu`, or `$MESHEMU_STATE_DIR`):
- `lab.json`       the lab's summary (name, topology file, phase, IPIP implementation);
- `plan.json`      the plan the lab was built from (agents read their node's part);
- `resources.jsonl` one line per resource, appended *before* the resource is created
                   (namespaces) or right after a process exists (its pid and start time), so
                   `down` removes exactly what `up` made, even after a crash or Ctrl-C;
- `nodes/<node>/`  per node: ExaBGP config and log, agent state (`agent.json`) and pid, tunnel
                   stats.
It writes files atomically (temporary file + rename) and never kills or deletes anything itself.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meshemu.errors import LabError

DEFAULT_ROOT = Path("/run/meshemu")


def state_root() -> Path:
    return Path(os.environ.get("MESHEMU_STATE_DIR", str(DEFAULT_ROOT)))


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=False))
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise LabError(f"cannot read {path}: {err}") from err


def process_start_time(pid: int) -> int | None:
    """The kernel's start time of `pid` (clock ticks since boot), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: fields after the last ')'.
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[19])


@dataclass(frozen=True)
class Resource:
    kind: str  # netns | process
    name: str
    pid: int | None = None
    start_time: int | None = None
    role: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "pid": self.pid,
            "start_time": self.start_time,
            "role": self.role,
        }


class LabState:
    """The state folder of one lab."""

    def __init__(self, name: str, root: Path | None = None) -> None:
        self.name = name
        self.dir = (root or state_root()) / name

    @property
    def exists(self) -> bool:
        return (self.dir / "lab.json").exists() or (self.dir / "resources.jsonl").exists()

    def create(self) -> None:
        if self.exists:
            raise LabError(
                f"lab {self.name!r} is already up (state in {self.dir}); "
                f"run `meshemu down {self.name}` first"
            )
        (self.dir / "nodes").mkdir(parents=True, exist_ok=True)

    def node_dir(self, node: str) -> Path:
        path = self.dir / "nodes" / node
        path.mkdir(parents=True, exist_ok=True)
        return path

    def record(self, resource: Resource) -> None:
        line = json.dumps(resource.to_json()) + "\n"
        with open(self.dir / "resources.jsonl", "a") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def resources(self) -> list[Resource]:
        try:
            lines = (self.dir / "resources.jsonl").read_text().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash names nothing complete
            out.append(
                Resource(
                    data["kind"],
                    data["name"],
                    data.get("pid"),
                    data.get("start_time"),
                    data.get("role", ""),
                )
            )
        return out

    def write_summary(self, data: dict[str, Any]) -> None:
        write_json_atomic(self.dir / "lab.json", data)

    def summary(self) -> dict[str, Any]:
        data = read_json(self.dir / "lab.json")
        return data if isinstance(data, dict) else {}

    def write_plan(self, data: dict[str, Any]) -> None:
        write_json_atomic(self.dir / "plan.json", data)

    def plan(self) -> dict[str, Any]:
        data = read_json(self.dir / "plan.json")
        if not isinstance(data, dict):
            raise LabError(f"lab {self.name!r} has no plan in {self.dir}")
        return data

    def agent_state(self, node: str) -> dict[str, Any] | None:
        data = read_json(self.dir / "nodes" / node / "agent.json")
        return data if isinstance(data, dict) else None


def list_labs(root: Path | None = None) -> list[str]:
    base = root or state_root()
    if not base.is_dir():
        return []
    return sorted(
        p.name
        for p in base.iterdir()
        if p.is_dir() and ((p / "lab.json").exists() or (p / "resources.jsonl").exists())
    )
