"""Calico's IPAMConfiguration resource in a bundle (model/calico_bundle.py, calico.py)."""

from __future__ import annotations

import pytest

from meshemu.errors import ConfigError
from meshemu.model.load import load_topology_text
from meshemu.model.plan import LabPlan, build_plan

NODES = """
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: a}
spec: {bgp: {ipv4Address: 10.0.0.2/24}}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: p}
spec: {cidr: 192.168.0.0/30, blockSize: 32}
"""


def _ipam(name: str, spec: str) -> str:
    return f"""---
apiVersion: projectcalico.org/v3
kind: IPAMConfiguration
metadata: {{name: {name}}}
spec: {spec}
"""


def _plan(extra: str) -> LabPlan:
    return build_plan(load_topology_text(NODES + extra, "bundle.yaml", "t"))


def test_max_blocks_per_host_from_the_bundle() -> None:
    plan = _plan(_ipam("default", "{strictAffinity: false, maxBlocksPerHost: 1}"))
    # The converter gives a bundle node two pods; one one-address block holds one of them.
    assert [p.ipv4 for p in plan.node("a").pods] == ["192.168.0.0"]
    assert any("limit of 1 blocks reached" in n for n in plan.notes), plan.notes


def test_without_the_resource_calico_defaults_apply() -> None:
    plan = _plan("")
    assert [p.ipv4 for p in plan.node("a").pods] == ["192.168.0.0", "192.168.0.1"]
    assert not any("not created" in n for n in plan.notes)


def test_only_default_is_accepted() -> None:
    with pytest.raises(ConfigError) as err:
        _plan(_ipam("other", "{strictAffinity: true}"))
    assert 'other than "default"' in str(err.value)


def test_bounds_and_unemulated_fields() -> None:
    with pytest.raises(ConfigError) as err:
        _plan(_ipam("default", "{maxBlocksPerHost: -1}"))
    assert "maxBlocksPerHost" in str(err.value)
    plan = _plan(_ipam("default", "{autoAllocateBlocks: false, ipCooldownSeconds: 30}"))
    listed = [where for where, _ in plan.unsupported]
    assert any(w.endswith("spec.autoAllocateBlocks") for w in listed), listed
    assert any(w.endswith("spec.ipCooldownSeconds") for w in listed), listed
