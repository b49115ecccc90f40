"""Felix's route programming in the lab: every node's Felix routes, kept in its kernel.

Owns writing what the plan says each node's Felix writes (`NodePlan.felix_fib`: the cluster
routes of the pools Felix owns on the node and their blocks' blackholes) into the node's main
table, and putting them back when something removed them, as Felix's route table resyncs do
(felix/routetable/route_table.go: a full resync every `routeRefreshInterval`, and on interface
changes). It runs inside the lab's route programmer (`dataplane.fibd`), one process for the
whole lab, and depends on no BGP process: Felix's routes stay when a speaker stops, as in
Calico. Only routes Felix's protocols mark are touched (80, and the device protocol on the
VXLAN devices: `routes.kernel_protocol`); BIRD's (12) and the pod routes are never.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from meshemu.dataplane.netlink import Batch, NetnsHandle
from meshemu.errors import DataplaneError
from meshemu.model.labplan import LabPlan
from meshemu.model.routes import PROTO_FELIX, FibRoute, kernel_protocol


def wanted_routes(plan: LabPlan) -> dict[str, list[FibRoute]]:
    """Node namespace -> the routes its Felix writes."""
    return {node.netns: node.felix_fib(plan.pools) for node in plan.nodes}


def written_by_felix(route: FibRoute) -> bool:
    """An observed route Felix wrote: its protocol says so (a blackhole's source is the node's
    own, whichever component wrote it, so its protocol is read from the observation)."""
    if route.type == "blackhole":
        return route.reason == f"proto {PROTO_FELIX}"
    return route.source == "felix"


def reconcile(handle: NetnsHandle, wanted: Sequence[FibRoute]) -> list[str]:
    """Make the namespace's Felix routes exactly `wanted`; the errors, one line each.

    The changes go to the kernel in one netlink write (`netlink.Batch`): the first pass of a
    100-node lab with an IP-in-IP pool writes some 10,000 routes, which one round trip each
    through pyroute2 took 15 s, the longest wait of the lab's convergence."""
    want = {r.key(): r for r in wanted}
    have = {r.key(): r for r in handle.routes() if written_by_felix(r)}
    changes = [("del", r, _observed_protocol(r)) for k, r in have.items() if k not in want]
    changes += [("replace", r, kernel_protocol(r)) for k, r in want.items() if k not in have]
    batch = Batch(handle.netns, handle.index)
    errors = []
    for op, route, proto in changes:
        try:
            _queue(batch, op, route, proto)
        except DataplaneError as err:  # its device is not there (yet): the others still go
            errors.append(f"{op} {route.text()}: {err}")
    try:
        errors += [error for error in batch.send() if error is not None]
    except DataplaneError as err:  # no answer from the kernel
        errors.append(str(err))
    if errors:
        handle.forget_indexes()  # a device may have been made again since it was looked up
    return errors


def _observed_protocol(route: FibRoute) -> int:
    return int(route.reason.split()[-1])


def _queue(batch: Batch, op: str, route: FibRoute, proto: int) -> None:
    batch.route(
        op,
        route.prefix,
        via=route.via,
        dev=route.dev,
        onlink=route.onlink,
        kind=route.type,
        proto=proto,
        metric=route.metric,
    )


def reconcile_all(
    handles: Mapping[str, NetnsHandle], wanted: Mapping[str, Sequence[FibRoute]]
) -> list[str]:
    """Felix's routes of every node whose namespace is open (`handles`; the caller reports the
    ones it could not open); the errors, one line each, prefixed with the namespace."""
    return [
        f"{netns}: {line}"
        for netns, handle in handles.items()
        for line in reconcile(handle, wanted[netns])
    ]
