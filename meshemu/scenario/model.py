"""The scenario format (pydantic, unknown fields rejected), reading a scenario file, and its
validation against the lab it names, all before anything is created.

Owns what a scenario file may say and every check `run` (and `validate`) makes before it
creates anything: the file is a small UTF-8 YAML mapping (never a hang on a FIFO, never a
traceback on binary or deeply nested input); the topology it names is a regular file; the lab
name is a lab name; every step is one known action or expectation; and, following the steps
through the topology and plan they change (`scenario.evolve`), every node, pod, pool and peer
a step names exists at that point, every expectation can hold (its address family exists, its
path is one the pools allow), every snapshot it compares exists, every file it writes is inside
the scenario's folder, and no node added to the running lab takes an address in use.
Problems are collected with their location (`steps[3].expect.reachable.from`) and a hint.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from meshemu.errors import ConfigError, Problem
from meshemu.model.addressing import parse_network
from meshemu.model.load import load_topology, parse_yaml, problems_from_validation
from meshemu.model.names import LAB_NAME_MAX, lab_name_error
from meshemu.model.plan import LabPlan, NodePlan, PodPlan, PoolPlan
from meshemu.model.topology import NodeSpec, PeerSpec, PoolSpec, Topology
from meshemu.scenario.evolve import TOPOLOGY_KINDS, ChangeError, evolve
from meshemu.verify.snapshot import read_snapshot

# Bounds on what a scenario file may be, so that reading and checking one takes bounded time
# and memory whatever it holds. A real scenario is a few kilobytes and tens of steps.
MAX_SCENARIO_BYTES = 1024 * 1024
MAX_SNAPSHOT_BYTES = 64 * 1024 * 1024
MAX_DEPTH = 32  # nesting of mappings and lists (a scenario needs about six)
MAX_VALUES = 100_000  # values once YAML aliases are expanded (an alias bomb expands to billions)
MAX_STEPS = 200  # each step that changes the topology plans the whole lab again
MAX_PROBLEMS = 100

Family = Literal["ipv4", "ipv6"]
Path_ = Literal["local", "direct", "ipip", "vxlan", "router"]


def _one_printable_line(value: str) -> str:
    if not value.isprintable():
        raise ValueError("write one line of printable text (no control characters)")
    return value


# A scenario's and a step's name go into reports (terminal, JUnit XML): one short printable
# line, so that no name can inject escape sequences or break the XML.
Label = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_one_printable_line)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class NodeRef(_Strict):
    node: str


class AddNode(NodeSpec):
    name: str


class AddPool(PoolSpec):
    name: str


class AddPeer(PeerSpec):
    name: str


class PodsChange(_Strict):
    node: str
    count: int = Field(default=1, ge=1, le=50)


class SetPool(_Strict):
    pool: str
    ipip_mode: Literal["Always", "CrossSubnet", "Never"] | None = Field(None, alias="ipipMode")
    vxlan_mode: Literal["Always", "CrossSubnet", "Never"] | None = Field(None, alias="vxlanMode")


class PoolRef(_Strict):
    pool: str


class PeerRef(_Strict):
    peer: str


class SnapshotFile(_Strict):
    file: str


class UpAction(_Strict):
    pods: int | None = Field(None, ge=0, le=250)


class RouteExpect(_Strict):
    node: str
    prefix: str | None = None
    to: str | None = None  # a node: its block(s) of `family`
    family: Family = "ipv4"
    present: bool = True
    via: str | None = None  # an address, or a node name (its address of the family)
    dev: str | None = None

    @model_validator(mode="after")
    def _one_target(self) -> RouteExpect:
        if (self.prefix is None) == (self.to is None):
            raise ValueError("give exactly one of prefix or to (a node whose blocks to look for)")
        return self


class SessionExpect(_Strict):
    node: str
    peer: str  # a node name or a peer address
    family: Family = "ipv4"
    state: Literal["established", "down"] = "established"


class ReachExpect(_Strict):
    from_: str = Field(alias="from")  # node/pod
    to: str  # node/pod
    family: Family = "ipv4"
    reachable: bool = True
    path: Path_ | None = None


class MatrixExpect(_Strict):
    paths: bool = True  # also require the planned path of every cell, as seen on the wire


class ConvergedExpect(_Strict):
    pass


class Expectation(_Strict):
    converged: ConvergedExpect | None = None
    route: RouteExpect | None = None
    session: SessionExpect | None = None
    reachable: ReachExpect | None = None
    matrix: MatrixExpect | None = None
    snapshot: SnapshotFile | None = None
    timeout: float = Field(default=30.0, gt=0, le=600)

    @model_validator(mode="after")
    def _exactly_one(self) -> Expectation:
        given = [k for k in EXPECT_KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"an expectation names exactly one of {', '.join(EXPECT_KINDS)} (got "
                f"{', '.join(given) or 'none'})"
            )
        return self

    @property
    def kind(self) -> str:
        return next(k for k in EXPECT_KINDS if getattr(self, k) is not None)


EXPECT_KINDS = ("converged", "route", "session", "reachable", "matrix", "snapshot")


class Step(_Strict):
    name: Label | None = None
    up: UpAction | None = None
    link_down: NodeRef | None = Field(None, alias="link-down")
    link_up: NodeRef | None = Field(None, alias="link-up")
    stop_speaker: NodeRef | None = Field(None, alias="stop-speaker")
    start_speaker: NodeRef | None = Field(None, alias="start-speaker")
    restart_speaker: NodeRef | None = Field(None, alias="restart-speaker")
    kill_agent: NodeRef | None = Field(None, alias="kill-agent")
    stop_reflector: NodeRef | None = Field(None, alias="stop-reflector")
    add_node: AddNode | None = Field(None, alias="add-node")
    remove_node: NodeRef | None = Field(None, alias="remove-node")
    add_pods: PodsChange | None = Field(None, alias="add-pods")
    remove_pods: PodsChange | None = Field(None, alias="remove-pods")
    set_pool: SetPool | None = Field(None, alias="set-pool")
    add_pool: AddPool | None = Field(None, alias="add-pool")
    remove_pool: PoolRef | None = Field(None, alias="remove-pool")
    add_peer: AddPeer | None = Field(None, alias="add-peer")
    remove_peer: PeerRef | None = Field(None, alias="remove-peer")
    wait: float | None = Field(None, gt=0, le=600)
    write_snapshot: SnapshotFile | None = Field(None, alias="write-snapshot")
    expect: Expectation | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Step:
        given = self.kinds()
        if len(given) != 1:
            raise ValueError(
                "a step is exactly one action or one `expect` (got "
                f"{', '.join(given) or 'none'}); actions: {', '.join(ACTION_KINDS)}"
            )
        return self

    def kinds(self) -> list[str]:
        return [
            k for k in (*ACTION_KINDS, "expect") if getattr(self, k.replace("-", "_")) is not None
        ]

    @property
    def kind(self) -> str:
        return self.kinds()[0]

    def argument(self) -> Any:
        return getattr(self, self.kind.replace("-", "_"))


ACTION_KINDS = (
    "up",
    "link-down",
    "link-up",
    "stop-speaker",
    "start-speaker",
    "restart-speaker",
    "kill-agent",
    "stop-reflector",
    "add-node",
    "remove-node",
    "add-pods",
    "remove-pods",
    "set-pool",
    "add-pool",
    "remove-pool",
    "add-peer",
    "remove-peer",
    "wait",
    "write-snapshot",
)


class Scenario(_Strict):
    name: Label
    description: str = ""
    topology: str
    lab: str | None = None
    steps: list[Step] = Field(min_length=1, max_length=MAX_STEPS)


# -- reading a file that may be anything ----------------------------------------------------

_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _not_regular(mode: int) -> str | None:
    """What a file is when it is not a regular file (None when it is one)."""
    if stat.S_ISREG(mode):
        return None
    return next((text for test, text in _FILE_KINDS if test(mode)), "not a regular file")


def _os_problem(where: str, err: OSError, hint: str) -> Problem:
    if err.errno == errno.ELOOP:
        return Problem(where, "is a symlink loop", "point the link at a file")
    if err.errno == errno.ENOENT:
        return Problem(where, "no such file", hint)
    return Problem(where, f"cannot read: {err.strerror or err}", hint)


def _open_regular(path: Path, limit: int, hint: str = "") -> int:
    """A descriptor open on `path`, a regular file of at most `limit` bytes; a located
    ConfigError otherwise. The caller closes it.

    Opened non-blocking and checked with fstat before anything reads it: opening a FIFO for
    reading blocks until a writer comes, and reading /dev/zero or a sparse file never ends.
    """
    where = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        raise ConfigError([_os_problem(where, err, hint)]) from None
    except ValueError:  # a NUL byte in the name
        raise ConfigError([Problem(where, "is not a file name", hint)]) from None
    info = os.fstat(fd)
    kind = _not_regular(info.st_mode)
    problem = None
    if kind is not None:
        problem = Problem(where, f"is {kind}, not a regular file", hint or "name a file")
    elif info.st_size > limit:
        problem = _too_big(where, limit)
    if problem is not None:
        os.close(fd)
        raise ConfigError([problem])
    return fd


def _read_bytes(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; a located ConfigError otherwise."""
    fd = _open_regular(path, limit)
    chunks: list[bytes] = []
    size = 0
    try:
        while size <= limit and (chunk := os.read(fd, limit + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > limit:  # it grew after fstat
        raise ConfigError([_too_big(str(path), limit)])
    return b"".join(chunks)


def _too_big(where: str, limit: int) -> Problem:
    return Problem(
        where, f"is larger than {limit // 1024} KiB", "is this the right file? it is too big"
    )


def _decode(data: bytes, where: str) -> str:
    """UTF-8 text (YAML's encoding here); binary and other encodings are located errors."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ConfigError([Problem(where, "is UTF-16 text", "save it as UTF-8")])
    if b"\x00" in data:
        raise ConfigError(
            [Problem(where, "is a binary file (it holds NUL bytes)", "name a YAML file")]
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ConfigError(
            [Problem(where, f"is not UTF-8 text (byte {err.start} is not UTF-8)", "save as UTF-8")]
        ) from None


def _parse(text: str, where: str) -> list[Any]:
    try:
        return parse_yaml(text, where)
    except RecursionError:  # PyYAML composes nested collections recursively
        raise ConfigError([_too_deep(where)]) from None


def _too_deep(where: str) -> Problem:
    return Problem(
        where, f"is nested more than {MAX_DEPTH} levels deep", "a scenario is a few levels deep"
    )


def _check_bounds(data: Any, where: str) -> None:
    """Refuse documents too deep or too large (counting values behind aliases every time they
    are used, as validating them would), before anything walks them recursively."""
    stack: list[tuple[Any, int]] = [(data, 0)]
    count = 0
    while stack:
        value, depth = stack.pop()
        count += 1
        if depth > MAX_DEPTH:
            raise ConfigError([_too_deep(where)])
        if count > MAX_VALUES:
            raise ConfigError(
                [
                    Problem(
                        where,
                        f"holds more than {MAX_VALUES} values once YAML aliases are expanded",
                        "write the steps out; a scenario is small",
                    )
                ]
            )
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)


def _read_mapping(path: Path) -> dict[Any, Any]:
    """The scenario file's one YAML mapping, bounded in size, depth and expansion."""
    where = str(path)
    documents = _parse(_decode(_read_bytes(path, MAX_SCENARIO_BYTES), where), where)
    if len(documents) != 1 or not isinstance(documents[0], dict):
        raise ConfigError(
            [Problem(where, "a scenario is one YAML mapping", "name, topology and steps")]
        )
    _check_bounds(documents[0], where)
    return documents[0]


def is_scenario_document(path: Path) -> bool:
    """Whether `path` looks like a scenario (one mapping with `steps` and `topology`), to tell
    scenarios from topologies and bundles. Never raises or blocks; False for anything that
    cannot be read as one small YAML document (the topology loader then says what is wrong)."""
    try:
        documents = _parse(_decode(_read_bytes(path, MAX_SCENARIO_BYTES), ""), "")
    except (ConfigError, RecursionError, MemoryError):
        return False
    return (
        len(documents) == 1
        and isinstance(documents[0], dict)
        and "steps" in documents[0]
        and "topology" in documents[0]
    )


# -- loading --------------------------------------------------------------------------------


def default_lab_name(scenario: Scenario) -> str:
    """The lab a scenario runs on: its `lab`, else `sc-` and the start of its name."""
    return scenario.lab or ("sc-" + scenario.name)[:LAB_NAME_MAX].rstrip("-")


def _lab_problems(data: dict[Any, Any]) -> list[Problem]:
    """A `lab:` that is no lab name (checked before pydantic, which could only say "not a
    string", so that every wrong value gets the same message and hint)."""
    if "lab" not in data or data["lab"] is None:
        return []
    error = lab_name_error(data["lab"])
    if error is None:
        return []
    del data["lab"]  # reported here; pydantic would report it again
    return [Problem("lab", error, "set lab: to a short name like sc-test")]


def _topology_path(scenario: Scenario, folder: Path) -> Path:
    """The topology file the scenario names, resolved (relative to the scenario's folder) and
    checked to be a regular file; a ConfigError at `topology` for anything else."""
    hint = f"the path is relative to the scenario's folder {folder}"
    if not scenario.topology.strip():
        raise ConfigError([Problem("topology", "names no file", hint)])
    given = folder / scenario.topology
    try:
        resolved = given.resolve(strict=True)
        mode = resolved.stat().st_mode
    except FileNotFoundError:
        raise ConfigError([Problem("topology", f"no such file {_short(given)}", hint)]) from None
    except RuntimeError:  # Python 3.11's Path.resolve on a symlink loop
        raise ConfigError([_loop("topology", given)]) from None
    except OSError as err:
        problem = _os_problem("topology", err, hint)
        raise ConfigError(
            [Problem("topology", f"{_short(given)} {problem.message}", problem.hint)]
        ) from None
    except ValueError:
        raise ConfigError(
            [Problem("topology", f"{_short(given)} is not a file name", hint)]
        ) from None
    kind = _not_regular(mode)
    if kind is not None:
        raise ConfigError([Problem("topology", f"{_short(given)} is {kind}, not a file", hint)])
    return resolved


def _short(text: object, limit: int = 120) -> str:
    """`text` cut to `limit` characters, for messages that quote what the input said."""
    text = str(text)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _loop(where: str, path: Path) -> Problem:
    return Problem(where, f"{_short(path)} is a symlink loop", "point the link at a file")


def _cap(problems: list[Problem], where: str) -> list[Problem]:
    if len(problems) <= MAX_PROBLEMS:
        return problems
    more = len(problems) - MAX_PROBLEMS
    return [*problems[:MAX_PROBLEMS], Problem(where, f"and {more} more problems", "fix these")]


def load_scenario(path: Path) -> tuple[Scenario, Topology, Path]:
    """Read and check a scenario and the topology it names: (scenario, topology named after
    the scenario's lab, topology path). ConfigError lists every problem found."""
    data = dict(_read_mapping(path))
    problems = _lab_problems(data)
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_cap(problems + problems_from_validation(err), str(path))) from None
    lab = default_lab_name(scenario)
    error = lab_name_error(lab)
    if error and scenario.lab is None:
        problems.append(Problem("name", error, "set lab: to a short name like sc-test"))
    folder = path.parent
    try:
        topo_path = _topology_path(scenario, folder)
    except ConfigError as err:
        raise ConfigError(problems + err.problems) from None
    try:
        topo = load_topology(topo_path, name=None if problems else lab)
    except ConfigError as err:
        problems += [
            Problem(f"topology ({topo_path.name}): {p.location}", p.message, p.hint)
            for p in err.problems
        ]
        raise ConfigError(_cap(problems, str(path))) from None
    problems += check_steps(scenario, topo, folder)
    if problems:
        raise ConfigError(_cap(problems, str(path)))
    return scenario, topo, topo_path


def dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False)


# -- following the steps --------------------------------------------------------------------


@dataclass
class _Lab:
    """The lab as the steps so far leave it."""

    topo: Topology
    up: bool = False
    plan: LabPlan | None = None  # None before `up`, or when the lab cannot be planned
    ipip: bool = False  # whether `up` set IP-in-IP up (a live change cannot add it later)
    written: set[Path] = field(default_factory=set)  # snapshots written by earlier steps

    def node(self, name: str) -> NodePlan | None:
        if self.plan is None:
            return None
        return next((n for n in self.plan.nodes if n.name == name), None)

    def families(self) -> set[int]:
        if self.plan is None:
            return {4, 6}
        return {f for n in self.plan.nodes for f in (4, 6) if n.address(f) is not None}


def check_steps(scenario: Scenario, topo: Topology, folder: Path | None = None) -> list[Problem]:
    """Follow the steps through the topology and plan they change; report what can never
    work. `folder` is the scenario's folder: without it, files are not checked."""
    problems: list[Problem] = []
    lab = _Lab(topo)
    for index, step in enumerate(scenario.steps):
        where = f"steps[{index}].{step.kind}"
        if step.kind == "up":
            problems += _bring_up(where, step, lab)
            continue
        if not lab.up and step.kind != "wait":
            problems.append(
                Problem(where, "the lab is not up yet", "start the steps with `- up: {}`")
            )
            problems += _bring_up(where, None, lab)  # report each later step once, no cascade
        problems += _check_refs(where, step, lab.topo)
        if step.expect is not None:
            problems += _check_expectation(where, step.expect, lab, folder)
        if step.write_snapshot is not None and folder is not None:
            target = _output_target(folder, step.write_snapshot.file, f"{where}.file")
            if isinstance(target, Problem):
                problems.append(target)
            else:
                lab.written.add(target)
        if step.kind in TOPOLOGY_KINDS:
            problems += _change(where, step, lab)
    return problems


def _bring_up(where: str, step: Step | None, lab: _Lab) -> list[Problem]:
    if lab.up:
        return [Problem(where, "the lab is already up", "drop this step")]
    lab.up = True
    try:
        lab.topo, lab.plan = evolve(lab.topo, None, step or _UP)
    except ChangeError as err:
        return [Problem(where, err.message.replace("changed topology", "lab"), err.hint)]
    lab.ipip = any(p.ipip_mode != "Never" for p in lab.plan.pools)
    return []


def _change(where: str, step: Step, lab: _Lab) -> list[Problem]:
    """Apply a topology-changing step to the lab; what makes it impossible on a running lab."""
    old = lab.plan
    try:
        topo, plan = evolve(lab.topo, old, step)
    except ChangeError as err:
        return [Problem(where, err.message, err.hint)]
    lab.topo, lab.plan = topo, plan
    problems: list[Problem] = []
    if old is not None:
        problems += _address_problems(where, step, old, plan)
        if not lab.ipip and any(p.ipip_mode != "Never" for p in plan.pools):
            problems.append(
                Problem(
                    where,
                    "this lab comes up without IP-in-IP (no IPIP pool at `up`), and a live "
                    "change cannot add it",
                    "give the topology an IPIP pool from the start, or use vxlanMode",
                )
            )
    return problems


def _address_problems(where: str, step: Step, old: LabPlan, new: LabPlan) -> list[Problem]:
    """A node added to the running lab must not get an address a running node or router has:
    the running lab keeps its addresses (`Sticky`), so the two would collide."""
    kept = {n.name for n in new.nodes}
    holders: dict[str, str] = {}
    for node in old.nodes:
        if node.name in kept:
            for family in (4, 6):
                if (address := node.address(family)) is not None:
                    holders[address] = f"running node {node.name}"
    for router in old.routers:
        for interface in router.interfaces:
            for address in (interface.ipv4, interface.ipv6):
                if address is not None:
                    holders[address] = f"router {router.name}"
    old_names = {n.name for n in old.nodes}
    fixed = step.add_node
    problems = []
    for node in new.nodes:
        if node.name in old_names:
            continue
        for family in (4, 6):
            address = node.address(family)
            if address is None or address not in holders:
                continue
            given = fixed is not None and getattr(fixed, f"ipv{family}") is not None
            problems.append(
                Problem(
                    f"{where}.ipv{family}" if given else where,
                    f"{node.name} would get {address}, the address of {holders[address]}",
                    "give it a free address, or remove that node first"
                    if given
                    else "fix a free address for it",
                )
            )
    return problems


# -- references -----------------------------------------------------------------------------


def _node_names(topo: Topology) -> str:
    return _listed(sorted(topo.nodes))


def _listed(names: list[str], most: int = 12) -> str:
    shown = ", ".join(names[:most])
    return shown if len(names) <= most else f"{shown}, ... ({len(names)} in all)"


def _check_node(where: str, node: str, topo: Topology) -> list[Problem]:
    if node not in topo.nodes:
        return [
            Problem(
                f"{where}.node",
                f"unknown node {_short(node)!r} at this step",
                f"nodes now: {_node_names(topo)}",
            )
        ]
    return []


def _check_refs(where: str, step: Step, topo: Topology) -> list[Problem]:
    arg = step.argument()
    kind = step.kind
    problems: list[Problem] = []
    if isinstance(arg, NodeRef | PodsChange):
        problems += _check_node(where, arg.node, topo)
        if (
            kind == "stop-reflector"
            and arg.node in topo.nodes
            and topo.nodes[arg.node].route_reflector_cluster_id is None
        ):
            problems.append(
                Problem(
                    f"{where}.node",
                    f"{arg.node} is not a route reflector",
                    "use stop-speaker for other nodes",
                )
            )
    if isinstance(arg, SetPool | PoolRef) and arg.pool not in topo.pools:
        problems.append(
            Problem(
                f"{where}.pool",
                f"unknown pool {_short(arg.pool)!r}",
                f"pools now: {_listed(sorted(topo.pools))}",
            )
        )
    if isinstance(arg, PeerRef) and arg.peer not in topo.bgp.peers:
        problems.append(
            Problem(
                f"{where}.peer",
                f"unknown BGP peer {_short(arg.peer)!r}",
                f"peers now: {_listed(sorted(topo.bgp.peers)) or 'none'}",
            )
        )
    return problems


# -- expectations ---------------------------------------------------------------------------


def _check_expectation(
    where: str, expect: Expectation, lab: _Lab, folder: Path | None
) -> list[Problem]:
    where = f"{where}.{expect.kind}"
    if expect.route is not None:
        return _check_route(where, expect.route, lab)
    if expect.session is not None:
        return _check_session(where, expect.session, lab)
    if expect.reachable is not None:
        return _check_reachable(where, expect.reachable, lab)
    if expect.snapshot is not None and folder is not None:
        return _check_snapshot(f"{where}.file", expect.snapshot.file, folder, lab.written)
    return []


def _family(text: str) -> int:
    return 4 if text == "ipv4" else 6


def _address_version(text: str) -> int | None:
    """The IP version of an address, None for anything else (a prefix included)."""
    try:
        return ipaddress.ip_address(text).version
    except ValueError:
        return None


def _address_form(where: str, text: str) -> list[Problem]:
    """The lab reports addresses in their short lower-case form and the runner compares text:
    `FD00::0001` would never match `fd00::1`."""
    canonical = str(ipaddress.ip_address(text))
    if canonical == text:
        return []
    return [Problem(where, f"the lab writes {text} as {canonical}", f"write {canonical}")]


def _prefix_problems(where: str, text: str) -> list[Problem]:
    try:
        parse_network(text)
    except ValueError as err:
        return [Problem(where, _short(str(err)), "write a prefix like 10.0.1.0/24 or fd00::/64")]
    return []


def _missing_family(where: str, family: int, lab: _Lab) -> list[Problem]:
    """An expectation in a family no node of the lab has at this step."""
    if family in lab.families():
        return []
    other = 6 if family == 4 else 4
    return [
        Problem(
            where,
            f"the lab has no IPv{family} at this step (its nodes have IPv{other} addresses only)",
            f"expect family ipv{other}, or give the subnets an IPv{family} prefix",
        )
    ]


def _lacks(node: NodePlan | None, family: int) -> bool:
    return node is not None and node.address(family) is None


def _check_route(where: str, route: RouteExpect, lab: _Lab) -> list[Problem]:
    topo = lab.topo
    problems = _check_node(where, route.node, topo)
    if route.to is not None and route.to not in topo.nodes:
        problems.append(
            Problem(
                f"{where}.to",
                f"unknown node {_short(route.to)!r}",
                f"nodes now: {_node_names(topo)}",
            )
        )
    if route.via is not None and route.via not in topo.nodes:
        if _address_version(route.via) is None:
            problems.append(
                Problem(
                    f"{where}.via",
                    f"{_short(route.via)!r} is neither a node nor an address",
                    "write a node name or an IP address",
                )
            )
        else:
            problems += _address_form(f"{where}.via", route.via)
    if route.prefix is not None:
        problems += _prefix_problems(f"{where}.prefix", route.prefix)
    if not route.present and (route.via or route.dev):
        problems.append(
            Problem(
                f"{where}",
                "via/dev given for a route expected absent",
                "drop via and dev, or expect present: true",
            )
        )
    if problems:
        return problems
    # The runner reads `family` for the blocks of `to` and for a `via` node's address; a
    # prefix is of its own family.
    family = ipaddress.ip_network(route.prefix).version if route.prefix else _family(route.family)
    missing = _missing_family(f"{where}.{'prefix' if route.prefix else 'family'}", family, lab)
    if missing:
        return missing
    if (
        route.to is not None
        and not any(ipaddress.ip_network(b.cidr).version == family for b in _blocks(lab, route.to))
        and lab.plan is not None
    ):
        problems.append(
            Problem(
                f"{where}.to",
                f"{route.to} has no IPv{family} block at this step",
                f"blocks come from IPv{family} pools whose nodeSelector selects {route.to}",
            )
        )
    if route.present:
        if _lacks(lab.node(route.node), family):
            problems.append(
                Problem(
                    f"{where}.node",
                    f"{route.node} has no IPv{family} address, so no IPv{family} routes",
                    "expect the family the node has",
                )
            )
        problems += _check_via(f"{where}.via", route, family, lab)
    return problems


def _blocks(lab: _Lab, node: str) -> list[Any]:
    found = lab.node(node)
    return list(found.blocks) if found is not None else []


def _check_via(where: str, route: RouteExpect, family: int, lab: _Lab) -> list[Problem]:
    via = route.via
    if via is None:
        return []
    if via in lab.topo.nodes:
        if _family(route.family) != family:
            return [
                Problem(
                    where,
                    f"via names node {via}, read as its {route.family} address, but the prefix "
                    f"is of family ipv{family}",
                    f"add family: ipv{family}",
                )
            ]
        if _lacks(lab.node(via), family):
            return [Problem(where, f"{via} has no IPv{family} address", "name another next hop")]
        return []
    if _address_version(via) != family:
        return [
            Problem(
                where,
                f"{via} is an IPv{_address_version(via)} address, but the route is IPv{family}",
                f"write an IPv{family} next hop",
            )
        ]
    return []


def _check_session(where: str, session: SessionExpect, lab: _Lab) -> list[Problem]:
    topo = lab.topo
    problems = _check_node(where, session.node, topo)
    peer = session.peer
    peer_version = None if peer in topo.nodes else _address_version(peer)
    if peer not in topo.nodes and peer_version is None:
        problems.append(
            Problem(
                f"{where}.peer",
                f"unknown peer {_short(peer)!r}",
                f"a node ({_node_names(topo)}) or an address",
            )
        )
    elif peer_version is not None:
        problems += _address_form(f"{where}.peer", peer)
    if problems:
        return problems
    # A peer address is of its own family; a peer node is read in `family`.
    family = peer_version or _family(session.family)
    missing = _missing_family(f"{where}.{'peer' if peer_version else 'family'}", family, lab)
    if missing or session.state != "established":
        return missing
    if _lacks(lab.node(session.node), family):
        problems.append(
            Problem(
                f"{where}.node",
                f"{session.node} has no IPv{family} address: no IPv{family} session comes up",
                "expect the family the node has",
            )
        )
    if peer in topo.nodes and _lacks(lab.node(peer), family):
        problems.append(
            Problem(
                f"{where}.peer",
                f"{peer} has no IPv{family} address: no IPv{family} session comes up",
                "expect the family both nodes have",
            )
        )
    return problems


def _check_reachable(where: str, reach: ReachExpect, lab: _Lab) -> list[Problem]:
    family = _family(reach.family)
    ends = [_pod(f"{where}.from", reach.from_, lab), _pod(f"{where}.to", reach.to, lab)]
    problems = [end for end in ends if isinstance(end, Problem)]
    if problems:
        return problems
    missing = _missing_family(f"{where}.family", family, lab)
    if missing:
        return missing
    pods = [end for end in ends if isinstance(end, PodPlan)]
    for label, pod in zip(("from", "to"), pods, strict=False):
        if (pod.ipv4 if family == 4 else pod.ipv6) is None:
            # The runner fails such a step whatever it expects: it has nothing to probe.
            problems.append(
                Problem(
                    f"{where}.{label}",
                    f"{pod.node}/{pod.name} has no IPv{family} address",
                    f"its node has no IPv{family} address or no IPv{family} pool selects it",
                )
            )
    if problems or len(pods) != 2 or reach.path is None or not reach.reachable:
        return problems
    assert lab.plan is not None
    why = _impossible_path(reach.path, family, pods[0], pods[1], lab.plan)
    if why is not None:
        return [Problem(f"{where}.path", why, "expect the path the pools give, or no path")]
    return []


def _pod(where: str, ref: str, lab: _Lab) -> PodPlan | Problem | None:
    """The pod `node/pod` names at this step (None when only the topology is known)."""
    node, slash, pod = ref.partition("/")
    if not slash or not node or not pod:
        return Problem(where, f"{_short(ref)!r} is not a pod", "write node/pod, like node1/pod1")
    if node not in lab.topo.nodes:
        return Problem(
            where,
            f"unknown node {_short(node)!r} in {_short(ref)!r}",
            f"nodes now: {_node_names(lab.topo)}",
        )
    found = lab.node(node)
    names = (
        [p.name for p in found.pods]
        if found is not None
        else [f"pod{i}" for i in range(1, lab.topo.nodes[node].pods + 1)]
    )
    if pod not in names:
        return Problem(
            where,
            f"unknown pod {_short(ref)!r} at this step",
            f"{node} has pods {names[0]}..{names[-1]}" if names else f"{node} has no pods",
        )
    return next((p for p in found.pods if p.name == pod), None) if found is not None else None


def _impossible_path(
    path: str, family: int, source: PodPlan, target: PodPlan, plan: LabPlan
) -> str | None:
    """Why `path` can never be seen from `source` to `target`, or None if it can.

    Only what is certain whatever BGP does: the encapsulation of a route is decided by the
    pool of the target's block and whether the next hop shares the source's subnet
    (`model.routes.route_for`; Calico: calico/networking/vxlan-ipip.md in projectcalico/calico,
    "CrossSubnet" encapsulates only traffic that crosses a subnet boundary, and there is no
    IP-in-IP for IPv6); traffic inside one node never leaves it. VXLAN Always is not taken as
    certain: `route_for` routes natively to a node without a VTEP.
    """
    if source.node == target.node:
        return None if path == "local" else f"both pods are on {source.node}: the path is local"
    if path == "local":
        return f"the pods are on two nodes ({source.node}, {target.node}): the path is not local"
    src, dst = plan.node(source.node), plan.node(target.node)
    same = src.subnet == dst.subnet
    between = f"{src.name} and {dst.name} are in the same subnet {src.subnet}"
    pool_name = target.pool4 if family == 4 else target.pool6
    pool: PoolPlan | None = next((p for p in plan.pools if p.name == pool_name), None)
    ipip = pool.ipip_mode if pool is not None and family == 4 else "Never"
    vxlan = pool.vxlan_mode if pool is not None else "Never"
    where = f"pool {pool_name} of {target.node}/{target.name}"
    if path == "ipip":
        if family == 6:
            return "Calico has no IPIP (IP-in-IP) for IPv6"
        if ipip == "Never":
            return f"{where} does not use IPIP (ipipMode Never)"
        if ipip == "CrossSubnet" and same:
            return f"{where} uses IPIP CrossSubnet, and {between}"
    if path == "vxlan":
        if vxlan == "Never":
            return f"{where} does not use VXLAN for IPv{family} (vxlanMode Never)"
        if vxlan == "CrossSubnet" and same:
            return f"{where} uses VXLAN CrossSubnet, and {between}"
    if path in ("direct", "router") and (ipip == "Always" or (ipip == "CrossSubnet" and not same)):
        return f"{where} encapsulates with IPIP ({ipip}) between these nodes"
    if path == "router" and same:
        return f"{between}: no router between them"
    return None


def _check_snapshot(where: str, file: str, folder: Path, written: set[Path]) -> list[Problem]:
    """A snapshot to compare with exists (or an earlier step writes it) and is a snapshot."""
    hint = "write it with `meshemu snapshot LAB -o FILE` or a write-snapshot step before this"
    try:
        target = (folder.resolve(strict=True) / file).resolve()
    except (OSError, RuntimeError, ValueError):
        return [Problem(where, f"{_short(file)!r} cannot be resolved (a symlink loop?)", hint)]
    if target in written:
        return []
    try:
        os.close(_open_regular(target, MAX_SNAPSHOT_BYTES, hint))
    except ConfigError as err:
        problem = err.problems[0]
        message = problem.message
        if message == "no such file":
            message = f"no such file {_short(target)}"
        return [Problem(where, message, problem.hint or hint)]
    try:
        read_snapshot(target)
    except ConfigError as err:
        first = err.problems[0]
        return [
            Problem(
                where, f"{_short(target.name)} is not a snapshot: {_short(first.message)}", hint
            )
        ]
    return []


# -- files a scenario writes ----------------------------------------------------------------


def _output_target(folder: Path, file: str, where: str) -> Path | Problem:
    """Where a scenario writes `file`: a path inside its folder, resolved through every
    symlink, whose parent folder exists and which is not a directory or other special file."""
    hint = "write a path relative to the scenario's folder, inside it"
    if not file:
        return Problem(where, "names no file", hint)
    if Path(file).is_absolute():
        return Problem(where, f"{_short(file)} is an absolute path", hint)
    try:
        base = folder.resolve(strict=True)
        target = (base / file).resolve()
    except (OSError, RuntimeError, ValueError):
        return Problem(where, f"{_short(file)!r} cannot be resolved (a symlink loop?)", hint)
    if target == base:
        return Problem(
            where, f"{_short(file)!r} is the scenario's folder itself", "name a file in it"
        )
    if not target.is_relative_to(base):
        return Problem(
            where, f"{_short(file)!r} resolves to {_short(target)}, outside {base}", hint
        )
    if not target.parent.is_dir():
        return Problem(where, f"folder {_short(target.parent)} does not exist", "create it first")
    try:
        kind = _not_regular(target.lstat().st_mode)
    except FileNotFoundError:
        kind = None
    except OSError as err:
        return Problem(where, f"{_short(file)!r}: {err.strerror}", hint)
    if kind is not None:
        return Problem(where, f"{_short(file)!r} is {kind}", "name a file")
    return target


def output_path(folder: Path, file: str) -> Path:
    """The resolved path a scenario in `folder` writes `file` to (the runner writes there);
    ConfigError if it would be outside the folder or cannot be written."""
    target = _output_target(folder, file, "file")
    if isinstance(target, Problem):
        raise ConfigError([target])
    return target


_UP = Step.model_validate({"up": {}})
