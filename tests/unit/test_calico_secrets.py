"""BGP passwords of a Calico bundle: a problem with a password names the Secret that holds it.

A bundle's BGPPeer or BGPConfiguration only names a Secret (`secretKeyRef`); the password itself
is a data (or stringData) key of a v1 Secret elsewhere in the bundle. When the password cannot
be a TCP MD5 key (over 80 bytes), the fix is in the Secret, so the problem must point there
(document and line), and say which field names it. A Secret the bundle does not hold is a
located problem.
"""

from __future__ import annotations

import pytest

from meshemu.errors import ConfigError, Problem
from meshemu.model.load import load_topology_text
from meshemu.model.topology import Topology

NODES = """\
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: worker-a}
spec:
  bgp: {ipv4Address: 10.40.1.11/24}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: worker-b}
spec:
  bgp: {ipv4Address: 10.40.1.12/24}
"""

PEER = """\
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: to-tor}
spec:
  peerIP: 10.40.1.1
  asNumber: 65001
  password: {secretKeyRef: {name: bgp-secrets, key: tor}}
"""

MESH = """\
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec:
  nodeMeshPassword: {secretKeyRef: {name: bgp-secrets, key: mesh}}
"""

LONG = "x" * 81  # one byte over Linux's TCP_MD5SIG_MAXKEYLEN


def secret(field: str, **values: str) -> str:
    pairs = "\n".join(f"  {key}: {value}" for key, value in values.items())
    return (
        "apiVersion: v1\nkind: Secret\nmetadata: {name: bgp-secrets, namespace: calico-system}\n"
        f"{field}:\n{pairs}\n"
    )


def problems(text: str) -> list[Problem]:
    with pytest.raises(ConfigError) as info:
        load_topology_text(text, "in.yaml", "lab")
    return info.value.problems


def accepted(text: str) -> Topology:
    return load_topology_text(text, "in.yaml", "lab")


def line_of(text: str, needle: str) -> int:
    """The 1-based line a document starting with `needle` begins on."""
    return text.splitlines().index(needle) + 1


def only_password_problem(found: list[Problem]) -> Problem:
    matching = [p for p in found if "bytes long" in p.message]
    assert len(matching) == 1, "\n".join(map(str, found))
    return matching[0]


@pytest.mark.parametrize(
    ("referrer", "key", "named_by"),
    [
        pytest.param(PEER, "tor", "BGPPeer/to-tor.spec.password", id="bgppeer"),
        pytest.param(
            MESH, "mesh", "BGPConfiguration/default.spec.nodeMeshPassword", id="node-mesh"
        ),
    ],
)
def test_a_long_password_names_the_secret_key(referrer: str, key: str, named_by: str) -> None:
    text = "---\n".join([NODES, referrer, secret("stringData", **{key: LONG})])
    problem = only_password_problem(problems(text))
    line = line_of(text, "apiVersion: v1")
    assert problem.location == (
        f"Secret/bgp-secrets.stringData.{key} (document 4, line {line}; named by {named_by})"
    )
    assert LONG not in str(problem)  # never repeat a secret


def test_a_long_base64_peer_password_names_the_data_key() -> None:
    encoded = "eHh4" * 27  # base64 of 81 'x'
    text = "---\n".join([NODES, secret("data", tor=encoded), PEER])
    problem = only_password_problem(problems(text))
    line = line_of(text, "apiVersion: v1")
    assert problem.location.startswith(f"Secret/bgp-secrets.data.tor (document 3, line {line};")


def test_string_data_replaces_data_and_is_the_one_named() -> None:
    """Kubernetes merges stringData over data: the stringData key holds the password used."""
    text = "---\n".join(
        [NODES, PEER, secret("data", tor="c2VjcmV0") + f"stringData:\n  tor: {LONG}\n"]
    )
    problem = only_password_problem(problems(text))
    assert problem.location.startswith("Secret/bgp-secrets.stringData.tor (document 4, line ")


def test_other_peer_problems_still_name_the_bgppeer() -> None:
    """Only the password comes from the Secret: the rest of the peer stays where it is."""
    text = "---\n".join(
        [NODES, PEER.replace("asNumber: 65001", "asNumber: 0"), secret("stringData", tor="s3")]
    )
    assert any(p.location.startswith("BGPPeer/to-tor.spec.asNumber") for p in problems(text))


def test_a_good_secret_password_is_used() -> None:
    text = "---\n".join([NODES, PEER, MESH, secret("stringData", tor="s3", mesh="m3")])
    topo = accepted(text)
    assert topo.bgp.peers["to-tor"].password == "s3"
    assert topo.bgp.node_mesh_password == "m3"


@pytest.mark.parametrize("missing", ["peer", "mesh"])
def test_a_secret_the_bundle_lacks_is_a_located_problem(missing: str) -> None:
    """Once the lab made up a key for it; a real peer would not have that key (confd renders
    no password then and only warns), so the session would be emulated wrongly."""
    text = "---\n".join([NODES, PEER if missing == "peer" else MESH])
    found = problems(text)
    assert len(found) == 1
    where = "BGPPeer/to-tor.spec.password" if missing == "peer" else "nodeMeshPassword"
    assert where in found[0].location and found[0].location.endswith(".secretKeyRef")
    assert "bgp-secrets" in found[0].message and "not in the bundle" in found[0].message
    assert "kubectl get secret" in found[0].hint


def test_two_peers_sharing_a_long_secret_are_told_apart() -> None:
    other = PEER.replace("to-tor", "to-tor2").replace("10.40.1.1\n", "10.40.1.2\n")
    text = "---\n".join([NODES, PEER, other, secret("stringData", tor=LONG)])
    found = [p for p in problems(text) if "bytes long" in p.message]
    assert len(found) == 2
    assert all(p.location.startswith("Secret/bgp-secrets.stringData.tor (") for p in found)
    assert {p.location.rsplit("named by ", 1)[1] for p in found} == {
        "BGPPeer/to-tor.spec.password)",
        "BGPPeer/to-tor2.spec.password)",
    }


def test_an_empty_string_data_password_is_located_under_string_data() -> None:
    text = "---\n".join([NODES, PEER, secret("stringData", tor="''")])
    assert any(
        p.location == "Secret/bgp-secrets.stringData.tor" and "empty password" in p.message
        for p in problems(text)
    )
