"""The outside host check (pure): the source address the outside host saw for each pod.

Owns `OutsideSeen` (one pod's probe to the outside host, as observed by
`verify.outside_probe`) and `check_outside`: a pod of a natOutgoing pool must arrive with its
node's address (Felix's masquerade, docs/research/felix/nat-outgoing.md), any other pod with
its own address. A pod of a pool without natOutgoing gets no answer unless the fabric routes
the pool back (routers with BGP), so an unanswered probe there is reported, not failed. No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from meshemu.model.nat import expected_source
from meshemu.model.plan import LabPlan
from meshemu.verify.results import FAIL, PASS, SKIP, CheckResult


@dataclass(frozen=True)
class OutsideSeen:
    """One probe: from a pod's address to the outside host; `seen` is the source address the
    outside host answered it saw (None: no answer); `error`: the probe could not run."""

    node: str
    pod: str
    family: int
    pod_ip: str
    target: str
    seen: str | None
    error: str | None = None


def check_outside(plan: LabPlan, probes: tuple[OutsideSeen, ...]) -> list[CheckResult]:
    if plan.outside is None:
        return []
    results = []
    nodes = {n.name: n for n in plan.nodes}
    for probe in probes:
        node = nodes[probe.node]
        want = expected_source(probe.pod_ip, node.address(probe.family), plan.pools)
        natted = want != probe.pod_ip
        name = f"ipv{probe.family} {probe.node}/{probe.pod} -> outside {probe.target}"
        expected = (
            f"seen from {want} (node {probe.node}, natOutgoing)"
            if natted
            else f"seen from {want} (the pod, no NAT)"
        )
        details = {
            "family": probe.family,
            "pod_ip": probe.pod_ip,
            "target": probe.target,
            "expected_source": want,
            "seen": probe.seen,
            "nat": natted,
        }
        if probe.error is not None:
            results.append(
                CheckResult(
                    "outside",
                    name,
                    FAIL,
                    expected,
                    "not probed",
                    probe.error,
                    probe.node,
                    None,
                    details,
                )
            )
        elif probe.seen is None and not natted:
            # Without NAT the reply goes to the pod's address, which routers without the pod
            # routes (no BGP) cannot route back: what Calico users meet too.
            results.append(
                CheckResult(
                    "outside",
                    name,
                    SKIP,
                    expected,
                    "no answer",
                    "the reply to a pod address needs the fabric to route the pool back "
                    "(routers with BGP), or natOutgoing",
                    probe.node,
                    None,
                    details,
                )
            )
        elif probe.seen == want:
            results.append(
                CheckResult(
                    "outside",
                    name,
                    PASS,
                    expected,
                    f"seen from {probe.seen}",
                    node=probe.node,
                    details=details,
                )
            )
        else:
            observed = "no answer" if probe.seen is None else f"seen from {probe.seen}"
            diagnosis = (
                f"the outside host saw {probe.seen}, not {want}: "
                + ("natOutgoing did not masquerade" if natted else "NAT where none is expected")
                if probe.seen is not None
                else "no reply from the outside host: NAT or the route to it is missing"
            )
            results.append(
                CheckResult(
                    "outside",
                    name,
                    FAIL,
                    expected,
                    observed,
                    diagnosis,
                    probe.node,
                    None,
                    details,
                )
            )
    return results
