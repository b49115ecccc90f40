"""A live change the running lab cannot take is refused before anything changes (exit 2): a
node added with a running node's address (the lab keeps addresses, so both would hold it), and
IP-in-IP added to a lab that came up without it."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshemu.errors import ConfigError
from meshemu.lab.live import _refuse_impossible
from meshemu.model.load import load_topology
from meshemu.model.plan import build_plan
from meshemu.model.topology import Topology

MESH = Path(__file__).resolve().parents[2] / "topologies" / "mesh.yaml"


def changed(topo: Topology, **nodes: dict[str, object]) -> Topology:
    data = topo.model_dump(mode="json", by_alias=True)
    data["nodes"].update(nodes)
    return Topology.model_validate(data)


def test_an_added_node_with_a_running_address_is_refused() -> None:
    topo = load_topology(MESH, name="ut-live")
    old = build_plan(topo)
    taken = old.node("node2").ipv4
    new = build_plan(changed(topo, node5={"subnet": "lan", "ipv4": taken}), previous=old)
    with pytest.raises(ConfigError, match=f"nodes.node5.ipv4: would get {taken}"):
        _refuse_impossible(old, new, "none")


def test_an_added_node_with_a_free_address_is_fine() -> None:
    topo = load_topology(MESH, name="ut-live")
    old = build_plan(topo)
    new = build_plan(changed(topo, node5={"subnet": "lan"}), previous=old)
    _refuse_impossible(old, new, "none")


def test_ipip_cannot_be_added_to_a_lab_without_it() -> None:
    topo = load_topology(MESH, name="ut-live")
    old = build_plan(topo)
    data = topo.model_dump(mode="json", by_alias=True)
    next(iter(data["pools"].values()))["ipipMode"] = "Always"
    new = build_plan(Topology.model_validate(data), previous=old)
    with pytest.raises(ConfigError, match="without IP-in-IP"):
        _refuse_impossible(old, new, "none")
    _refuse_impossible(old, new, "userspace")


def test_a_router_switching_to_its_own_bird_configuration_is_refused(tmp_path: Path) -> None:
    """BIRD was started with its file at `up`: another file needs a restart, not a reload."""
    topo = load_topology(MESH.with_name("as-per-rack.yaml"), name="ut-live")
    old = build_plan(topo)
    tor1 = topo.routers["tor1"]
    assert tor1.bgp is not None
    own = tor1.model_copy(update={"bgp": tor1.bgp.model_copy(update={"config": "/x/tor1.conf"})})
    new = build_plan(topo.model_copy(update={"routers": {**topo.routers, "tor1": own}}))
    with pytest.raises(ConfigError, match="own BIRD configuration file changed"):
        _refuse_impossible(old, new, "none")
