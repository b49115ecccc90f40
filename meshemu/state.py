"""A lab's state folder: what exists, recorded before it is created, in typed wire forms.

Owns the layout of `<state root>/<lab>/` (default root `/run/meshemu`, or `$MESHEMU_STATE_DIR`):
- `lab.json`        the lab's summary (`LabSummary`: topology file, phase, IPIP implementation);
- `plan.json`       the plan the lab runs (`LabPlan`'s wire form, passwords included: mode 0600);
- `topology.json`, `allocations.json`  the effective topology after live changes and what the
                    plan has handed out (addresses, blocks, pod IPs), to re-plan a live change;
- `resources.jsonl` one `Resource` per line, appended *before* the resource is created
                    (namespaces) or right after a process exists (its pid and start time), so
                    `down` removes exactly what `up` made, even after a crash or Ctrl-C;
- `nodes/<node>/`   per node: ExaBGP and agent configuration, logs, the agent's state
                    (`agent.json`) and pid, tunnel stats; for a BIRD node its BIRD 1.6
                    configuration files and logs instead (control sockets `n<index>-<4|6>.ctl`
                    in the lab's folder: a Unix socket path holds at most 107 bytes).
Every lab name is checked (`model.names.lab_name_error`) before it becomes a path. This module
writes files atomically (temporary file + rename) and never kills or deletes anything itself.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meshemu import process
from meshemu.errors import ConfigError, LabError, Problem
from meshemu.model.names import lab_name_error

if TYPE_CHECKING:
    from meshemu.model.plan import LabPlan, Sticky
    from meshemu.model.topology import Topology

DEFAULT_ROOT = Path("/run/meshemu")
# A state file larger than this was not written by meshemu: refuse it rather than load it.
MAX_STATE_FILE = 64 * 1024 * 1024


def state_root() -> Path:
    return Path(os.environ.get("MESHEMU_STATE_DIR", str(DEFAULT_ROOT)))


def check_lab_name(name: object, where: str = "lab") -> str:
    """`name` as a lab name, or a ConfigError (exit 2) saying why it cannot be one."""
    error = lab_name_error(name)
    if error is not None:
        raise ConfigError([Problem(where, error, "lab names look like `flagship` or `lab-2`")])
    assert isinstance(name, str)
    return name


def write_text_atomic(path: Path, text: str, mode: int | None = None) -> None:
    """Write a file so that a reader sees the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644 if mode is None else mode)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


def write_json_atomic(
    path: Path, data: Any, mode: int | None = None, compact: bool = False
) -> None:
    """`compact`: one line, by json's C encoder, about five times faster than the indented
    form's pure-Python one (for files rewritten many times a second, as a reflector's agent
    state: 60 ms a write for a 60-node reflector lab's, indented)."""
    text = json.dumps(data, separators=(",", ":")) if compact else json.dumps(data, indent=1)
    write_text_atomic(path, text, mode)


def read_json(path: Path) -> Any:
    """A state file's JSON, None when it does not exist; LabError when it is not meshemu's."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise LabError(f"cannot read {path}: {err.strerror}") from err
    if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_STATE_FILE:
        raise LabError(f"{path} is not a state file meshemu wrote (not a regular file, or huge)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError) as err:
        raise LabError(f"cannot read {path}: {err}") from err


@dataclass(frozen=True)
class Resource:
    """Something a lab created: a namespace, or a process with its pid and start time."""

    kind: str  # netns | process
    name: str
    pid: int | None = None
    start_time: int | None = None
    role: str = ""  # process: up | fibd | speaker | tunnel

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "pid": self.pid,
            "start_time": self.start_time,
            "role": self.role,
        }

    @classmethod
    def from_json(cls, data: object) -> Resource | None:
        """The record, or None for a line that is not one (cut short by a crash, edited)."""
        if not isinstance(data, dict):
            return None
        kind, name = data.get("kind"), data.get("name")
        pid, started, role = data.get("pid"), data.get("start_time"), data.get("role", "")
        if kind not in ("netns", "process") or not isinstance(name, str):
            return None
        if not all(
            v is None or (isinstance(v, int) and not isinstance(v, bool) and v > 0)
            for v in (pid, started)
        ) or not isinstance(role, str):
            return None
        return cls(kind, name, pid, started, role)


@dataclass(frozen=True)
class LabSummary:
    """`lab.json`: what a lab is and where its `up` got to."""

    name: str
    topology: str = ""
    phase: str = "creating"  # creating | up | recovered
    ipip: str = "none"  # none | kernel | userspace
    created: float = 0.0
    converged: bool = False
    up_seconds: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "topology": self.topology,
            "phase": self.phase,
            "ipip": self.ipip,
            "created": self.created,
            "converged": self.converged,
            "up_seconds": dict(self.up_seconds),
        }

    @classmethod
    def from_json(cls, data: object, where: Path) -> LabSummary:
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            raise LabError(f"{where} is not a lab summary meshemu wrote")
        seconds = data.get("up_seconds") or {}
        try:
            return cls(
                name=data["name"],
                topology=str(data.get("topology") or ""),
                phase=str(data.get("phase") or "creating"),
                ipip=str(data.get("ipip") or "none"),
                created=float(data.get("created") or 0.0),
                converged=bool(data.get("converged")),
                up_seconds={str(k): float(v) for k, v in dict(seconds).items()},
            )
        except (TypeError, ValueError) as err:
            raise LabError(f"{where} is not a lab summary meshemu wrote: {err}") from err


class LabState:
    """The state folder of one lab."""

    def __init__(self, name: str, root: Path | None = None) -> None:
        self.name = check_lab_name(name)
        self.root = root or state_root()
        self.dir = self.root / self.name

    @property
    def exists(self) -> bool:
        return (self.dir / "lab.json").is_file() or (self.dir / "resources.jsonl").is_file()

    def create(self) -> None:
        if self.exists:
            raise LabError(
                f"lab {self.name!r} is already up (state in {self.dir}); "
                f"run `meshemu down {self.name}` first"
            )
        _make_dir(self.root)
        _make_dir(self.dir)
        _make_dir(self.dir / "nodes")

    def bird_socket(self, index: int) -> Path:
        """The control socket of the BIRD of the lab's router number `index`: a short name,
        since a Unix socket path holds at most 107 bytes."""
        return self.dir / f"bird-{index}.ctl"

    def node_bird_socket(self, index: int, family: int) -> Path:
        """The control socket of the BIRD 1.6 daemon of node number `index` (its place in the
        plan) for `family` (`bird` 4, `bird6` 6): as short as the routers' ones."""
        return self.dir / f"n{index}-{family}.ctl"

    def node_dir(self, node: str) -> Path:
        path = self.dir / "nodes" / node
        path.mkdir(parents=True, exist_ok=True)
        return path

    # -- resources ---------------------------------------------------------------------------
    def record(self, resource: Resource) -> None:
        line = json.dumps(resource.to_json()) + "\n"
        with open(self.dir / "resources.jsonl", "a+b") as handle:
            # After a line cut short by a crash, start on a new line: the cut line stays
            # unreadable, the new record does not join it.
            if handle.tell() > 0:
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) != b"\n":
                    line = "\n" + line
            handle.write(line.encode())
            handle.flush()
            os.fsync(handle.fileno())

    def resources(self) -> list[Resource]:
        path = self.dir / "resources.jsonl"
        try:
            if path.stat().st_size > MAX_STATE_FILE:
                raise LabError(f"{path} is not a record meshemu wrote (huge)")
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except FileNotFoundError:
            return []
        except OSError as err:
            raise LabError(f"cannot read {path}: {err.strerror}") from err
        out = []
        for line in lines:
            try:
                resource = Resource.from_json(json.loads(line))
            except (ValueError, RecursionError):
                resource = None  # a line cut short by a crash names nothing complete
            if resource is not None:
                out.append(resource)
        return out

    def processes(self, role: str | None = None) -> list[Resource]:
        return [
            r for r in self.resources() if r.kind == "process" and (role is None or r.role == role)
        ]

    def latest_processes(self) -> dict[str, Resource]:
        """Per process name (`speaker:node1`, `fibd`, ...), its latest record with a pid."""
        return {r.name: r for r in self.processes() if r.pid is not None}

    def process(self, name: str) -> Resource | None:
        return self.latest_processes().get(name)

    def speakers(self) -> dict[str, list[Resource]]:
        """Per node, the records of its speaker processes as last started (see
        `current_speakers`), from one read of the record."""
        return current_speakers(self.resources())

    def running_names(self) -> set[str]:
        """The names of the recorded processes that still run (same pid and start time), from
        one read of the record: for questions about every node at once."""
        return {
            name
            for name, r in self.latest_processes().items()
            if process.same_process(r.pid, r.start_time)
        }

    def running(self, name: str) -> bool:
        """The process recorded as `name` still runs (same pid and start time)."""
        resource = self.process(name)
        return resource is not None and process.same_process(resource.pid, resource.start_time)

    # -- summary, plan, topology -------------------------------------------------------------
    def write_summary(self, summary: LabSummary) -> None:
        write_json_atomic(self.dir / "lab.json", summary.to_json())

    def summary(self) -> LabSummary:
        path = self.dir / "lab.json"
        data = read_json(path)
        if data is None:
            return LabSummary(self.name, phase="recovered")
        return LabSummary.from_json(data, path)

    def write_plan(self, plan: LabPlan) -> None:
        # Passwords of MD5 sessions are part of the plan the speakers are configured from.
        # Compact (json's C encoder): indented, a 100-node plan took a second to write
        # (`meshemu plan --json` shows it indented).
        write_json_atomic(
            self.dir / "plan.json", plan.to_json(secrets=True), mode=0o600, compact=True
        )

    def plan(self) -> LabPlan:
        from meshemu.model.plan import LabPlan

        data = read_json(self.dir / "plan.json")
        if not isinstance(data, dict):
            raise LabError(f"lab {self.name!r} has no plan in {self.dir}")
        return LabPlan.from_json(data)

    def write_topology(self, topo: Topology, plan: LabPlan) -> None:
        """The effective topology and what its plan handed out, from which a live change
        re-plans with every address, block and pod IP kept."""
        from meshemu.model.plan import Sticky

        write_json_atomic(
            self.dir / "topology.json", topo.model_dump(mode="json", by_alias=True), mode=0o600
        )
        write_json_atomic(self.dir / "allocations.json", Sticky.of(plan).to_json())

    def topology(self) -> Topology:
        from pydantic import ValidationError

        from meshemu.model.topology import Topology

        data = read_json(self.dir / "topology.json")
        if data is None:
            raise LabError(f"lab {self.name!r} has no saved topology in {self.dir}")
        try:
            return Topology.model_validate(data)
        except ValidationError as err:
            raise LabError(f"{self.dir / 'topology.json'} is not a topology: {err}") from err

    def sticky(self) -> Sticky | None:
        from meshemu.model.plan import Sticky

        data = read_json(self.dir / "allocations.json")
        if data is None:
            return None
        try:
            return Sticky.from_json(data)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise LabError(f"{self.dir / 'allocations.json'} is not meshemu's: {err}") from err

    # -- per node ----------------------------------------------------------------------------
    def agent_state(self, node: str) -> dict[str, Any] | None:
        data = read_json(self._agent_file(node))
        return data if isinstance(data, dict) else None

    def agent_state_version(self, node: str) -> tuple[int, int] | None:
        """Which write of the agent's state file is there now (it is replaced whole on each
        write), without reading it; None when there is none."""
        try:
            info = self._agent_file(node).stat()
        except OSError:
            return None
        return info.st_ino, info.st_mtime_ns

    def _agent_file(self, node: str) -> Path:
        return self.dir / "nodes" / node / "agent.json"


def current_speakers(resources: list[Resource]) -> dict[str, list[Resource]]:
    """Per node, its speaker processes as last started: the latest `speaker:<node>` record
    with a pid (ExaBGP, or the BIRD daemon of a BIRD node's first family) and, for a
    dual-stack BIRD node, the `speaker6:<node>` record (its `bird6`) when it was written after
    that one (an older one belongs to a speaker the node no longer runs)."""
    main: dict[str, tuple[int, Resource]] = {}
    second: dict[str, tuple[int, Resource]] = {}
    for position, r in enumerate(resources):
        if r.kind != "process" or r.pid is None:
            continue
        kind, _, node = r.name.partition(":")
        if kind == "speaker":
            main[node] = (position, r)
        elif kind == "speaker6":
            second[node] = (position, r)
    out = {node: [r] for node, (_, r) in main.items()}
    for node, (position, r) in second.items():
        if node in main and position > main[node][0]:
            out[node].append(r)
    return out


def _make_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError as err:
        raise LabError(f"{path} exists and is not a folder: meshemu keeps lab state there") from err
    except OSError as err:
        raise LabError(f"cannot create {path}: {err.strerror}") from err
    if not path.is_dir():
        raise LabError(f"{path} exists and is not a folder: meshemu keeps lab state there")


def list_labs(root: Path | None = None) -> list[str]:
    """The labs with a state folder, by name; folders whose name is no lab name are not labs."""
    base = root or state_root()
    if not base.is_dir():
        return []
    return sorted(
        p.name
        for p in base.iterdir()
        if lab_name_error(p.name) is None
        and p.is_dir()
        and not p.is_symlink()
        and ((p / "lab.json").is_file() or (p / "resources.jsonl").is_file())
    )
