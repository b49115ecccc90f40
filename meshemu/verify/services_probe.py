"""Probing the Services (I/O): every `verify.services.service_probes` probe, all probes of one
source namespace at once (`verify.connect.connect_many`). Reads the plan; changes nothing."""

from __future__ import annotations

from meshemu.model.plan import LabPlan
from meshemu.verify.connect import ConnectResult, Target, connect_many
from meshemu.verify.services import ServiceProbe, service_probes


def probe_services(
    plan: LabPlan, timeout: float = 2.0
) -> tuple[list[ServiceProbe], list[ConnectResult]]:
    probes = service_probes(plan)
    by_source: dict[str, list[int]] = {}
    for index, probe in enumerate(probes):
        by_source.setdefault(probe.netns, []).append(index)
    seen: list[ConnectResult | None] = [None] * len(probes)
    for netns, indexes in by_source.items():
        targets = [
            Target(probes[i].address, probes[i].port.port, probes[i].port.protocol) for i in indexes
        ]
        for i, got in zip(indexes, connect_many(netns, targets, timeout), strict=True):
            seen[i] = got
    return probes, [s for s in seen if s is not None]
