"""Hostile inputs to the loaders: never a traceback, never a hang, never silent loss.

Each case feeds `meshemu.model.load.load_topology` (the one loader every command uses) a file
that someone could plausibly hand meshemu at 2 a.m.: a binary, a UTF-16 export from
PowerShell, a FIFO, YAML nested hundreds deep, an alias bomb, resources of the wrong shape,
duplicate keys and resources, addresses that cannot work, names ending in a newline. Bad input
must raise `ConfigError` whose problems are located and one line each; good input (CRLF line
endings, a BOM, a real `calicoctl`/`kubectl` export) must load. A few cases also run the real
CLI in a subprocess: exit 2, a located message, no traceback, and no hang.
"""

from __future__ import annotations

import ast
import copy
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshemu.errors import ConfigError, Problem
from meshemu.model.load import MAX_INPUT_BYTES, MAX_YAML_DEPTH, load_topology
from meshemu.model.plan import build_plan
from meshemu.model.topology import Topology

ROOT = Path(__file__).resolve().parents[2]

BASE: dict[str, Any] = {
    "name": "hostile",
    "subnets": {
        "rack1": {"ipv4": "10.0.1.0/24", "ipv6": "fd00:1::/64"},
        "rack2": {"ipv4": "10.0.2.0/24"},
    },
    "routers": {"spine": {"subnets": ["rack1", "rack2"]}},
    "nodes": {"node1": {"subnet": "rack1"}, "node2": {"subnet": "rack2"}},
    "pools": {"v4": {"cidr": "192.168.0.0/16"}, "v6": {"cidr": "fd80::/64"}},
}

NODE_A = """\
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: worker-a}
spec:
  bgp: {ipv4Address: 10.40.1.11/24, ipv6Address: 'fd00:40:1::11/64'}
"""
NODE_B = """\
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: worker-b}
spec:
  bgp: {ipv4Address: 10.40.2.11/24}
"""


def native(**changes: Any) -> str:
    """BASE with dotted-path changes (`nodes.node1.pods=3`); None deletes."""
    data = copy.deepcopy(BASE)
    for path, value in changes.items():
        *parents, last = path.split("__")
        target = data
        for key in parents:
            target = target.setdefault(key, {})
        if value is None:
            target.pop(last, None)
        else:
            target[last] = value
    return yaml.safe_dump(data, sort_keys=False)


def bundle(*docs: str) -> str:
    return "---\n".join([NODE_A, NODE_B, *docs])


def write(tmp_path: Path, content: str | bytes, name: str = "in.yaml") -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_bytes(content.encode())
    return path


def problems_of(path: Path, **kwargs: Any) -> list[Problem]:
    with pytest.raises(ConfigError) as info:
        load_topology(path, **kwargs)
    return info.value.problems


def assert_problem(problems: list[Problem], *needles: str) -> Problem:
    """One problem mentions every needle (in its location, message or hint); all are one line."""
    for problem in problems:
        text = str(problem)
        assert "\n" not in text and "\r" not in text, f"a problem spans lines: {text!r}"
        assert problem.location, f"a problem without a location: {text}"
    for problem in problems:
        if all(needle in str(problem) for needle in needles):
            return problem
    raise AssertionError(f"no problem mentions {needles}:\n" + "\n".join(map(str, problems)))


def rejects(tmp_path: Path, content: str | bytes, *needles: str, **kwargs: Any) -> Problem:
    return assert_problem(problems_of(write(tmp_path, content), **kwargs), *needles)


def accepts(tmp_path: Path, content: str | bytes, **kwargs: Any) -> Topology:
    return load_topology(write(tmp_path, content), **kwargs)


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meshemu.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )


def test_base_inputs_are_valid(tmp_path: Path) -> None:
    """Every case below breaks one thing; the inputs it starts from are valid."""
    accepts(tmp_path, native())
    build_plan(accepts(tmp_path, bundle()))


# --- 1. the file itself -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "needles"),
    [
        pytest.param(bytes(range(256)) * 4, ("in.yaml:1:1", "NUL", "binary"), id="binary"),
        pytest.param(
            "name: x\n".encode("utf-16"), ("in.yaml", "UTF-16", "iconv"), id="utf16-with-bom"
        ),
        pytest.param(
            native().encode("utf-16-le"), ("in.yaml:1:2", "UTF-16"), id="utf16-without-bom"
        ),
        pytest.param("name: x\n".encode("utf-32"), ("in.yaml", "UTF-32"), id="utf32-with-bom"),
        pytest.param(
            "name: x\ndescription: caf\xe9\n".encode("latin-1"),
            ("in.yaml:2:17", "not UTF-8", "0xe9", "iconv"),
            id="latin-1",
        ),
        pytest.param(
            b"name: x\ndescription: a\x07b\n",
            ("in.yaml:2:15", "control character U+0007"),
            id="control-character",
        ),
        pytest.param(
            b"name: x\ndescription: a\xc2\x85\xc2\x9bb\n",
            ("in.yaml:2:16", "U+009B"),
            id="c1-control-character",
        ),
    ],
)
def test_not_utf8_text(tmp_path: Path, content: bytes, needles: tuple[str, ...]) -> None:
    rejects(tmp_path, content, *needles)


def test_utf8_bom_and_crlf_are_fine(tmp_path: Path) -> None:
    text = native().replace("\n", "\r\n")
    topo = accepts(tmp_path, b"\xef\xbb\xbf" + text.encode())
    assert sorted(topo.nodes) == ["node1", "node2"]


def test_huge_file_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "in.yaml"
    with path.open("wb") as stream:
        stream.truncate(MAX_INPUT_BYTES + 1)  # sparse: nothing is written
    started = time.monotonic()
    problem = assert_problem(problems_of(path), "in.yaml", "16 MiB", "right file")
    assert "17.0 MiB" in problem.message or "16.0 MiB" in problem.message
    assert time.monotonic() - started < 2


def test_directory(tmp_path: Path) -> None:
    assert_problem(problems_of(tmp_path), str(tmp_path), "is a directory")


def test_character_device() -> None:
    assert_problem(problems_of(Path("/dev/null")), "/dev/null", "is a device")


def test_missing_file(tmp_path: Path) -> None:
    assert_problem(
        problems_of(tmp_path / "nope.yaml"), "nope.yaml", "cannot read", "check the path"
    )


def test_symlink_loop(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").symlink_to(tmp_path / "b.yaml")
    (tmp_path / "b.yaml").symlink_to(tmp_path / "a.yaml")
    assert_problem(problems_of(tmp_path / "a.yaml"), "a.yaml", "cannot read", "back to itself")


def test_symlink_to_a_good_file_is_fine(tmp_path: Path) -> None:
    target = write(tmp_path, native(), "real.yaml")
    (tmp_path / "link.yaml").symlink_to(target)
    assert load_topology(tmp_path / "link.yaml").name == "hostile"


def test_path_with_nul_byte(tmp_path: Path) -> None:
    assert_problem(problems_of(tmp_path / "a\0b.yaml"), "not a valid path")


def test_fifo_is_refused_without_opening_it(tmp_path: Path) -> None:
    """Opening a FIFO for reading blocks until a writer comes: it must never be opened."""
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    started = time.monotonic()
    assert_problem(problems_of(fifo), "pipe.yaml", "named pipe (FIFO)")
    assert time.monotonic() - started < 2


def test_fifo_through_the_cli_exits_2_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    result = run_cli("validate", str(fifo), timeout=30)
    assert result.returncode == 2, result.stderr
    assert "pipe.yaml: is a named pipe (FIFO), not a file" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        pytest.param(b"\x00\x01\x02garbage", "binary", id="binary"),
        pytest.param("name: é\n".encode("utf-16"), "UTF-16", id="utf16"),
        pytest.param("name: caf\xe9\n".encode("latin-1"), "not UTF-8", id="latin-1"),
        pytest.param(("[" * 300 + "]" * 300).encode(), "nested more than 64", id="deep"),
        pytest.param(b"a: &a [*a]\n", "cycle", id="alias-cycle"),
    ],
)
def test_through_the_cli(tmp_path: Path, content: bytes, needle: str) -> None:
    path = write(tmp_path, content)
    result = run_cli("validate", str(path))
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert f"{path}" in result.stderr and needle in result.stderr, result.stderr


# --- 2. YAML that grows without bound ---------------------------------------------------------


def nested_lists(depth: int) -> str:
    return "name: x\ndescription: " + "[" * depth + "1" + "]" * depth + "\n"


def nested_mappings(depth: int) -> str:
    return "name: x\ndescription:\n" + "".join(f"{'  ' * (i + 1)}k{i}:\n" for i in range(depth))


@pytest.mark.parametrize(
    ("shape", "depth"),
    [
        (shape, depth)
        for shape in (nested_lists, nested_mappings)
        for depth in (MAX_YAML_DEPTH + 1, 300, 1500 if shape is nested_mappings else 5000)
    ],
)
def test_deep_nesting(tmp_path: Path, shape: Any, depth: int) -> None:
    rejects(tmp_path, shape(depth), "in.yaml:", "nested more than 64 levels deep")


def test_nesting_within_the_bound_reaches_the_schema(tmp_path: Path) -> None:
    problem = rejects(tmp_path, nested_lists(MAX_YAML_DEPTH - 2), "description")
    assert "nested" not in problem.message


BOMB = """\
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""

MERGE_BOMB = "".join(
    [
        "a0: &a0 {k0: 1, k1: 2, k2: 3, k3: 4, k4: 5, k5: 6, k6: 7, k7: 8}\n",
        *(
            f"a{i}: &a{i} {{<<: [{', '.join([f'*a{i - 1}'] * 9)}], x{i}: 1}}\n"
            for i in range(1, 10)
        ),
    ]
)


@pytest.mark.parametrize("text", [BOMB, MERGE_BOMB], ids=["billion-laughs", "merge-keys"])
def test_alias_bomb_is_bounded(tmp_path: Path, text: str) -> None:
    started = time.monotonic()
    rejects(tmp_path, text, "in.yaml:", "expands to more than")
    assert time.monotonic() - started < 5


def test_aliases_and_merge_keys_within_bounds_are_fine(tmp_path: Path) -> None:
    text = """\
name: anchors
subnets:
  rack1: {ipv4: 10.0.1.0/24}
nodes:
  node1: &defaults {subnet: rack1, pods: 1}
  node2: {<<: *defaults, pods: 3}
  node3: *defaults
"""
    topo = accepts(tmp_path, text)
    assert [node.pods for node in topo.nodes.values()] == [1, 3, 1]


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        pytest.param("a: &a [1, *a]\n", ("in.yaml:1:", "cycle"), id="recursive-alias"),
        pytest.param("a: *nowhere\n", ("in.yaml:1:", "no anchor"), id="undefined-alias"),
        pytest.param(
            "name: x\ndescription: " + "9" * 5000 + "\n",
            ("in.yaml:2:", "cannot read"),
            id="5000-digit-integer",
        ),
        pytest.param('name: !!int ""\n', ("in.yaml:1:", "cannot read"), id="empty-int"),
        pytest.param("name: !!float x\n", ("in.yaml:1:", "cannot read"), id="bad-float"),
        pytest.param(
            "name: !!python/object:os.system {}\n", ("in.yaml:1:", "python/object"), id="py-tag"
        ),
        pytest.param("? [a, b]\n: c\n", ("in.yaml:1:", "list or mapping"), id="list-key"),
        pytest.param("name: x\n\tnodes: {}\n", ("in.yaml:2:", "malformed YAML"), id="tab-indent"),
    ],
)
def test_yaml_that_cannot_be_read(tmp_path: Path, text: str, needles: tuple[str, ...]) -> None:
    rejects(tmp_path, text, *needles)


# --- 3. selectors ------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [65, 300, 3000])
def test_deeply_parenthesised_selector(tmp_path: Path, depth: int) -> None:
    selector = "(" * depth + "has(a)" + ")" * depth
    rejects(
        tmp_path,
        native(pools__v4__nodeSelector=selector),
        "pools.v4.nodeSelector",
        "nested more than 64 deep",
    )


def test_deeply_parenthesised_selector_in_a_bundle(tmp_path: Path) -> None:
    selector = "!(" * 400 + "all()" + ")" * 400
    peer = (
        "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: p}\n"
        f"spec: {{nodeSelector: '{selector}', peerIP: 10.40.9.9, asNumber: 65000}}\n"
    )
    rejects(tmp_path, bundle(peer), "BGPPeer/p.spec.nodeSelector", "nested more than 64")


def test_selector_nested_64_deep_is_fine(tmp_path: Path) -> None:
    selector = "(" * 64 + "all()" + ")" * 64
    accepts(tmp_path, native(pools__v4__nodeSelector=selector))


# --- 4. resource documents of the wrong shape -------------------------------------------------

POOL = "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p4}\n"


@pytest.mark.parametrize(
    ("doc", "needles"),
    [
        pytest.param(
            "apiVersion: projectcalico.org/v3\nkind: [Node]\nmetadata: {name: x}\n",
            ("document 3.kind", "is a list, not text"),
            id="kind-list",
        ),
        pytest.param(
            "apiVersion: projectcalico.org/v3\nkind: {a: b}\n",
            ("document 3.kind", "is a mapping, not text"),
            id="kind-mapping",
        ),
        pytest.param(
            "apiVersion: projectcalico.org/v3\nkind: 5\n",
            ("document 3.kind", "is a number, not text"),
            id="kind-number",
        ),
        pytest.param(
            "apiVersion: projectcalico.org/v3\nmetadata: {name: x}\n",
            ("document 3.kind", "is missing"),
            id="kind-missing",
        ),
        pytest.param(
            "apiVersion: [projectcalico.org/v3]\nkind: IPPool\n",
            ("document 3.apiVersion", "not text"),
            id="apiversion-list",
        ),
        pytest.param(
            "apiVersion: projectcalico.org/v3\nkind: IPPoolList\nitems: 5\n",
            ("document 3.items", "is a number, not a list"),
            id="items-number",
        ),
        pytest.param(
            "apiVersion: projectcalico.org/v3\nkind: IPPoolList\nitems: {a: b}\n",
            ("document 3.items", "is a mapping, not a list"),
            id="items-mapping",
        ),
        pytest.param(
            "apiVersion: projectcalico.org/v3\nkind: IPPoolList\nitems: [1, x]\n",
            ("document 3.items[0]", "not a mapping"),
            id="items-scalars",
        ),
        pytest.param(
            POOL.replace("metadata: {name: p4}", "metadata: [p4]") + "spec: {cidr: 10.9.0.0/16}\n",
            ("document 3.metadata", "is a list, not a mapping"),
            id="metadata-list",
        ),
        pytest.param(
            POOL + "spec: [cidr, 192.168.0.0/16]\n",
            ("document 3.spec", "is a list, not a mapping"),
            id="spec-list",
        ),
        pytest.param(
            POOL + "spec: 192.168.0.0/16\n",
            ("document 3.spec", "is text, not a mapping"),
            id="spec-text",
        ),
        pytest.param(
            "apiVersion: operator.tigera.io/v1\nkind: Installation\nmetadata: {name: default}\n"
            "spec: [calicoNetwork]\n",
            ("document 3.spec", "not a mapping"),
            id="installation-spec-list",
        ),
        pytest.param(
            "apiVersion: operator.tigera.io/v1\nkind: Installation\nmetadata: {name: default}\n"
            "spec: {calicoNetwork: [a]}\n",
            ("Installation/default.spec.calicoNetwork",),
            id="installation-network-list",
        ),
        pytest.param(
            "apiVersion: operator.tigera.io/v1\nkind: Installation\nmetadata: {name: default}\n"
            "spec: {calicoNetwork: {ipPools: {cidr: 10.9.0.0/16}}}\n",
            ("Installation/default.spec.calicoNetwork.ipPools",),
            id="installation-pools-mapping",
        ),
        pytest.param(
            "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: [a, b]\n",
            ("Secret/s.data", "mapping"),
            id="secret-data-list",
        ),
        pytest.param(
            "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: 5\n",
            ("Secret/s.stringData", "mapping"),
            id="secret-stringdata-number",
        ),
        pytest.param(
            "apiVersion: v1\nkind: Secret\nmetadata: [s]\ndata: {}\n",
            ("document 3.metadata", "mapping"),
            id="secret-metadata-list",
        ),
        pytest.param(
            "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {password: 5}\n",
            ("Secret/s.data.password", "string"),
            id="secret-value-number",
        ),
        pytest.param(
            "- apiVersion: projectcalico.org/v3\n  kind: IPPool\n",
            ("document 3", "is a list, not a mapping"),
            id="document-list",
        ),
        pytest.param(
            POOL.replace("{name: p4}", "{name: 'p4\\n'}") + "spec: {cidr: 10.9.0.0/16}\n",
            ("document 3.metadata.name", "not a Kubernetes object name"),
            id="name-with-newline",
        ),
    ],
)
def test_resource_of_the_wrong_shape(tmp_path: Path, doc: str, needles: tuple[str, ...]) -> None:
    rejects(tmp_path, bundle(doc), *needles)


def mesh_password_bundle(secret: str) -> str:
    return bundle(
        "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {name: default}\n"
        "spec: {nodeMeshPassword: {secretKeyRef: {name: bgp, key: password}}}\n",
        secret,
    )


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        pytest.param("'!!!!'", "not base64", id="not-base64"),
        pytest.param("'c2VjcmV0'", None, id="good"),
        pytest.param("'c2VjcmV0 ZXQ='", "not base64", id="space-inside"),
        pytest.param("'c2VjcmV'", "not base64", id="bad-padding"),
        pytest.param("'//79'", "not base64 of UTF-8", id="not-utf8"),
        pytest.param("''", "empty password", id="empty"),
    ],
)
def test_secret_data_must_decode(tmp_path: Path, value: str, needle: str | None) -> None:
    secret = f"apiVersion: v1\nkind: Secret\nmetadata: {{name: bgp}}\ndata: {{password: {value}}}\n"
    text = mesh_password_bundle(secret)
    if needle is None:
        assert accepts(tmp_path, text).bgp.node_mesh_password == "secret"
    else:
        rejects(tmp_path, text, "Secret/bgp.data.password", needle)


def test_secret_string_data(tmp_path: Path) -> None:
    secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: bgp}\nstringData: {password: s3}\n"
    assert accepts(tmp_path, mesh_password_bundle(secret)).bgp.node_mesh_password == "s3"


# --- 5. data silently lost ------------------------------------------------------------------


def test_duplicate_node_key_names_both_lines(tmp_path: Path) -> None:
    text = """\
name: dup
subnets:
  rack1: {ipv4: 10.0.1.0/24}
nodes:
  node1: {subnet: rack1}
  node2: {subnet: rack1}
  node1: {subnet: rack1, pods: 5}
"""
    problem = rejects(tmp_path, text, "in.yaml:7", "'node1'", "line 5", "line 7")
    assert "twice" in problem.message


def test_duplicate_pool_key(tmp_path: Path) -> None:
    text = native() + "pools:\n  other: {cidr: 192.169.0.0/16}\n"
    rejects(tmp_path, text, "'pools'", "twice")


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("a: {x: 1, x: 2}\n", id="flow"),
        pytest.param("a:\n  1: x\n  0x1: y\n", id="same-int-two-spellings"),
        pytest.param("a:\n  true: x\n  yes: y\n", id="same-bool-two-spellings"),
        pytest.param("- {x: 1}\n- {y: 1, y: 2}\n", id="inside-a-list"),
    ],
)
def test_duplicate_keys_anywhere(tmp_path: Path, text: str) -> None:
    rejects(tmp_path, text, "in.yaml:", "twice")


def test_merge_keys_may_be_overridden(tmp_path: Path) -> None:
    text = native(nodes=None) + (
        "nodes:\n  node1: &n {subnet: rack1, pods: 1}\n  node2: {<<: *n, subnet: rack2}\n"
    )
    topo = accepts(tmp_path, text)
    assert topo.nodes["node2"].subnet == "rack2"


def test_duplicate_key_in_a_bundle_document(tmp_path: Path) -> None:
    node = NODE_B.replace("worker-b", "worker-c").replace("10.40.2.11", "10.40.2.12")
    node += "metadata: {name: worker-d}\n"
    rejects(tmp_path, bundle(node), "'metadata'", "twice")


@pytest.mark.parametrize(
    ("kind", "spec"),
    [
        ("BGPConfiguration", "{asNumber: 65001}"),
        ("IPPool", "{cidr: 192.168.0.0/16}"),
        ("BGPPeer", "{peerIP: 10.40.9.9, asNumber: 65000}"),
    ],
)
def test_resource_defined_twice(tmp_path: Path, kind: str, spec: str) -> None:
    name = "default" if kind == "BGPConfiguration" else "twice"
    doc = (
        f"apiVersion: projectcalico.org/v3\nkind: {kind}\nmetadata: {{name: {name}}}\n"
        f"spec: {spec}\n"
    )
    other = doc.replace("65001", "65002").replace("192.168.0.0/16", "192.169.0.0/16")
    problem = rejects(
        tmp_path, bundle(doc, other), f"{kind}/{name}", "defined twice", "document 3", "document 4"
    )
    assert "(line " in problem.message


def test_node_defined_twice(tmp_path: Path) -> None:
    rejects(tmp_path, bundle(NODE_A), "Node/worker-a", "defined twice")


def test_node_defined_twice_inside_a_list(tmp_path: Path) -> None:
    items = "apiVersion: projectcalico.org/v3\nkind: NodeList\nitems:\n" + "".join(
        "- metadata: {name: worker-z}\n  spec: {bgp: {ipv4Address: 10.40.1.12/24}}\n"
        for _ in range(2)
    )
    rejects(tmp_path, bundle(items), "Node/worker-z", "document 3.items[0]", "document 3.items[1]")


def installation(*pools: str, name: str = "default") -> str:
    return (
        f"apiVersion: operator.tigera.io/v1\nkind: Installation\nmetadata: {{name: {name}}}\n"
        "spec:\n  calicoNetwork:\n    ipPools:\n" + "".join(f"    - {p}\n" for p in pools)
    )


def ippool(name: str, spec: str) -> str:
    return (
        f"apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {{name: {name}}}\n"
        f"spec: {spec}\n"
    )


def test_installation_pool_shadowed_by_an_ippool(tmp_path: Path) -> None:
    text = bundle(
        installation("{name: main, cidr: 192.168.0.0/16, encapsulation: VXLAN}"),
        ippool("main", "{cidr: 172.16.0.0/16, ipipMode: Always}"),
    )
    rejects(
        tmp_path,
        text,
        "Installation/default.spec.calicoNetwork.ipPools[0]",
        "IPPool main",
        "cidr",
        "ipipMode",
        "vxlanMode",
    )


def test_installation_pool_described_alike_by_its_ippool_is_one_pool(tmp_path: Path) -> None:
    """What an operator-installed cluster exports: the Installation and the IPPool it made."""
    text = bundle(
        installation("{cidr: 192.168.0.0/16}"),
        ippool(
            "default-ipv4-ippool",
            "{cidr: 192.168.0.0/16, blockSize: 26, ipipMode: Always, natOutgoing: true, "
            "nodeSelector: all()}",
        ),
    )
    topo = accepts(tmp_path, text)
    assert list(topo.pools) == ["default-ipv4-ippool"]


def test_unnamed_installation_pool_takes_the_name_of_the_ippool_with_its_cidr(
    tmp_path: Path,
) -> None:
    text = bundle(
        ippool("legacy", "{cidr: 192.168.0.0/16, ipipMode: Always, natOutgoing: true}"),
        installation("{cidr: 192.168.0.0/16, encapsulation: VXLAN}"),
    )
    rejects(tmp_path, text, "ipPools[0]", "IPPool legacy", "ipipMode")


def test_ipv6_installation_pool_without_encapsulation_is_kept(tmp_path: Path) -> None:
    """tigera/operator defaults an IPv6 pool to encapsulation None, natOutgoing Disabled."""
    topo = accepts(tmp_path, bundle(installation("{cidr: 'fd80:40::/64'}")))
    pool = topo.pools["default-ipv6-ippool"]
    assert (pool.cidr, pool.ipip_mode, pool.vxlan_mode, pool.nat_outgoing) == (
        "fd80:40::/64",
        "Never",
        "Never",
        False,
    )


def test_dual_stack_installation_defaults(tmp_path: Path) -> None:
    topo = accepts(
        tmp_path, bundle(installation("{cidr: 192.168.0.0/16}", "{cidr: 'fd80:40::/64'}"))
    )
    v4, v6 = topo.pools["default-ipv4-ippool"], topo.pools["default-ipv6-ippool"]
    assert (v4.ipip_mode, v4.nat_outgoing) == ("Always", True)
    assert (v6.ipip_mode, v6.vxlan_mode) == ("Never", "Never")


def test_several_unnamed_installation_pools_keep_their_own_names(tmp_path: Path) -> None:
    topo = accepts(
        tmp_path, bundle(installation("{cidr: 192.168.0.0/18}", "{cidr: 192.168.64.0/18}"))
    )
    assert sorted(topo.pools) == ["192.168.0.0-18", "192.168.64.0-18"]


def test_two_installation_pools_of_one_name(tmp_path: Path) -> None:
    text = bundle(
        installation("{name: p, cidr: 192.168.0.0/18}", "{name: p, cidr: 192.168.64.0/18}")
    )
    rejects(tmp_path, text, "ipPools[1]", "'p'", "ipPools[0]")


def test_two_installations(tmp_path: Path) -> None:
    text = bundle(installation("{cidr: 192.168.0.0/18}"), installation("{cidr: 10.9.0.0/16}"))
    rejects(tmp_path, text, "Installation/default", "defined twice")


# --- 6. accepted but wrong --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "needles"),
    [
        pytest.param(
            {"nodes__node1\n": {"subnet": "rack1"}}, ("nodes.'node1\\n'", "DNS label"), id="node"
        ),
        pytest.param(
            {"subnets__rack3\n": {"ipv4": "10.0.3.0/24"}},
            ("subnets.'rack3\\n'", "DNS label"),
            id="subnet",
        ),
        pytest.param(
            {"pools__v4b\n": {"cidr": "192.169.0.0/16"}}, ("pools.'v4b\\n'", "DNS"), id="pool"
        ),
        pytest.param(
            {"bgp__peers__p1\n": {"peerIP": "10.0.9.9", "asNumber": 65000}},
            ("bgp.peers.'p1\\n'", "DNS label"),
            id="peer",
        ),
        pytest.param(
            {"routers__r1\n": {"subnets": ["rack1"]}}, ("routers.'r1\\n'", "DNS"), id="router"
        ),
        pytest.param({"name": "lab\n"}, ("name", "not a DNS label"), id="lab"),
        pytest.param(
            {"nodes__node1__labels": {"zone\n": "a"}},
            ("nodes.node1.labels.'zone\\n'", "label key"),
            id="label-key",
        ),
        pytest.param(
            {"nodes__node1__labels": {"zone": "a\n"}},
            ("nodes.node1.labels.zone", "label value"),
            id="label-value",
        ),
    ],
)
def test_names_ending_in_a_newline(
    tmp_path: Path, changes: dict[str, Any], needles: tuple[str, ...]
) -> None:
    rejects(tmp_path, native(**changes), *needles)


def test_lab_name_override_ending_in_a_newline(tmp_path: Path) -> None:
    assert_problem(problems_of(write(tmp_path, native()), name="lab\n"), "name", "DNS label")
    assert_problem(problems_of(write(tmp_path, bundle()), name="lab\n"), "name", "DNS label")


@pytest.mark.parametrize(
    ("where", "prefix", "needle"),
    [
        ("subnets__rack2__ipv4", "224.0.1.0/24", "multicast"),
        ("subnets__rack2__ipv4", "127.0.0.0/24", "loopback"),
        ("subnets__rack2__ipv4", "0.0.0.0/24", "unspecified"),
        ("subnets__rack2__ipv4", "240.0.0.0/24", "reserved"),
        ("subnets__rack2__ipv4", "169.254.1.0/24", "link-local"),
        ("subnets__rack2__ipv6", "ff05::/64", "multicast"),
        ("subnets__rack2__ipv6", "fe80::/64", "link-local"),
        ("subnets__rack2__ipv6", "::/64", "unspecified"),
        ("pools__v4__cidr", "224.0.0.0/16", "multicast"),
        ("pools__v4__cidr", "127.0.0.0/16", "loopback"),
        ("pools__v4__cidr", "0.0.0.0/16", "unspecified"),
        ("pools__v4__cidr", "255.255.0.0/16", "reserved"),
        ("pools__v4__cidr", "169.254.0.0/16", "link-local"),
        ("pools__v6__cidr", "ff02::/64", "multicast"),
        ("pools__v6__cidr", "fe80::/64", "link-local"),
        ("pools__v6__cidr", "::ffff:0.0.0.0/104", "IPv4-mapped"),
    ],
)
def test_special_ranges(tmp_path: Path, where: str, prefix: str, needle: str) -> None:
    location = where.replace("__", ".")
    rejects(tmp_path, native(**{where: prefix}), location, needle, "private unicast")


@pytest.mark.parametrize(
    ("changes", "needles"),
    [
        pytest.param(
            {"nodes__node1__ipv6": "::ffff:10.0.1.10"},
            ("nodes.node1.ipv6", "IPv4-mapped", "10.0.1.10"),
            id="node",
        ),
        pytest.param(
            {"subnets__rack2__ipv6": "::ffff:10.0.2.0/120"},
            ("subnets.rack2.ipv6", "IPv4-mapped"),
            id="subnet",
        ),
    ],
)
def test_ipv4_mapped_addresses(
    tmp_path: Path, changes: dict[str, Any], needles: tuple[str, ...]
) -> None:
    rejects(tmp_path, native(**changes), *needles)


@pytest.mark.parametrize(
    ("peer_ip", "port"), [("::ffff:10.0.1.50", 179), ("[::ffff:10.0.1.50]:166", 166)]
)
def test_ipv4_mapped_peer_is_its_ipv4_address(tmp_path: Path, peer_ip: str, port: int) -> None:
    """Calico accepts it (Go's net.ParseIP) and keys the peer by its IPv4 form (net.IP's
    String), so confd renders an IPv4 session to 10.0.1.50."""
    topo = accepts(tmp_path, native(bgp__peers__p1={"peerIP": peer_ip, "asNumber": 65000}))
    sessions = [s for s in build_plan(topo).node("node1").sessions if s.source == "p1"]
    assert [(s.peer_ip, s.peer_port, s.family) for s in sessions] == [("10.0.1.50", port, 4)]


def test_ipv4_mapped_node_address_in_a_bundle(tmp_path: Path) -> None:
    node = NODE_B.replace("worker-b", "worker-c").replace(
        "{ipv4Address: 10.40.2.11/24}", "{ipv6Address: '::ffff:10.40.2.12/120'}"
    )
    rejects(tmp_path, bundle(node), "Node/worker-c.spec.bgp", "IPv4-mapped")


@pytest.mark.parametrize(
    ("peer_ip", "needle"),
    [
        ("fe80::1%eth0", "scope"),
        ("10.0.9.9:١٧٩", "not an IP address"),
        ("10.0.9.9:0", "outside 1-65535"),
        ("010.0.9.9", "not an IP address"),
    ],
)
def test_peer_addresses_calico_refuses(tmp_path: Path, peer_ip: str, needle: str) -> None:
    """What libcalico-go's validator (validateIPPort: Go's net.ParseIP, port 1-65535) refuses."""
    rejects(
        tmp_path,
        native(bgp__peers__p1={"peerIP": peer_ip, "asNumber": 65000}),
        "bgp.peers.p1.peerIP",
        needle,
    )


@pytest.mark.parametrize(
    ("peer_ip", "kind"),
    [
        ("224.0.0.5", "multicast"),
        ("127.0.0.1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("255.255.255.255", "broadcast"),
        ("240.0.0.1", "reserved"),
        ("169.254.1.1", "link-local"),
        ("ff02::1", "multicast"),
        ("ffee::10", "multicast"),
        ("[ffee::11]:180", "multicast"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
    ],
)
def test_special_peer_addresses_are_planned_as_calico_renders_them(
    tmp_path: Path, peer_ip: str, kind: str
) -> None:
    """Calico accepts any IP as a BGPPeer peerIP; such a peer is outside the lab (no subnet
    or node may be in these ranges), so its session is planned and stays down, with a note."""
    topo = accepts(tmp_path, native(bgp__peers__p1={"peerIP": peer_ip, "asNumber": 65000}))
    plan = build_plan(topo)
    address = peer_ip.strip("[").split("]")[0]
    sessions = [s for s in plan.node("node1").sessions if s.source == "p1"]
    assert [s.peer_ip for s in sessions] == [address]
    assert sessions[0].peer_node is None
    note = (
        f"node1: peer {address} is a {kind} address: planned as Calico renders it, "
        "cannot be reached in the lab"
    )
    assert note in plan.notes, plan.notes
    assert not any("external peer " + address in n for n in plan.notes), plan.notes


def test_special_peer_address_still_needs_an_as_number(tmp_path: Path) -> None:
    rejects(tmp_path, native(bgp__peers__p1={"peerIP": "ffee::10"}), "bgp.peers.p1.asNumber", "AS")


@pytest.mark.parametrize(
    ("changes", "needles"),
    [
        pytest.param({"subnets__rack2__ipv6": "fd00:2::%1/64"}, ("subnets.rack2.ipv6", "scope")),
        pytest.param({"nodes__node1__ipv6": "fd00:1::5%eth0"}, ("nodes.node1.ipv6", "scope")),
    ],
)
def test_scoped_addresses(
    tmp_path: Path, changes: dict[str, Any], needles: tuple[str, ...]
) -> None:
    rejects(tmp_path, native(**changes), *needles)


def test_router_listing_a_subnet_twice(tmp_path: Path) -> None:
    text = native(routers__spine__subnets=["rack1", "rack2", "rack1"])
    rejects(tmp_path, text, "routers.spine.subnets[2]", "again", "subnets[0]")


@pytest.mark.parametrize(
    ("changes", "needles"),
    [
        pytest.param(
            {"nodes__node2__families": ["ipv6"]},
            ("nodes.node2.families", "ipv6", "no ipv6 prefix", "no address at all"),
            id="only-ipv6-in-ipv4-subnet",
        ),
        pytest.param(
            {"nodes__node2__families": []},
            ("nodes.node2.families", "empty", "no address"),
            id="no-family",
        ),
        pytest.param(
            {"nodes__node2__families": ["ipv4", "ipv6"]},
            ("nodes.node2.families", "no ipv6 prefix"),
            id="asks-for-a-missing-family",
        ),
        pytest.param(
            {"subnets__rack2": {"ipv6": "fd00:2::/64"}, "nodes__node2__families": ["ipv4"]},
            ("nodes.node2.families", "no ipv4 prefix", "no address at all"),
            id="only-ipv4-in-ipv6-subnet",
        ),
    ],
)
def test_node_left_without_an_address(
    tmp_path: Path, changes: dict[str, Any], needles: tuple[str, ...]
) -> None:
    rejects(tmp_path, native(**changes), *needles)


def test_pods_zero_on_a_bundle_means_no_pods(tmp_path: Path) -> None:
    topo = accepts(tmp_path, bundle(), pods_per_node=0)
    assert {node.pods for node in topo.nodes.values()} == {0}
    plan = build_plan(topo)
    assert all(not node.pods for node in plan.nodes)


def test_pods_option_on_a_native_topology(tmp_path: Path) -> None:
    topo = accepts(tmp_path, native(nodes__node1__pods=5), pods_per_node=0)
    assert {node.pods for node in topo.nodes.values()} == {0}


@pytest.mark.parametrize(
    ("changes", "needles"),
    [
        pytest.param({"nodes__node1__pods": True}, ("nodes.node1.pods", "whole number")),
        pytest.param({"nodes__node1__pods": "3"}, ("nodes.node1.pods", "whole number")),
        pytest.param({"nodes__node1__pods": 2.0}, ("nodes.node1.pods", "whole number")),
        pytest.param({"nodes__node1__pods": -1}, ("nodes.node1.pods", "greater than")),
        pytest.param({"nodes__node1__pods": 10**30}, ("nodes.node1.pods", "less than")),
        pytest.param({"nodes__node1__pods": float("nan")}, ("nodes.node1.pods",)),
        pytest.param({"nodes__node1__pods": float("inf")}, ("nodes.node1.pods",)),
        pytest.param({"bgp__asNumber": True}, ("bgp.asNumber", "whole number")),
        pytest.param({"bgp__asNumber": 10**30}, ("bgp.asNumber", "4294967295")),
        pytest.param({"bgp__asNumber": -1}, ("bgp.asNumber",)),
        pytest.param({"bgp__listenPort": "179"}, ("bgp.listenPort", "whole number")),
        pytest.param({"bgp__holdTime": False}, ("bgp.holdTime", "whole number")),
        pytest.param(
            {"bgp__nodeToNodeMeshEnabled": 1}, ("bgp.nodeToNodeMeshEnabled", "true or false")
        ),
        pytest.param({"bgp__nodeToNodeMeshEnabled": "true"}, ("bgp.nodeToNodeMeshEnabled",)),
        pytest.param({"pools__v4__natOutgoing": 0}, ("pools.v4.natOutgoing", "true or false")),
        pytest.param({"pools__v4__blockSize": True}, ("pools.v4.blockSize", "whole number")),
        pytest.param({"pools__v4__blockSize": -1}, ("pools.v4.blockSize", "outside")),
        pytest.param({"pools__v4__blockSize": 10**30}, ("pools.v4.blockSize", "outside")),
        pytest.param({"subnets__rack2__ipv4": 167772160}, ("subnets.rack2.ipv4", "as text")),
        pytest.param({"nodes__node1__ipv4": 10}, ("nodes.node1.ipv4", "as text")),
        pytest.param({"nodes__node1__labels": {"zone": 1}}, ("nodes.node1.labels.zone", "string")),
        pytest.param({"nodes__node1__subnet": ["rack1"]}, ("nodes.node1.subnet", "string")),
        pytest.param({"description": b"bytes"}, ("description", "string")),
    ],
)
def test_wrong_typed_scalars(
    tmp_path: Path, changes: dict[str, Any], needles: tuple[str, ...]
) -> None:
    rejects(tmp_path, native(**changes), *needles)


def test_bundle_scalars_are_strict_too(tmp_path: Path) -> None:
    text = bundle(ippool("p", "{cidr: 192.168.0.0/16, natOutgoing: 1, blockSize: true}"))
    problems = problems_of(write(tmp_path, text))
    assert_problem(problems, "IPPool/p.spec.natOutgoing", "true or false")
    assert_problem(problems, "IPPool/p.spec.blockSize", "whole number")


# --- 7. valid inputs wrongly rejected ---------------------------------------------------------


def test_more_than_1024_nodes_in_a_slash_16(tmp_path: Path) -> None:
    data = {
        "name": "big",
        "subnets": {"s": {"ipv4": "10.0.0.0/16"}},
        "nodes": {f"n{i}": {"subnet": "s", "pods": 0} for i in range(1100)},
        "bgp": {"nodeToNodeMeshEnabled": False},
    }
    plan = build_plan(accepts(tmp_path, yaml.safe_dump(data)))
    addresses = {node.ipv4 for node in plan.nodes}
    assert len(plan.nodes) == 1100 and len(addresses) == 1100


def test_subnet_too_small_for_its_nodes_is_located(tmp_path: Path) -> None:
    data = copy.deepcopy(BASE)
    data["subnets"]["rack2"] = {"ipv4": "10.0.2.0/29"}
    data["nodes"] = {f"n{i}": {"subnet": "rack2"} for i in range(6)}
    rejects(tmp_path, yaml.safe_dump(data), "subnets.rack2.ipv4", "6 nodes and 1 routers", "room")


def test_peer_ip_of_a_node_with_an_automatic_address(tmp_path: Path) -> None:
    """node2 gets 10.0.2.2 (the router takes .1): a BGPPeer may name it without an AS."""
    text = native(bgp__peers__p1={"node": "node1", "peerIP": "10.0.2.2"})
    plan = build_plan(accepts(tmp_path, text))
    node2 = next(n for n in plan.nodes if n.name == "node2")
    assert node2.ipv4 == "10.0.2.2"
    node1 = next(n for n in plan.nodes if n.name == "node1")
    assert any(s.peer_ip == "10.0.2.2" and s.peer_node == "node2" for s in node1.sessions)


def test_external_peer_outside_the_node_subnets_still_needs_an_as(tmp_path: Path) -> None:
    rejects(tmp_path, native(bgp__peers__p1={"peerIP": "10.9.9.9"}), "bgp.peers.p1.asNumber")


def test_dotted_pool_names_are_kubernetes_names(tmp_path: Path) -> None:
    accepts(tmp_path, native(pools__v4=None, **{"pools__pool.v4": {"cidr": "192.168.0.0/16"}}))


# --- 8. the import cycle ------------------------------------------------------------------------


def test_calico_does_not_import_the_loader() -> None:
    """Not even inside a function: `load` imports `calico`, never the other way round."""
    tree = ast.parse((ROOT / "meshemu" / "model" / "calico.py").read_text())
    imported = {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    } | {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    assert "meshemu.model.load" not in imported


# --- and more, in the same spirit ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        pytest.param("", ("in.yaml", "is empty"), id="empty"),
        pytest.param("# only\n# comments\n", ("in.yaml", "is empty"), id="comments"),
        pytest.param("---\n", ("in.yaml", "is empty"), id="document-marker"),
        pytest.param("---\n...\n---\n", ("in.yaml", "is empty"), id="empty-documents"),
        pytest.param("   \n\n\t\n", ("in.yaml",), id="whitespace"),
        pytest.param("- a\n- b\n", ("in.yaml", "not a mapping"), id="top-level-list"),
        pytest.param("hello\n", ("in.yaml", "not a mapping"), id="top-level-scalar"),
        pytest.param("name: x\nnodes: null\n", ("nodes",), id="null-nodes"),
        pytest.param(
            native().replace("node1:\n    subnet: rack1", "node1:\n    subnet: rack1\n    pods:"),
            ("nodes.node1.pods", "whole number"),
            id="null-pods",
        ),
        pytest.param(
            native()
            .replace("node1: {subnet: rack1}", "node1: null")
            .replace("node1:\n    subnet: rack1", "node1: null"),
            ("nodes.node1",),
            id="null-node",
        ),
        pytest.param("1: x\nname: y\n", ("1",), id="integer-top-key"),
        pytest.param("null: x\nname: y\n", ("None",), id="null-top-key"),
        pytest.param(
            native().replace("node1:", "1:", 1),
            ("nodes", "string"),
            id="integer-node-name",
        ),
        pytest.param(
            native(**{"nodes__nöde": {"subnet": "rack1"}}),
            ("nodes.nöde", "DNS label"),
            id="unicode",
        ),
        pytest.param(native(name="läb"), ("name", "DNS label"), id="unicode-lab"),
        pytest.param(
            native(nodes__node1__labels={"zone": "ünï"}), ("label value",), id="unicode-label"
        ),
        pytest.param(native(name=""), ("name",), id="empty-lab-name"),
    ],
)
def test_odd_files(tmp_path: Path, text: str, needles: tuple[str, ...]) -> None:
    rejects(tmp_path, text, *needles)


def test_too_many_nodes(tmp_path: Path) -> None:
    data = copy.deepcopy(BASE)
    data["subnets"] = {"s": {"ipv4": "10.0.0.0/16"}}
    data.pop("routers")
    data["nodes"] = {f"n{i}": {"subnet": "s"} for i in range(5001)}
    rejects(tmp_path, yaml.safe_dump(data), "nodes", "5000")


def test_ten_thousand_documents(tmp_path: Path) -> None:
    docs = [NODE_A, NODE_B] + [
        f"apiVersion: projectcalico.org/v3\nkind: Nope\nmetadata: {{name: x{i}}}\n"
        for i in range(10_000)
    ]
    started = time.monotonic()
    problems = problems_of(write(tmp_path, "---\n".join(docs)))
    assert time.monotonic() - started < 30
    assert len(problems) <= 201
    assert_problem(problems, "document 3.kind", "unsupported kind 'Nope'")
    assert_problem(problems, "in.yaml", "more problems not shown")


def test_ten_thousand_native_documents(tmp_path: Path) -> None:
    rejects(tmp_path, "---\n".join([native()] * 10_000), "in.yaml", "several YAML documents")


def test_many_problems_are_capped_but_counted(tmp_path: Path) -> None:
    data = copy.deepcopy(BASE)
    data["nodes"] = {f"n{i}": {"subnet": "nowhere"} for i in range(500)}
    problems = problems_of(write(tmp_path, yaml.safe_dump(data)))
    assert len(problems) == 201
    assert_problem(problems, "in.yaml", "more problems not shown")


REAL_EXPORT = """\
apiVersion: projectcalico.org/v3
items:
- apiVersion: projectcalico.org/v3
  kind: Node
  metadata:
    annotations:
      projectcalico.org/kube-labels: '{"kubernetes.io/hostname":"worker-a"}'
    creationTimestamp: 2024-03-01T10:00:00Z
    labels:
      beta.kubernetes.io/arch: amd64
      kubernetes.io/hostname: worker-a
    name: worker-a
    resourceVersion: "123"
    uid: 0b6a4a4e-1111-2222-3333-444455556666
  spec:
    addresses:
    - address: 10.40.1.11/24
      type: CalicoNodeIP
    - address: 10.40.1.11
      type: InternalIP
    bgp:
      ipv4Address: 10.40.1.11/24
      ipv4IPIPTunnelAddr: 192.168.12.0
    orchRefs:
    - nodeName: worker-a
      orchestrator: k8s
  status:
    podCIDRs:
    - 192.168.1.0/24
- apiVersion: projectcalico.org/v3
  kind: Node
  metadata:
    creationTimestamp: "2024-03-01T10:00:00Z"
    name: worker-b
  spec:
    bgp:
      ipv4Address: 10.40.2.11/24
kind: NodeList
metadata:
  resourceVersion: "456"
---
apiVersion: v1
kind: List
items:
- apiVersion: projectcalico.org/v3
  kind: IPPool
  metadata:
    creationTimestamp: 2024-03-01T10:00:00Z
    name: default-ipv4-ippool
  spec:
    allowedUses: [Workload, Tunnel]
    blockSize: 26
    cidr: 192.168.0.0/16
    ipipMode: Always
    natOutgoing: true
    nodeSelector: all()
    vxlanMode: Never
- apiVersion: projectcalico.org/v3
  kind: BGPConfiguration
  metadata:
    name: default
  spec:
    asNumber: 64512
    nodeToNodeMeshEnabled: true
---
apiVersion: operator.tigera.io/v1
kind: Installation
metadata:
  creationTimestamp: 2024-03-01T09:59:00Z
  finalizers: [tigera.io/operator-cleanup]
  generation: 2
  name: default
  resourceVersion: "789"
spec:
  calicoNetwork:
    bgp: Enabled
    hostPorts: Enabled
    ipPools:
    - allowedUses: [Workload, Tunnel]
      blockSize: 26
      cidr: 192.168.0.0/16
      disableBGPExport: false
      encapsulation: IPIP
      name: default-ipv4-ippool
      natOutgoing: Enabled
      nodeSelector: all()
    linuxDataplane: Iptables
    multiInterfaceMode: None
    nodeAddressAutodetectionV4: {firstFound: true}
  cni: {ipam: {type: Calico}, type: Calico}
  controlPlaneReplicas: 2
  flexVolumePath: /usr/libexec/kubernetes/kubelet-plugins/volume/exec/
  kubeletVolumePluginPath: /var/lib/kubelet
  kubernetesProvider: ""
  nodeUpdateStrategy: {rollingUpdate: {maxUnavailable: 1}, type: RollingUpdate}
  nonPrivileged: Disabled
  variant: Calico
status:
  mtu: 1440
"""


def test_a_real_export_loads(tmp_path: Path) -> None:
    """calicoctl and kubectl output as it comes: timestamps unquoted, status, defaults."""
    topo = accepts(tmp_path, REAL_EXPORT.replace("\n", "\r\n"))
    assert sorted(topo.nodes) == ["worker-a", "worker-b"]
    assert list(topo.pools) == ["default-ipv4-ippool"]
    assert topo.pools["default-ipv4-ippool"].ipip_mode == "Always"
    build_plan(topo)


def test_bundle_subnets_with_two_ipv6_prefixes_for_one_ipv4_prefix(tmp_path: Path) -> None:
    node = NODE_A.replace("worker-a", "worker-c").replace(
        "10.40.1.11/24, ipv6Address: 'fd00:40:1::11/64'",
        "10.40.1.12/24, ipv6Address: 'fd00:40:9::12/64'",
    )
    rejects(tmp_path, bundle(node), "Node/worker-c.spec.bgp", "fd00:40:9::/64", "fd00:40:1::/64")


def test_bundle_nodes_sharing_one_prefix_share_a_subnet(tmp_path: Path) -> None:
    v6_only = NODE_B.replace("worker-b", "worker-c").replace(
        "{ipv4Address: 10.40.2.11/24}", "{ipv6Address: 'fd00:40:1::13/64'}"
    )
    topo = accepts(tmp_path, bundle(v6_only))
    assert topo.nodes["worker-c"].subnet == topo.nodes["worker-a"].subnet


def test_bundle_node_named_router(tmp_path: Path) -> None:
    text = bundle().replace("worker-a", "router")
    topo = accepts(tmp_path, text)
    assert "router" in topo.nodes and "router" not in topo.routers and len(topo.routers) == 1


def test_bundle_overlapping_node_prefixes_point_at_the_node(tmp_path: Path) -> None:
    node = NODE_B.replace("worker-b", "worker-c").replace("10.40.2.11/24", "10.40.2.12/25")
    rejects(tmp_path, bundle(node), "Node/", "overlaps subnet")


@pytest.mark.parametrize(
    "name",
    ["node\n1", "node\t1", "a\x00b", "x" * 70],
)
def test_every_problem_is_one_line_through_the_cli(tmp_path: Path, name: str) -> None:
    data = copy.deepcopy(BASE)
    data["nodes"][name] = {"subnet": name, "labels": {name: name}}
    data["subnets"][name] = {"ipv4": "10.0.9.0/24"}
    data["routers"]["spine"]["subnets"].append(name)
    path = write(tmp_path, yaml.safe_dump(data))
    result = run_cli("validate", str(path))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert "problem" in lines[0]
    for line in lines[1:]:
        assert line.startswith("  ") and ": " in line, line


def test_bundle_nodes_with_dotted_kubernetes_names(tmp_path: Path) -> None:
    """EKS-style node names are DNS subdomains: the lab calls them with '-' for '.'."""
    text = bundle(
        "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: to-tor}\n"
        "spec: {node: ip-10-40-1-11.ec2.internal, peerIP: 10.40.1.1, asNumber: 65001}\n",
        "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\n"
        "metadata: {name: node.ip-10-40-1-11.ec2.internal}\nspec: {listenPort: 1790}\n",
    ).replace("worker-a", "ip-10-40-1-11.ec2.internal")
    topo = accepts(tmp_path, text)
    assert "ip-10-40-1-11-ec2-internal" in topo.nodes
    assert topo.nodes["ip-10-40-1-11-ec2-internal"].listen_port == 1790
    assert topo.bgp.peers["to-tor"].node == "ip-10-40-1-11-ec2-internal"
    assert any("ip-10-40-1-11-ec2-internal" in why for _where, why in topo.unsupported)
    build_plan(topo)


def test_bundle_dotted_name_that_would_clash_is_reported(tmp_path: Path) -> None:
    text = bundle().replace("worker-a", "worker.b")
    rejects(tmp_path, text, "Node/worker.b", "not a DNS label")


def test_bundle_node_joining_two_segments_with_different_prefixes(tmp_path: Path) -> None:
    """worker-c shares worker-a's IPv4 prefix and worker-d's IPv6 prefix, which differ."""
    other_v6 = NODE_A.replace("worker-a", "worker-d").replace(
        "10.40.1.11/24, ipv6Address: 'fd00:40:1::11/64'",
        "10.40.3.11/24, ipv6Address: 'fd00:40:3::11/64'",
    )
    bridge = NODE_A.replace("worker-a", "worker-c").replace(
        "10.40.1.11/24, ipv6Address: 'fd00:40:1::11/64'",
        "10.40.1.12/24, ipv6Address: 'fd00:40:3::12/64'",
    )
    rejects(tmp_path, bundle(other_v6, bridge), "Node/worker-c.spec.bgp", "first Node/")


def test_bundle_node_joining_a_v4_and_a_v6_segment(tmp_path: Path) -> None:
    v6_only = NODE_B.replace("worker-b", "worker-c").replace(
        "{ipv4Address: 10.40.2.11/24}", "{ipv6Address: 'fd00:40:2::13/64'}"
    )
    dual = NODE_A.replace("worker-a", "worker-d").replace(
        "10.40.1.11/24, ipv6Address: 'fd00:40:1::11/64'",
        "10.40.2.12/24, ipv6Address: 'fd00:40:2::12/64'",
    )
    topo = accepts(tmp_path, bundle(v6_only, dual))
    subnet = topo.nodes["worker-b"].subnet
    assert topo.nodes["worker-c"].subnet == subnet == topo.nodes["worker-d"].subnet
    assert str(topo.subnets[subnet].ipv6) == "fd00:40:2::/64"


def test_five_thousand_nodes_each_in_its_own_subnet_load_quickly(tmp_path: Path) -> None:
    docs = [
        f"apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {{name: w{i}}}\n"
        f"spec: {{bgp: {{ipv4Address: 10.{i // 250}.{i % 250}.5/24, "
        f"ipv6Address: 'fd00:{i:x}::5/64'}}}}\n"
        for i in range(5000)
    ]
    started = time.monotonic()
    topo = accepts(tmp_path, "---\n".join(docs), pods_per_node=0)
    assert len(topo.subnets) == 5000
    assert time.monotonic() - started < 15


@pytest.mark.parametrize(
    ("rack1", "rack2", "needles"),
    [
        ("10.0.1.0/24", "10.0.1.0/24", ("subnets.rack2.ipv4", "overlaps subnet 10.0.1.0/24")),
        ("10.0.1.0/25", "10.0.1.0/24", ("subnets.rack1.ipv4", "at subnets.rack2.ipv4")),
        ("10.0.0.0/16", "10.0.200.0/24", ("subnets.rack2.ipv4", "at subnets.rack1.ipv4")),
    ],
)
def test_overlapping_subnets_in_any_order(
    tmp_path: Path, rack1: str, rack2: str, needles: tuple[str, ...]
) -> None:
    text = native(subnets__rack1={"ipv4": rack1}, subnets__rack2={"ipv4": rack2})
    rejects(tmp_path, text, *needles)
