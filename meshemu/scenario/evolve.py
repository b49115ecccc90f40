"""How each topology-changing scenario step changes the topology (pure)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from meshemu.model.topology import Topology
from meshemu.scenario.model import Step


def _rebuild(data: dict[str, Any]) -> Topology:
    try:
        return Topology.model_validate(data)
    except ValidationError as err:
        raise ValueError(f"the changed topology is invalid: {err.errors()[0]['msg']}") from None


def apply_step_to_topology(topo: Topology, step: Step) -> Topology:
    """The topology after `step` (unchanged for steps that do not change it)."""
    kind, arg = step.kind, step.argument()
    data = topo.model_dump(mode="json", by_alias=True)
    if kind == "add-node":
        spec = arg.model_dump(mode="json", by_alias=True, exclude={"name"}, exclude_none=True)
        if arg.name in data["nodes"]:
            raise ValueError(f"node {arg.name!r} exists already")
        if spec["subnet"] not in data["subnets"]:
            raise ValueError(f"unknown subnet {spec['subnet']!r}")
        data["nodes"][arg.name] = spec
    elif kind == "remove-node":
        data["nodes"].pop(arg.node, None)
        if not data["nodes"]:
            raise ValueError("removing the last node leaves no lab")
    elif kind in ("add-pods", "remove-pods") and arg.node in data["nodes"]:
        pods = data["nodes"][arg.node]["pods"] + (arg.count if kind == "add-pods" else -arg.count)
        if pods < 0:
            raise ValueError(f"{arg.node} has only {data['nodes'][arg.node]['pods']} pods")
        data["nodes"][arg.node]["pods"] = pods
    elif kind == "set-pool" and arg.pool in data["pools"]:
        if arg.ipip_mode is not None:
            data["pools"][arg.pool]["ipipMode"] = arg.ipip_mode
        if arg.vxlan_mode is not None:
            data["pools"][arg.pool]["vxlanMode"] = arg.vxlan_mode
    elif kind == "add-pool":
        if arg.name in data["pools"]:
            raise ValueError(f"pool {arg.name!r} exists already")
        data["pools"][arg.name] = arg.model_dump(
            mode="json", by_alias=True, exclude={"name"}, exclude_none=True
        )
    elif kind == "remove-pool":
        data["pools"].pop(arg.pool, None)
    elif kind == "add-peer":
        if arg.name in data["bgp"]["peers"]:
            raise ValueError(f"BGP peer {arg.name!r} exists already")
        data["bgp"]["peers"][arg.name] = arg.model_dump(
            mode="json", by_alias=True, exclude={"name"}, exclude_none=True
        )
    elif kind == "remove-peer":
        data["bgp"]["peers"].pop(arg.peer, None)
    else:
        return topo
    new = _rebuild(data)
    from meshemu.errors import ConfigError
    from meshemu.model.plan import build_plan
    from meshemu.model.rules import check_topology

    problems = check_topology(new)
    if problems:
        raise ValueError(f"the changed topology breaks a rule: {problems[0]}")
    try:
        build_plan(new)
    except ConfigError as err:
        raise ValueError(f"the changed topology cannot be planned: {err.problems[0]}") from None
    return new
