"""Finding a running lab and the things in it by name.

Owns resolving the lab a command means (the one named, or the only one up), and a `NODE`,
`NODE/POD` or `ROUTER` target to its namespace, from the lab's typed plan. An unknown lab,
node or pod is a `UsageError` (exit 2) that lists what exists.
"""

from __future__ import annotations

from meshemu.errors import UsageError
from meshemu.model.plan import LabPlan, NodePlan
from meshemu.state import LabState, check_lab_name, list_labs


def resolve_lab(name: str | None) -> LabState:
    """The state of the lab named `name`, or of the only lab up when no name is given."""
    if name is not None:
        state = LabState(check_lab_name(name))
        if not state.exists:
            up = ", ".join(list_labs()) or "none"
            raise UsageError(f"no lab named {name!r} is up (labs up: {up})")
        return state
    labs = list_labs()
    if len(labs) == 1:
        return LabState(labs[0])
    if not labs:
        raise UsageError("no lab is up: start one with `meshemu up TOPOLOGY`")
    raise UsageError(f"several labs are up ({', '.join(labs)}): say which with --lab NAME")


def node_of(plan: LabPlan, name: str) -> NodePlan:
    for node in plan.nodes:
        if node.name == name:
            return node
    known = ", ".join(n.name for n in plan.nodes)
    raise UsageError(f"lab {plan.name} has no node {name!r} (nodes: {known})")


def netns_of(plan: LabPlan, target: str) -> str:
    """`NODE`, `NODE/POD` or `ROUTER` -> its namespace in the lab."""
    node_name, _, pod_name = target.partition("/")
    router = next((r for r in plan.routers if r.name == node_name), None)
    if router is not None and not pod_name:
        return router.netns
    node = node_of(plan, node_name)
    if not pod_name:
        return node.netns
    for pod in node.pods:
        if pod.name == pod_name:
            return pod.netns
    pods = ", ".join(p.name for p in node.pods) or "none"
    raise UsageError(f"node {node_name} has no pod {pod_name!r} (pods: {pods})")
