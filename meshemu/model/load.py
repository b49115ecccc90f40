"""Input file -> validated `Topology`, with every problem collected and located.

Owns reading an input file (native topology or Calico bundle) safely, parsing its YAML within
bounds, turning YAML and pydantic errors into `Problem`s with a location, running
`model.rules`, and mapping locations of a converted bundle back into the bundle. Raises
`ConfigError` with all problems at once; never a traceback, never a hang, never silent loss.

Bounds (each violation is a located problem with a hint):
- the file: a regular file (checked with `stat` before it is opened, so a FIFO is never opened),
  at most `MAX_INPUT_BYTES`, UTF-8 text without NUL or control characters;
- the YAML: nested at most `MAX_YAML_DEPTH` deep and at most `MAX_YAML_NODES` values once
  aliases are expanded (checked on the event stream, before anything is built, so neither deep
  nesting nor an alias bomb costs more than one pass);
- no key twice in one mapping (YAML would silently keep the later value); timestamps and
  YAML 1.1 base-60 numbers (`5663:12`) stay text, as Kubernetes reads them.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    DocumentStartEvent,
    NodeEvent,
    ScalarEvent,
)
from yaml.nodes import MappingNode, Node

from meshemu.errors import ConfigError, Problem
from meshemu.model.calico import DEFAULT_PODS_PER_NODE, convert_bundle, looks_like_bundle
from meshemu.model.rules import check_topology
from meshemu.model.services import check_pods, check_services
from meshemu.model.topology import LAB_NAME_MAX, Topology, problems_from_validation

__all__ = [
    "MAX_INPUT_BYTES",
    "MAX_YAML_DEPTH",
    "MAX_YAML_NODES",
    "decode_input",
    "lab_name_from_path",
    "load_topology",
    "load_topology_text",
    "parse_yaml",
    "parse_yaml_documents",
    "problems_from_validation",
    "read_input",
]

# A calicoctl export of a 5,000-node cluster is about 3 MiB (1.5 s to load); 16 MiB bounds
# time (under 10 s) and memory while leaving room for comments, annotations and status fields.
MAX_INPUT_BYTES = 16 * 1024 * 1024
# Topologies nest 5 levels, Calico resources about 8; Python's recursion limit is 1,000 frames.
MAX_YAML_DEPTH = 64
# Values (scalars and collections) after expanding aliases: more than a 16 MiB file can spell
# out, far less than an alias bomb ("billion laughs") expands to.
MAX_YAML_NODES = 2_000_000
# After this many problems the rest are counted, not listed: 10,000 bad documents should not
# bury the first mistake.
MAX_PROBLEMS_SHOWN = 200

_UTF8_HINT = "save the file as UTF-8 (for example: iconv -f LATIN1 -t UTF-8 in.yaml > out.yaml)"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_DEEP_HINT = (
    "a topology nests about 5 levels and a Calico resource about 8: check for runaway "
    "brackets or indentation"
)
# Characters YAML 1.1 does not allow in a stream (its `c-printable` set, inverted); the parser
# would reject them too, but without saying where in terms of lines.
_NOT_PRINTABLE = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)


# --------------------------------------------------------------------------------------------
# Reading the file.


def _file_kind(mode: int) -> str | None:
    """What a non-regular file is, in words; None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _unreadable(source: str, err: OSError) -> ConfigError:
    reason = err.strerror or str(err)
    hint = ""
    if err.errno == errno.ELOOP:
        hint = "a symbolic link on the way points, through others, back to itself"
    elif isinstance(err, FileNotFoundError):
        hint = "check the path (relative paths start from the current directory)"
    elif isinstance(err, PermissionError):
        hint = "make the file readable for this user"
    return ConfigError([Problem(source, f"cannot read: {reason}", hint)])


def _too_big(source: str, size: int, limit: int = MAX_INPUT_BYTES) -> ConfigError:
    return ConfigError(
        [
            Problem(
                source,
                f"is {size / 2**20:.1f} MiB; meshemu reads at most {limit // 2**20} MiB here",
                "a topology or a calicoctl export is far smaller: check that this is the right "
                "file, or export only nodes, ippools, bgpconfig and bgppeers",
            )
        ]
    )


def _not_a_file(source: str, kind: str) -> ConfigError:
    return ConfigError([Problem(source, f"is {kind}, not a file", "give the path of a YAML file")])


def read_input(path: Path, limit: int = MAX_INPUT_BYTES) -> str:
    """The text of an input file, or ConfigError: never blocks, never reads without bound.

    The type is checked with `stat` before opening (opening a FIFO would block until a writer
    comes), and again on the opened descriptor in case the path changed in between.
    """
    source = str(path)
    try:
        info = os.stat(path)
    except OSError as err:
        raise _unreadable(source, err) from None
    except ValueError:  # an embedded NUL in the path
        raise ConfigError([Problem(repr(source), "is not a valid path", "")]) from None
    kind = _file_kind(info.st_mode)
    if kind is not None:
        raise _not_a_file(source, kind)
    if info.st_size > limit:
        raise _too_big(source, info.st_size, limit)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        raise _unreadable(source, err) from None
    try:
        kind = _file_kind(os.fstat(fd).st_mode)
        if kind is not None:
            raise _not_a_file(source, kind)
        with os.fdopen(fd, "rb", closefd=False) as stream:
            data = stream.read(limit + 1)
    except OSError as err:
        raise _unreadable(source, err) from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise _too_big(source, len(data), limit)
    return decode_input(data, source)


def _line_col(data: bytes | str, offset: int) -> tuple[int, int]:
    """1-based line and column of `offset` in `data`."""
    before = data[:offset]
    newline = b"\n" if isinstance(before, bytes) else "\n"
    line = before.count(newline) + 1  # type: ignore[arg-type]
    column = offset - (before.rfind(newline) + 1) + 1  # type: ignore[arg-type]
    return line, column


def decode_input(data: bytes, source: str) -> str:
    """UTF-8 text (an initial byte-order mark is allowed), or a located ConfigError."""
    for bom, encoding in (
        (b"\xff\xfe\x00\x00", "UTF-32"),
        (b"\x00\x00\xfe\xff", "UTF-32"),
        (b"\xff\xfe", "UTF-16"),
        (b"\xfe\xff", "UTF-16"),
    ):
        if data.startswith(bom):
            raise ConfigError(
                [
                    Problem(
                        source,
                        f"is {encoding} text; meshemu reads UTF-8",
                        f"convert it: iconv -f {encoding} -t UTF-8 in.yaml > out.yaml "
                        "(PowerShell's `>` writes UTF-16: use `| Out-File -Encoding utf8`)",
                    )
                ]
            )
    nul = data.find(b"\x00")
    if nul >= 0:
        line, column = _line_col(data, nul)
        looks_utf16 = data[1:200:2].count(0) > 50 or data[0:200:2].count(0) > 50
        raise ConfigError(
            [
                Problem(
                    f"{source}:{line}:{column}",
                    "holds a NUL byte: "
                    + ("it looks like UTF-16 text" if looks_utf16 else "it is binary, not YAML"),
                    "convert it to UTF-8" if looks_utf16 else "give the path of a YAML file",
                )
            ]
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line, column = _line_col(data, err.start)
        raise ConfigError(
            [
                Problem(
                    f"{source}:{line}:{column}",
                    f"is not UTF-8: byte 0x{data[err.start]:02x} cannot start or continue a "
                    "UTF-8 character (Latin-1 or another legacy encoding?)",
                    _UTF8_HINT,
                )
            ]
        ) from None
    bad = _NOT_PRINTABLE.search(text)
    if bad is not None:
        line, column = _line_col(text, bad.start())
        raise ConfigError(
            [
                Problem(
                    f"{source}:{line}:{column}",
                    f"holds the control character U+{ord(bad.group()):04X}, which YAML does "
                    "not allow",
                    "remove it (it is invisible in most editors: try `cat -A`)",
                )
            ]
        )
    return text


# --------------------------------------------------------------------------------------------
# Parsing YAML within bounds.

_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _DuplicateKey(ConstructorError):
    def __init__(self, key: object, first: Node, again: Node) -> None:
        super().__init__(None, None, f"duplicate key {key!r}", again.start_mark)
        self.key = key
        self.first_line = first.start_mark.line + 1
        self.again_line = again.start_mark.line + 1


class _Loader(_BaseLoader):  # type: ignore[misc]
    """Safe loading that refuses duplicate keys and reports every failure as a YAML error."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        # Each mapping's own keys, recorded before a merge (`<<`) rewrites its key list.
        self._own_keys: dict[int, tuple[Node, set[int]]] = {}

    def flatten_mapping(self, node: MappingNode) -> None:
        if id(node) not in self._own_keys:
            own = {id(k) for k, _ in node.value if k.tag != _MERGE_TAG}
            self._own_keys[id(node)] = (node, own)
        super().flatten_mapping(node)

    def construct_mapping(self, node: Node, deep: bool = False) -> dict[Any, Any]:
        if not isinstance(node, MappingNode):
            raise ConstructorError(
                None, None, f"expected a mapping, found {type(node).__name__}", node.start_mark
            )
        self.flatten_mapping(node)
        own = self._own_keys[id(node)][1]
        mapping: dict[Any, Any] = {}
        first: dict[Any, Node] = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                raise ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    "found a key that is a list or mapping",
                    key_node.start_mark,
                )
            if id(key_node) in own:
                # Keys merged in with `<<` may be overridden; a key written twice may not.
                if key in first:
                    raise _DuplicateKey(key, first[key], key_node)
                first[key] = key_node
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping

    def construct_document(self, node: Node) -> Any:
        try:
            return super().construct_document(node)
        finally:
            # Holding every document's nodes would make the garbage collector rescan them all.
            self._own_keys.clear()

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except (ValueError, IndexError, AttributeError, TypeError, OverflowError) as err:
            # PyYAML's scalar constructors fail with plain exceptions on odd input such as
            # `!!int ''`, a 5,000-digit integer or `!!float x`.
            raise ConstructorError(
                None,
                None,
                f"cannot read the {node.tag} value {node.value!r:.40}: {err}",
                node.start_mark,
            ) from None


# Kubernetes timestamps are strings; YAML 1.1 would make them datetimes (and fail on 2024-13-45).
_Loader.add_constructor("tag:yaml.org,2002:timestamp", SafeConstructor.construct_yaml_str)

_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")


def _without_base60(resolvers: dict[Any, list[tuple[str, re.Pattern[str]]]]) -> dict[Any, Any]:
    """The implicit resolvers with YAML 1.1's base-60 numbers (`5663:12`, `1:20.5`) taken out.

    Kubernetes reads YAML with sigs.k8s.io/yaml (go-yaml), which has no base-60 numbers: the BGP
    community `5663:12` that confd's own test input writes unquoted
    (confd/tests/mock_data/calicoctl/mesh/communities/input.yaml) is text there, where PyYAML
    would make it the integer 339792. A colon appears in no other int or float form, so an int
    or float resolver that refuses any colon leaves exactly the base-60 forms as plain text
    (an explicit `!!int 10:20` still reads as 620).
    """
    return {
        first: [
            (tag, re.compile(r"(?!.*:)" + regexp.pattern, regexp.flags))
            if tag in _NUMBER_TAGS
            else (tag, regexp)
            for tag, regexp in entries
        ]
        for first, entries in resolvers.items()
    }


# A copy for this loader only: PyYAML's own loaders keep theirs.
_Loader.yaml_implicit_resolvers = _without_base60(_BaseLoader.yaml_implicit_resolvers)


def _at(source: str, mark: Any) -> str:
    return f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source


def _check_shape(text: str, source: str) -> list[int]:
    """Depth and alias expansion, on the event stream, before any node is built.

    Returns the line each document's content starts on (empty documents included).
    """
    depth = 0
    count = 0
    starts: list[tuple[int, str | None]] = []
    anchors: dict[str, int] = {}
    roots: list[int] = []
    for event in yaml.parse(text, Loader=_BaseLoader):
        if isinstance(event, DocumentStartEvent):
            anchors = {}
            roots.append(-1)
        elif roots and roots[-1] < 0 and isinstance(event, NodeEvent):
            roots[-1] = event.start_mark.line + 1 if event.start_mark else 1
        if isinstance(event, CollectionStartEvent):
            count += 1
            depth += 1
            if depth > MAX_YAML_DEPTH:
                raise ConfigError(
                    [
                        Problem(
                            _at(source, event.start_mark),
                            f"is nested more than {MAX_YAML_DEPTH} levels deep",
                            _DEEP_HINT,
                        )
                    ]
                )
            starts.append((count, event.anchor))
        elif isinstance(event, CollectionEndEvent):
            start, anchor = starts.pop()
            depth -= 1
            if anchor is not None:
                anchors[anchor] = count - start + 1
        elif isinstance(event, ScalarEvent):
            count += 1
            if event.anchor is not None:
                anchors[event.anchor] = 1
        elif isinstance(event, AliasEvent):
            size = anchors.get(event.anchor or "")
            if size is None:
                inside = any(anchor == event.anchor for _, anchor in starts)
                raise ConfigError(
                    [
                        Problem(
                            _at(source, event.start_mark),
                            f"alias *{event.anchor} "
                            + (
                                "refers to a value that contains it (a cycle)"
                                if inside
                                else "refers to no anchor defined before it"
                            ),
                            "define &name before using *name, outside the value itself",
                        )
                    ]
                )
            count += size
        if count > MAX_YAML_NODES:
            raise ConfigError(
                [
                    Problem(
                        _at(source, event.start_mark),
                        f"expands to more than {MAX_YAML_NODES:,} values "
                        "(YAML aliases multiply what they refer to)",
                        "write the values out, or use fewer nested aliases",
                    )
                ]
            )
    return roots


def _yaml_problem(err: yaml.YAMLError, text: str, source: str) -> Problem:
    if isinstance(err, _DuplicateKey):
        return Problem(
            f"{source}:{err.again_line}",
            f"key {err.key!r} appears twice in one mapping: at line {err.first_line} and "
            f"line {err.again_line}; YAML would silently keep only the later one",
            "give each entry its own name, or merge the two",
        )
    mark = getattr(err, "problem_mark", None)
    where = _at(source, mark)
    if "maximum nesting depth" in str(getattr(err, "problem", "")):
        # libyaml scans flow brackets ahead of the events and stops at 1,000 itself.
        return Problem(where, f"is nested more than {MAX_YAML_DEPTH} levels deep", _DEEP_HINT)
    position = getattr(err, "position", None)
    if mark is None and isinstance(position, int):
        line, column = _line_col(text, min(position, len(text)))
        where = f"{source}:{line}:{column}"
    problem = getattr(err, "problem", None) or getattr(err, "reason", None) or str(err)
    return Problem(where, f"malformed YAML: {problem}", "check indentation and quoting")


def parse_yaml_documents(text: str, source: str) -> list[tuple[Any, int]]:
    """Each non-empty YAML document with the line it starts on; ConfigError on bad YAML."""
    try:
        roots = _check_shape(text, source)
        loader = _Loader(text)
        documents: list[tuple[Any, int]] = []
        try:
            index = 0
            while loader.check_data():
                data = loader.get_data()
                if data is not None:
                    documents.append((data, roots[index] if index < len(roots) else 1))
                index += 1
        finally:
            loader.dispose()
    except yaml.YAMLError as err:
        raise ConfigError([_yaml_problem(err, text, source)]) from None
    except (ValueError, TypeError, RecursionError, MemoryError) as err:
        raise ConfigError(
            [Problem(source, f"cannot read this YAML: {err}", "check the file's syntax")]
        ) from None
    return documents


def parse_yaml(text: str, source: str) -> list[Any]:
    """The non-empty YAML documents of `text`; ConfigError on bad or unbounded YAML."""
    return [doc for doc, _line in parse_yaml_documents(text, source)]


# --------------------------------------------------------------------------------------------
# Topologies.


def lab_name_from_path(path: Path) -> str:
    stem = re.sub(r"[^a-z0-9-]+", "-", path.stem.lower()).strip("-") or "lab"
    return stem[:LAB_NAME_MAX].strip("-") or "lab"


def load_topology(
    path: Path, name: str | None = None, pods_per_node: int | None = None
) -> Topology:
    """Read and validate a topology or Calico bundle; raise ConfigError listing every problem."""
    text = read_input(path)
    default_name = name if name is not None else lab_name_from_path(path)
    topo = load_topology_text(text, str(path), default_name, pods_per_node, name_override=name)
    return _router_configs_found(topo, path.parent)


def _router_configs_found(topo: Topology, base: Path) -> Topology:
    """Each router's own BIRD configuration as an absolute path (relative ones are relative
    to the topology file), checked to be a readable file: ConfigError at its key otherwise."""
    routers = dict(topo.routers)
    problems = []
    for name, router in topo.routers.items():
        if router.bgp is None or router.bgp.config is None:
            continue
        path = (base / router.bgp.config).resolve()
        if not path.is_file():
            problems.append(
                Problem(
                    f"routers.{name}.bgp.config",
                    f"{path} is not a file",
                    "give the path of your BIRD 2 configuration, relative to the topology file",
                )
            )
            continue
        bgp = router.bgp.model_copy(update={"config": str(path)})
        routers[name] = router.model_copy(update={"bgp": bgp})
    if problems:
        raise ConfigError(problems)
    return topo.model_copy(update={"routers": routers})


def _shown(problems: list[Problem], source: str) -> list[Problem]:
    if len(problems) <= MAX_PROBLEMS_SHOWN:
        return problems
    hidden = len(problems) - MAX_PROBLEMS_SHOWN
    return [
        *problems[:MAX_PROBLEMS_SHOWN],
        Problem(source, f"{hidden} more problems not shown", "fix the ones above first"),
    ]


def _native_data(
    documents: list[Any], source: str, pods_per_node: int | None, name_override: str | None
) -> dict[Any, Any]:
    if len(documents) > 1:
        raise ConfigError(
            [Problem(source, "holds several YAML documents", "a topology is one document")]
        )
    data = documents[0]
    if not isinstance(data, dict):
        raise ConfigError([Problem(source, "is not a mapping", "a topology is a mapping")])
    if name_override is not None:
        data["name"] = name_override
    nodes = data.get("nodes")
    if pods_per_node is not None and isinstance(nodes, dict):
        for node in nodes.values():
            if isinstance(node, dict):
                node["pods"] = pods_per_node
    return data


def load_topology_text(
    text: str,
    source: str,
    default_name: str,
    pods_per_node: int | None = None,
    name_override: str | None = None,
) -> Topology:
    """`default_name` names a bundle's lab; `name_override` (`--name`) replaces any lab name.

    `pods_per_node` (`--pods`) replaces every node's pod count; 0 means no pods.
    """
    parsed = parse_yaml_documents(text, source)
    if not parsed:
        raise ConfigError([Problem(source, "is empty", "write a topology or Calico resources")])
    documents = [doc for doc, _line in parsed]
    origins: dict[str, str] = {}
    if looks_like_bundle(documents):
        pods = DEFAULT_PODS_PER_NODE if pods_per_node is None else pods_per_node
        conv = convert_bundle(documents, default_name, pods, lines=[line for _, line in parsed])
        if conv.problems:
            raise ConfigError(_shown(conv.problems, source))
        data: Any = conv.data
        origins = conv.origins
    else:
        data = _native_data(documents, source, pods_per_node, name_override)
    try:
        topo = Topology.model_validate(data)
    except ValidationError as err:
        problems = _relocate(problems_from_validation(err), origins)
        raise ConfigError(_shown(problems, source)) from None
    problems = check_topology(topo)
    if origins:  # a bundle's Services and pods: their problems named in the bundle's words
        problems += check_pods(topo) + check_services(topo)
    if problems:
        raise ConfigError(_shown(_relocate(problems, origins), source))
    return topo


# Native field names that a bundle spells differently.
_BUNDLE_FIELDS = {"ipv4": "ipv4Address", "ipv6": "ipv6Address"}


def _relocate(problems: list[Problem], origins: dict[str, str]) -> list[Problem]:
    """Point problems found on a converted bundle back at the bundle's resources."""
    if not origins:
        return problems
    out = []
    for problem in problems:
        location = problem.location
        for prefix in sorted(origins, key=len, reverse=True):
            if location == prefix or location.startswith(prefix + "."):
                rest = location[len(prefix) :].lstrip(".")
                rest = _BUNDLE_FIELDS.get(rest, rest)
                location = f"{origins[prefix]}.{rest}" if rest else origins[prefix]
                break
        out.append(Problem(location, problem.message, problem.hint))
    return out
