"""The scenario format (pydantic, unknown fields rejected) and its validation against the lab.

Owns what a scenario file may say and checking it before anything is created: every step is
one known action or expectation; every node, pod, pool and peer it names exists at that point
of the scenario (steps that add or remove them are followed through); every expectation can be
evaluated. Problems are collected with their location (`steps[3].expect.route.node`) and a hint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from meshemu.errors import ConfigError, Problem
from meshemu.model.load import parse_yaml, problems_from_validation
from meshemu.model.topology import (
    DNS_LABEL,
    LAB_NAME_MAX,
    NodeSpec,
    PeerSpec,
    PoolSpec,
    Topology,
)

Family = Literal["ipv4", "ipv6"]
Path_ = Literal["local", "direct", "ipip", "vxlan", "router"]


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
    name: str | None = None
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
    name: str
    description: str = ""
    topology: str
    lab: str | None = None
    steps: list[Step] = Field(min_length=1)


def _lab_name(scenario: Scenario) -> str:
    name = scenario.lab or ("sc-" + scenario.name)[:LAB_NAME_MAX].rstrip("-")
    return name


def load_scenario(path: Path) -> tuple[Scenario, Topology, Path]:
    """Parse and validate a scenario file; ConfigError lists every problem found."""
    from meshemu.model.load import load_topology

    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError([Problem(str(path), f"cannot read: {err.strerror}", "")]) from None
    documents = parse_yaml(text, str(path))
    if len(documents) != 1 or not isinstance(documents[0], dict):
        raise ConfigError([Problem(str(path), "a scenario is one YAML mapping", "")])
    try:
        scenario = Scenario.model_validate(documents[0])
    except ValidationError as err:
        raise ConfigError(problems_from_validation(err)) from None
    topo_path = (path.parent / scenario.topology).resolve()
    lab = _lab_name(scenario)
    problems = []
    if not DNS_LABEL.match(lab) or len(lab) > LAB_NAME_MAX:
        problems.append(
            Problem(
                "lab",
                f"lab name {lab!r} is not a DNS label of at most {LAB_NAME_MAX} characters",
                "set lab: to a short name",
            )
        )
    if not topo_path.exists():
        problems.append(
            Problem(
                "topology", f"no such file {topo_path}", "the path is relative to the scenario file"
            )
        )
        raise ConfigError(problems)
    try:
        topo = load_topology(topo_path, name=lab if not problems else None)
    except ConfigError as err:
        raise ConfigError(
            [
                Problem(f"topology ({topo_path.name}): {p.location}", p.message, p.hint)
                for p in err.problems
            ]
        ) from None
    problems += check_steps(scenario, topo)
    if problems:
        raise ConfigError(problems)
    return scenario, topo, topo_path


def dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False)


def check_steps(scenario: Scenario, topo: Topology) -> list[Problem]:
    """Follow the steps through the topology they change; report what can never work."""
    from meshemu.scenario.evolve import apply_step_to_topology

    problems: list[Problem] = []
    current = topo
    is_up = False
    for index, step in enumerate(scenario.steps):
        where = f"steps[{index}].{step.kind}"
        kind = step.kind
        if kind == "up":
            if is_up:
                problems.append(Problem(where, "the lab is already up", "drop this step"))
            is_up = True
            continue
        if not is_up and kind not in ("wait",):
            problems.append(
                Problem(where, "the lab is not up yet", "start the steps with `- up: {}`")
            )
            is_up = True  # report each later step once, not as a cascade
        problems += _check_refs(where, step, current)
        try:
            current = apply_step_to_topology(current, step)
        except ValueError as err:
            problems.append(Problem(where, str(err), ""))
    return problems


def _node_names(topo: Topology) -> str:
    return ", ".join(sorted(topo.nodes))


def _check_node(where: str, node: str, topo: Topology) -> list[Problem]:
    if node not in topo.nodes:
        return [
            Problem(
                f"{where}.node",
                f"unknown node {node!r} at this step",
                f"nodes now: {_node_names(topo)}",
            )
        ]
    return []


def _check_pod(where: str, ref: str, topo: Topology) -> list[Problem]:
    node, _, pod = ref.partition("/")
    if node not in topo.nodes:
        return [
            Problem(where, f"unknown node {node!r} in {ref!r}", f"nodes now: {_node_names(topo)}")
        ]
    pods = topo.nodes[node].pods
    if not pod.startswith("pod") or not pod[3:].isdigit() or not 1 <= int(pod[3:]) <= pods:
        return [
            Problem(
                where,
                f"unknown pod {ref!r}",
                f"{node} has pods pod1..pod{pods}" if pods else f"{node} has no pods",
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
                f"unknown pool {arg.pool!r}",
                f"pools now: {', '.join(sorted(topo.pools))}",
            )
        )
    if isinstance(arg, PeerRef) and arg.peer not in topo.bgp.peers:
        problems.append(
            Problem(
                f"{where}.peer",
                f"unknown BGP peer {arg.peer!r}",
                f"peers now: {', '.join(sorted(topo.bgp.peers)) or 'none'}",
            )
        )
    if isinstance(arg, Expectation):
        problems += _check_expectation(where, arg, topo)
    return problems


def _check_expectation(where: str, expect: Expectation, topo: Topology) -> list[Problem]:
    problems: list[Problem] = []
    if expect.route is not None:
        route = expect.route
        problems += _check_node(f"{where}.route", route.node, topo)
        if route.to is not None and route.to not in topo.nodes:
            problems.append(
                Problem(
                    f"{where}.route.to",
                    f"unknown node {route.to!r}",
                    f"nodes now: {_node_names(topo)}",
                )
            )
        if route.via is not None and route.via not in topo.nodes and not _is_ip(route.via):
            problems.append(
                Problem(
                    f"{where}.route.via",
                    f"{route.via!r} is neither a node nor an address",
                    "write a node name or an IP address",
                )
            )
        if route.prefix is not None and not _is_net(route.prefix):
            problems.append(
                Problem(f"{where}.route.prefix", f"{route.prefix!r} is not a prefix", "")
            )
        if not route.present and (route.via or route.dev):
            problems.append(
                Problem(
                    f"{where}.route",
                    "via/dev given for a route expected absent",
                    "drop via and dev, or expect present: true",
                )
            )
    if expect.session is not None:
        problems += _check_node(f"{where}.session", expect.session.node, topo)
        peer = expect.session.peer
        if peer not in topo.nodes and not _is_ip(peer):
            problems.append(
                Problem(
                    f"{where}.session.peer",
                    f"unknown peer {peer!r}",
                    f"a node ({_node_names(topo)}) or an address",
                )
            )
    if expect.reachable is not None:
        problems += _check_pod(f"{where}.reachable.from", expect.reachable.from_, topo)
        problems += _check_pod(f"{where}.reachable.to", expect.reachable.to, topo)
    return problems


def _is_ip(text: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _is_net(text: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_network(text)
    except ValueError:
        return False
    return True
