"""YAML 1.1 base-60 numbers stay text, as Kubernetes reads them.

PyYAML implements YAML 1.1, where `5663:12` is the sexagesimal integer 339792 and `10:20` is
620. Kubernetes (sigs.k8s.io/yaml over go-yaml) has no base-60 numbers: a BGP community
`5663:12` written unquoted in a BGPConfiguration is the text "5663:12" for calicoctl and confd
(confd's own test input, confd/tests/mock_data/calicoctl/mesh/communities/input.yaml, writes it
that way). `meshemu.model.load` must read it the same way; other numbers are unchanged.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from meshemu.errors import ConfigError
from meshemu.model.load import load_topology, parse_yaml


@pytest.mark.parametrize(
    "text", ["5663:12", "10:20", "-1:30", "+190:20:30", "1:20.5", "190:20:30.15", "1_0:20"]
)
def test_base60_forms_are_text(text: str) -> None:
    assert parse_yaml(f"value: {text}\n", "in.yaml") == [{"value": text}]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("179", 179),
        ("-12", -12),
        ("0x1f", 31),
        ("0b101", 5),
        ("1_000", 1000),
        ("0", 0),
        ("1.5", 1.5),
        ("-2.5e+3", -2500.0),
        (".5", 0.5),
        ("true", True),
        ("~", None),
        ("2024-01-02", "2024-01-02"),  # timestamps stay text, as before
    ],
)
def test_other_scalars_keep_their_type(text: str, value: object) -> None:
    assert parse_yaml(f"value: {text}\n", "in.yaml") == [{"value": value}]


def test_an_explicit_tag_still_decides() -> None:
    assert parse_yaml("value: !!int 10:20\n", "in.yaml") == [{"value": 620}]


BUNDLE = """\
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: worker-a}
spec:
  bgp: {ipv4Address: 10.40.1.11/24}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: pool}
spec: {cidr: 192.168.0.0/16}
---
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec:
  communities:
    - {name: standard, value: 10:20}
  prefixAdvertisements:
    - cidr: 192.168.0.0/16
      communities: [standard, 5663:12]
"""


def test_a_bundle_keeps_communities_as_text(tmp_path: Path) -> None:
    path = tmp_path / "bundle.yaml"
    path.write_text(BUNDLE)
    topo = load_topology(path)
    assert [c.value for c in topo.bgp.communities] == ["10:20"]
    assert topo.bgp.prefix_advertisements[0].communities == ["standard", "5663:12"]


def test_a_label_value_is_judged_as_written(tmp_path: Path) -> None:
    """A colon is not allowed in a label value: the problem quotes the text, not 620."""
    path = tmp_path / "topo.yaml"
    path.write_text(
        "name: lab\n"
        "subnets:\n"
        "  rack1: {ipv4: 10.0.1.0/24}\n"
        "nodes:\n"
        "  node1: {subnet: rack1, labels: {port: 10:20}}\n"
        "pools:\n"
        "  pool: {cidr: 192.168.0.0/16}\n"
    )
    with pytest.raises(ConfigError) as err:
        load_topology(path)
    [problem] = err.value.problems
    assert problem.location == "nodes.node1.labels.port"
    assert "'10:20' is not a Kubernetes label value" in problem.message
