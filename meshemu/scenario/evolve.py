"""How each scenario step changes the topology and the plan of a running lab (pure).

Owns the transitions only: the topology after a step that adds or removes nodes, pods, pools or
peers, or changes a BGPPeer, a BGPFilter or a router's BGP settings, and the plan the running
lab then has. The plan is built the way a live change builds it (`build_plan(...,
previous=...)`: nodes keep their addresses and blocks, pods their IPs), so that a scenario
checked with these functions sees the addresses and pods the run will see.

This module knows steps only by their `kind` and `argument()` (`StepLike`), not the scenario
format: `scenario.changes` (the lab at each step of the checks) imports this module, never the
reverse.
"""

from __future__ import annotations

from typing import Any, Protocol

from pydantic import ValidationError

from meshemu.errors import ConfigError, Problem
from meshemu.model.plan import LabPlan, build_plan
from meshemu.model.policy import policy_key
from meshemu.model.rules import check_topology
from meshemu.model.topology import Topology

# The steps that change the topology (and so the plan); every other step leaves both alone.
TOPOLOGY_KINDS = (
    "up",
    "add-node",
    "remove-node",
    "add-pods",
    "remove-pods",
    "set-pods",
    "set-pool",
    "add-pool",
    "remove-pool",
    "add-peer",
    "remove-peer",
    "set-peer",
    "set-filter",
    "set-router",
    "apply-policy",
    "remove-policy",
)


class ChangeError(ValueError):
    """A step that cannot be applied: why, and what to do about it."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def _change_error(what: str, problem: Problem) -> ChangeError:
    return ChangeError(
        f"the changed topology {what}: {problem.location}: {problem.message}", problem.hint
    )


class StepLike(Protocol):
    """What this module needs of a scenario step (`scenario.schema.Step` is one)."""

    @property
    def kind(self) -> str: ...

    def argument(self) -> Any: ...


def _rebuild(data: dict[str, Any]) -> Topology:
    try:
        return Topology.model_validate(data)
    except ValidationError as err:
        raise ChangeError(f"the changed topology is invalid: {err.errors()[0]['msg']}") from None


def _dump(arg: Any) -> dict[str, Any]:
    dumped: dict[str, Any] = arg.model_dump(
        mode="json", by_alias=True, exclude={"name"}, exclude_none=True
    )
    return dumped


def _set_fields(target: dict[str, Any], arg: Any, fields: set[str]) -> None:
    """Write the `fields` (Python names) of `arg` into `target` (the resource's JSON form) by
    their aliases; a field given as null is dropped, so it takes its default again."""
    given = arg.model_dump(mode="json", by_alias=True, include=fields)
    for key, value in given.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value


def _changed_data(data: dict[str, Any], kind: str, arg: Any) -> bool:
    """Apply one step to the topology's JSON form in place; False if it changes nothing."""
    if kind == "up":
        if arg.pods is None:
            return False
        # `up: {pods: N}` gives every node N pods, as the runner does before `up`.
        for node in data["nodes"].values():
            node["pods"] = arg.pods
    elif kind == "add-node":
        spec = _dump(arg)
        if arg.name in data["nodes"]:
            raise ChangeError(f"node {arg.name!r} exists already")
        if spec["subnet"] not in data["subnets"]:
            raise ChangeError(f"unknown subnet {spec['subnet']!r}")
        data["nodes"][arg.name] = spec
    elif kind == "remove-node":
        data["nodes"].pop(arg.node, None)
        if not data["nodes"]:
            raise ChangeError("removing the last node leaves no lab")
    elif kind in ("add-pods", "remove-pods"):
        if arg.node not in data["nodes"]:
            return False
        have = data["nodes"][arg.node]["pods"]
        if isinstance(have, list):
            raise ChangeError(
                f"{arg.node} lists its pods by name: add-pods and remove-pods change a count"
            )
        pods = have + (arg.count if kind == "add-pods" else -arg.count)
        if pods < 0:
            raise ChangeError(f"{arg.node} has only {have} pods")
        data["nodes"][arg.node]["pods"] = pods
    elif kind == "set-pods":
        if arg.node not in data["nodes"]:
            return False
        data["nodes"][arg.node]["pods"] = arg.pods
    elif kind == "set-pool":
        if arg.pool not in data["pools"]:
            return False
        if arg.ipip_mode is not None:
            data["pools"][arg.pool]["ipipMode"] = arg.ipip_mode
        if arg.vxlan_mode is not None:
            data["pools"][arg.pool]["vxlanMode"] = arg.vxlan_mode
    elif kind == "add-pool":
        if arg.name in data["pools"]:
            raise ChangeError(f"pool {arg.name!r} exists already")
        data["pools"][arg.name] = _dump(arg)
    elif kind == "remove-pool":
        data["pools"].pop(arg.pool, None)
    elif kind == "add-peer":
        if arg.name in data["bgp"]["peers"]:
            raise ChangeError(f"BGP peer {arg.name!r} exists already")
        data["bgp"]["peers"][arg.name] = _dump(arg)
    elif kind == "remove-peer":
        data["bgp"]["peers"].pop(arg.peer, None)
    elif kind == "set-peer":
        if arg.peer not in data["bgp"]["peers"]:
            return False
        _set_fields(data["bgp"]["peers"][arg.peer], arg, arg.changed())
    elif kind == "set-filter":
        data["bgp"]["filters"][arg.name] = _dump(arg)
    elif kind == "set-router":
        bgp = data["routers"].get(arg.router, {}).get("bgp")
        if bgp is None:
            return False
        _set_fields(bgp, arg, {"node_password"})
    elif kind == "apply-policy":
        data.setdefault("policies", [])
        given = arg.model_dump(mode="json", by_alias=True)
        keys = [policy_key(p) for p in data["policies"]]
        if arg.key() in keys:  # (kubectl apply: the same policy replaced whole)
            data["policies"][keys.index(arg.key())] = given
        else:
            data["policies"].append(given)
    elif kind == "remove-policy":
        keys = [policy_key(p) for p in data.get("policies", [])]
        if arg.key() not in keys:
            api, what, namespace, name = arg.key()
            raise ChangeError(
                f"no {what} {namespace + '/' if namespace else ''}{name} ({api}) to remove",
                "name a policy the lab has (apiVersion, kind, namespace and name)",
            )
        del data["policies"][keys.index(arg.key())]
    else:
        return False
    return True


def changed_topology(topo: Topology, step: StepLike) -> Topology:
    """The topology after `step`, checked against Calico's rules (not planned); the same
    object for steps that do not change it. ChangeError says why the change is impossible."""
    data = topo.model_dump(mode="json", by_alias=True)
    if not _changed_data(data, step.kind, step.argument()):
        return topo
    new = _rebuild(data)
    problems = check_topology(new)
    if problems:
        raise _change_error("breaks a rule", problems[0])
    return new


def evolve(topo: Topology, plan: LabPlan | None, step: StepLike) -> tuple[Topology, LabPlan]:
    """The topology and plan of the lab after `step`.

    `plan` is the running lab's plan (None before `up`): the new plan keeps what the running
    lab handed out, as a live change does. ChangeError says why the step cannot be applied.
    """
    new = changed_topology(topo, step)
    if new is topo and plan is not None:
        return topo, plan
    try:
        return new, build_plan(new, previous=plan if step.kind != "up" else None)
    except ConfigError as err:
        raise _change_error("cannot be planned", err.problems[0]) from None


def apply_step_to_topology(
    topo: Topology, step: StepLike, previous: LabPlan | None = None
) -> Topology:
    """The topology after `step` (unchanged for steps that do not change it), checked to be
    plannable on top of `previous` (the running lab's plan) when given."""
    new = changed_topology(topo, step)
    if new is not topo:
        try:
            build_plan(new, previous=previous)
        except ConfigError as err:
            raise _change_error("cannot be planned", err.problems[0]) from None
    return new
