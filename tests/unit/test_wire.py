"""The generic JSON form of a frozen dataclass (`wire.Wire`) and the reader of hand-written
forms (`wire.Fields`): every supported hint goes to JSON and back, bools are not numbers, a
bad value is a LabError that names its place (`x.parts[1].count: missing`), a hint with no
JSON form is a TypeError when the class is first used, and `Fields` reads `Wire` parts with the
same messages. The plan's and agent configuration's round trips are in test_plan_wire.py."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshemu.errors import LabError
from meshemu.model.agent_config import AgentConfig, AgentSession
from meshemu.model.labplan import PodPlan, RibEntry, Vtep
from meshemu.model.wire import Fields, OneOf, Wire


@dataclass(frozen=True)
class Part(Wire):
    label: str
    count: int


@dataclass(frozen=True, slots=True)
class Whole(Wire):
    name: str
    size: int
    ratio: float
    on: bool
    note: str | None
    limit: int | None
    family: Annotated[int, OneOf(4, 6)]
    numbers: tuple[int, ...]
    parts: tuple[Part, ...]
    main: Part
    spare: Part | None
    tags: dict[str, str]
    groups: dict[str, tuple[Part, ...]]


WHOLE = Whole(
    name="w",
    size=3,
    ratio=0.5,
    on=True,
    note=None,
    limit=7,
    family=6,
    numbers=(1, 2, 3),
    parts=(Part("a", 1), Part("b", 2)),
    main=Part("m", 0),
    spare=None,
    tags={"k": "v"},
    groups={"g": (Part("c", 3),), "h": ()},
)


def whole_json() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(json.dumps(WHOLE.to_json()))
    return data


def read_error(data: object, where: str = "x") -> str:
    with pytest.raises(LabError) as err:
        Whole.from_json(data, where)
    return str(err.value)


# --- the form -----------------------------------------------------------------------------------


def test_json_is_the_fields_in_order_with_lists_for_tuples() -> None:
    data = WHOLE.to_json()
    assert list(data) == [f.name for f in dataclasses.fields(Whole)]
    assert data["numbers"] == [1, 2, 3] and type(data["numbers"]) is list
    assert data["parts"] == [{"label": "a", "count": 1}, {"label": "b", "count": 2}]
    assert data["main"] == {"label": "m", "count": 0} and data["spare"] is None
    assert data["groups"] == {"g": [{"label": "c", "count": 3}], "h": []}
    assert data["tags"] is not WHOLE.tags  # a copy: changing the JSON leaves the object alone


def test_round_trip_through_json_text() -> None:
    assert Whole.from_json(whole_json(), "x") == WHOLE
    filled = dataclasses.replace(WHOLE, note="n", spare=Part("s", 9), ratio=2.0)
    assert Whole.from_json(json.loads(json.dumps(filled.to_json())), "x") == filled


def test_a_float_field_takes_a_whole_number() -> None:
    data = {**whole_json(), "ratio": 2}
    assert Whole.from_json(data, "x").ratio == 2


def test_a_slotted_wire_class_keeps_its_slots() -> None:
    assert not hasattr(WHOLE, "__dict__")


def test_the_plan_and_agent_parts_are_generic() -> None:
    rib = RibEntry("10.0.0.0/26", "10.0.1.2", "n1", None, (64512,), None, ("1.1.1.1",), 2)
    assert rib.to_json() == {
        "prefix": "10.0.0.0/26",
        "next_hop": "10.0.1.2",
        "origin_node": "n1",
        "learned_from": None,
        "as_path": [64512],
        "originator_id": None,
        "cluster_list": ["1.1.1.1"],
        "paths": 2,
    }
    assert RibEntry.from_json(rib.to_json(), "rib") == rib
    pod = PodPlan("p", "n", "ns", "cali0", "10.1.0.1", None, "v4", None)
    assert PodPlan.from_json(json.loads(json.dumps(pod.to_json())), "pod") == pod


# --- strict reading -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("size",), True, "x.size: expected a whole number, found true"),
        (("size",), 1.5, "x.size: expected a whole number, found 1.5"),
        (("size",), "3", "x.size: expected a whole number, found '3'"),
        (("ratio",), False, "x.ratio: expected a number, found false"),
        (("on",), 1, "x.on: expected true or false, found 1"),
        (("name",), None, "x.name: expected text, found null"),
        (("note",), 7, "x.note: expected text or null, found 7"),
        (("limit",), False, "x.limit: expected a whole number or null, found false"),
        (("family",), 5, "x.family: expected 4 or 6, found 5"),
        (("family",), "4", "x.family: expected a whole number, found '4'"),
        (("numbers",), {"a": 1}, "x.numbers: expected a list, found dict"),
        (("numbers", 2), "3", "x.numbers[2]: expected a whole number, found '3'"),
        (("parts", 1), [], "x.parts[1]: expected an object, found list"),
        (("parts", 1, "count"), None, "x.parts[1].count: expected a whole number, found null"),
        (("main", "label"), 0, "x.main.label: expected text, found 0"),
        (("spare",), 3, "x.spare: expected an object or null, found 3"),
        (("tags", "k"), 1, "x.tags.k: expected text, found 1"),
        (("groups", "g", 0, "label"), [], "x.groups.g[0].label: expected text, found list"),
    ],
)
def test_a_wrong_value_is_named(path: tuple[object, ...], value: object, message: str) -> None:
    data: Any = whole_json()
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = value
    assert read_error(data) == message


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (("name",), "x.name: missing"),
        (("spare",), "x.spare: missing"),
        (("parts", 0, "label"), "x.parts[0].label: missing"),
        (("groups", "g", 0, "count"), "x.groups.g[0].count: missing"),
    ],
)
def test_a_missing_field_is_named(path: tuple[object, ...], message: str) -> None:
    data: Any = whole_json()
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    del parent[path[-1]]
    assert read_error(data) == message


def test_not_an_object_is_named() -> None:
    assert read_error([1], "cfg") == "cfg: expected an object, found list"
    assert read_error(None, "cfg") == "cfg: expected an object, found null"


def test_the_first_bad_item_is_named() -> None:
    data = whole_json()
    data["numbers"] = [1, "a", "b"]
    assert read_error(data) == "x.numbers[1]: expected a whole number, found 'a'"


def test_the_agent_configuration_names_its_default_place() -> None:
    with pytest.raises(LabError, match=r"^agent configuration: expected an object, found 3$"):
        AgentConfig.from_json(3)
    session = AgentSession("10.0.0.2", "b", "mesh", 64512, 64512, False, False, None)
    data = session.to_json()
    data["allow_local_as"] = "1"
    with pytest.raises(LabError, match=r"^s\.allow_local_as: expected a whole number or null"):
        AgentSession.from_json(data, "s")
    with pytest.raises(LabError, match=r"^v\.family: expected 4 or 6, found 5$"):
        Vtep.from_json({"family": 5, "address": "10.0.0.1", "mac": "ee:ee"}, "v")


# Every field, and one place inside each kind of container.
DAMAGE_PATHS: list[tuple[object, ...]] = [
    *[(f.name,) for f in dataclasses.fields(Whole)],
    ("numbers", 1),
    ("parts", 0),
    ("parts", 1, "count"),
    ("main", "label"),
    ("tags", "k"),
    ("groups", "g"),
    ("groups", "g", 0, "label"),
]


@settings(max_examples=200, deadline=None)
@given(
    path=st.sampled_from(DAMAGE_PATHS),
    drop=st.booleans(),
    value=st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False),
        st.text(max_size=3),
        st.lists(st.integers(), max_size=2),
        st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    ),
)
def test_any_damage_is_a_lab_error_or_a_value(
    path: tuple[object, ...], drop: bool, value: object
) -> None:
    """Drop a field or put any JSON value in its place: a LabError naming a place under the
    document, or an object; never a KeyError, TypeError or ValueError."""
    damaged: Any = whole_json()
    parent = damaged
    for part in path[:-1]:
        parent = parent[part]
    if drop:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    try:
        Whole.from_json(damaged, "x")
    except LabError as err:
        assert str(err).startswith("x")


# --- hints without a JSON form ------------------------------------------------------------------


@dataclass(frozen=True)
class Plain:
    a: int


@dataclass(frozen=True)
class HoldsPlain(Wire):
    plain: Plain


@dataclass(frozen=True)
class HoldsList(Wire):
    items: list[int]


@dataclass(frozen=True)
class HoldsIntKeys(Wire):
    table: dict[int, str]


@pytest.mark.parametrize("cls", [HoldsPlain, HoldsList, HoldsIntKeys])
def test_a_hint_without_a_json_form_is_a_bug(cls: type[Wire]) -> None:
    with pytest.raises(TypeError, match="no JSON form"):
        cls.from_json({}, "x")


# --- Fields: the hand-written forms' reader -----------------------------------------------------


def test_fields_reads_wire_parts_with_their_place() -> None:
    doc = {"parts": [{"label": "a", "count": 1}, {"label": "b"}]}
    with pytest.raises(LabError, match=r"^doc\.parts\[1\]\.count: missing$"):
        Fields(doc, "doc").each("parts", Part)
    doc["parts"] = doc["parts"][:1]
    assert Fields(doc, "doc").each("parts", Part) == (Part("a", 1),)
    with pytest.raises(LabError, match=r"^doc\.nothing: missing$"):
        Fields(doc, "doc").each("nothing", Part)


def test_fields_messages() -> None:
    f = Fields(
        {"t": 1, "n": True, "b": 0, "l": {}, "ts": ["a", 2], "m": {"k": None}, "o": "x"}, "d"
    )
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: f.text("t"), "d.t: expected text, found 1"),
        (lambda: f.opt_text("t"), "d.t: expected text or null, found 1"),
        (lambda: f.number("n"), "d.n: expected a whole number, found true"),
        (lambda: f.opt_number("n"), "d.n: expected a whole number or null, found true"),
        (lambda: f.flag("b"), "d.b: expected true or false, found 0"),
        (lambda: f.items("l"), "d.l: expected a list, found dict"),
        (lambda: f.texts("ts"), "d.ts[1]: expected text, found 2"),
        (lambda: f.numbers("ts"), "d.ts[0]: expected a whole number, found 'a'"),
        (lambda: f.text_map("m"), "d.m.k: expected text, found null"),
        (lambda: f.obj("o"), "d.o: expected an object, found 'x'"),
        (lambda: f.mapping("o"), "d.o: expected an object, found 'x'"),
        (lambda: f.text("absent"), "d.absent: missing"),
    ]
    for read, message in cases:
        with pytest.raises(LabError) as err:
            read()
        assert str(err.value) == message
    # Defaults stand in only for an absent key, never for a wrong value.
    assert (f.text("absent", "z"), f.number("absent", 3), f.flag("absent", False)) == (
        "z",
        3,
        False,
    )
    with pytest.raises(LabError, match=r"^d\.t: expected text, found 1$"):
        f.text("t", "z")
