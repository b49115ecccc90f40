"""Tests of meshemu.model.selector: Calico selector parsing, matching and canonical form."""

from __future__ import annotations

import dataclasses

import pytest

from meshemu.errors import MeshemuError
from meshemu.model.selector import (
    And,
    CompareOp,
    HasLabel,
    LabelCompare,
    LabelInSet,
    MatchAll,
    MatchGlobal,
    Not,
    Or,
    SelectorError,
    parse_selector,
)

Labels = dict[str, str]

# (selector, label sets it must select, label sets it must not select)
MATCH_CASES: list[tuple[str, list[Labels], list[Labels]]] = [
    ("", [{}, {"a": "b"}], []),
    ("   \t ", [{}, {"a": "b"}], []),
    ("all()", [{}, {"a": "b"}], []),
    (" all( ) ", [{}], []),
    ("global()", [{}, {"a": "b"}], []),
    ("has(a)", [{"a": ""}, {"a": "x", "b": "y"}], [{}, {"b": "a"}]),
    ("has( a )", [{"a": "b"}], [{}]),
    ("!has(a)", [{}, {"b": "b"}], [{"a": "b"}]),
    ("!!has(a)", [{"a": "b"}], [{}]),
    ("! !! has(a)", [{}], [{"a": "b"}]),
    ("a == 'b'", [{"a": "b"}, {"a": "b", "c": "d"}], [{}, {"a": "c"}, {"c": "d"}]),
    ('a == "b"', [{"a": "b"}], [{"a": "B"}]),
    ("a=='b'", [{"a": "b"}], [{"a": "bb"}]),
    ("a == ''", [{"a": ""}], [{}, {"a": "x"}]),
    ("a != 'b'", [{}, {"a": "c"}, {"c": "b"}], [{"a": "b"}]),
    ("a in {'x', 'y'}", [{"a": "x"}, {"a": "y"}], [{}, {"a": "z"}, {"b": "x"}]),
    ("a in {}", [], [{}, {"a": ""}]),
    ("a in {'x',}", [{"a": "x"}], [{"a": ""}]),
    ("a not in {'x', 'y'}", [{}, {"a": "z"}], [{"a": "x"}, {"a": "y"}]),
    ("a not in {}", [{}, {"a": "x"}], []),
    ("a notin{'x'}", [{"a": "y"}], [{"a": "x"}]),
    ('a in {"\'", \'"\', "c"}', [{"a": "'"}, {"a": '"'}, {"a": "c"}], [{}, {"a": "e"}]),
    ("a contains 'ac'", [{"a": "ac"}, {"a": "zacz"}], [{}, {"a": "ca"}, {"b": "ac"}]),
    ("a starts with 'rack-'", [{"a": "rack-1"}], [{}, {"a": "my-rack-1"}]),
    ("a startswith 'x'", [{"a": "xy"}], [{"a": "yx"}]),
    ("a ends with '-rr'", [{"a": "node-rr"}], [{}, {"a": "rr-node"}]),
    ("a ends\twith 'x'", [{"a": "yx"}], [{"a": "xy"}]),
    ("a == 'x' && b == 'y'", [{"a": "x", "b": "y"}], [{"a": "x"}, {"b": "y"}, {}]),
    ("a == 'x' || b == 'y'", [{"a": "x"}, {"b": "y"}], [{}, {"a": "y", "b": "x"}]),
    # && binds tighter than ||.
    ("has(a) || has(b) && has(c)", [{"a": "1"}, {"b": "1", "c": "1"}], [{"b": "1"}, {}]),
    ("(has(a) || has(b)) && has(c)", [{"a": "1", "c": "1"}], [{"a": "1"}, {"c": "1"}]),
    # A leading ! applies to the next operation only.
    ("!a == 'x' && has(b)", [{"b": "1"}, {"a": "y", "b": "1"}], [{"a": "x", "b": "1"}, {}]),
    ("!(!has(a) || has(b))", [{"a": "a"}], [{}, {"a": "a", "b": "b"}]),
    ("a != 'a1' || b != 'b1'", [{"a": "a1"}, {}], [{"a": "a1", "b": "b1"}]),
    (
        "topology.kubernetes.io/zone == 'z1' && route-reflector == 'true'",
        [{"topology.kubernetes.io/zone": "z1", "route-reflector": "true"}],
        [{"topology.kubernetes.io/zone": "z1", "route-reflector": "false"}],
    ),
    ("has(calico-rr) && rack in {'r1','r2'}", [{"calico-rr": "", "rack": "r2"}], [{"rack": "r1"}]),
    # Label-ish words are only operators right after a label.
    ("contains == 'in'", [{"contains": "in"}], [{"in": "contains"}]),
    ("has == 'x' || all == 'y'", [{"has": "x"}, {"all": "y"}], [{}]),
    # The same quote character cannot appear in a string, the other one can.
    ('a == "it\'s"', [{"a": "it's"}], [{"a": "its"}]),
]


@pytest.mark.parametrize(("text", "selected", "rejected"), MATCH_CASES)
def test_matches(text: str, selected: list[Labels], rejected: list[Labels]) -> None:
    selector = parse_selector(text)
    for labels in selected:
        assert selector.matches(labels), f"{text!r} should select {labels}"
    for labels in rejected:
        assert not selector.matches(labels), f"{text!r} should not select {labels}"


@pytest.mark.parametrize(("text", "selected", "rejected"), MATCH_CASES)
def test_canonical_form_round_trips(
    text: str, selected: list[Labels], rejected: list[Labels]
) -> None:
    canonical = str(parse_selector(text))
    again = parse_selector(canonical)
    assert str(again) == canonical
    for labels in selected:
        assert again.matches(labels)
    for labels in rejected:
        assert not again.matches(labels)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("", "all()"),
        (" all() ", "all()"),
        (" (all() )", "all()"),
        (" global( )", "global()"),
        ("! (has( b)||! has(a ))", "!(has(b) || !has(a))"),
        ('! (a == "b"&&! c != "d")', '!(a == "b" && !c != "d")'),
        ("a == 'x'", 'a == "x"'),
        ("a == '\"'", "a == '\"'"),
        ('a contains "\'"', 'a contains "\'"'),
        ("a startswith '\"'", "a starts with '\"'"),
        ('a endswith "x"', 'a ends with "x"'),
        ("a!='\"'", "a != '\"'"),
        ("a notin {}", "a not in {}"),
        ("a in {'z', 'z', 'x', 'y', 'x', 'a'}", 'a in {"a", "x", "y", "z"}'),
        ("a == 'x' && b == 'y' && c == 'z'", '(a == "x" && b == "y" && c == "z")'),
        ("has(a) || has(b) && has(c)", "(has(a) || (has(b) && has(c)))"),
        ("(has(a) && has(b)) && has(c)", "((has(a) && has(b)) && has(c))"),
        ("!!!has(a)", "!has(a)"),
        ("!(k == 'v')", '!k == "v"'),
        (
            "!(!(k == 'v' && has(t) || all()) && (a in {'b', 'c'}))",
            '!(!((k == "v" && has(t)) || all()) && a in {"b", "c"})',
        ),
    ],
)
def test_canonical_form_is_calicos(text: str, canonical: str) -> None:
    assert str(parse_selector(text)) == canonical


def test_tree_shape() -> None:
    selector = parse_selector("!has(a) || b in {'y', 'x'} && c starts with 'p'")
    assert selector == Or(
        (
            Not(HasLabel("a")),
            And(
                (
                    LabelInSet("b", ("x", "y")),
                    LabelCompare("c", CompareOp.STARTS_WITH, "p"),
                )
            ),
        )
    )
    assert parse_selector("") == MatchAll()
    assert parse_selector("global()") == MatchGlobal()
    assert parse_selector("a not in {'x'}") == LabelInSet("a", ("x",), negated=True)


def test_selectors_are_immutable_and_hashable() -> None:
    selector = parse_selector("a == 'x' && has(b)")
    assert isinstance(selector, And)
    with pytest.raises(dataclasses.FrozenInstanceError):
        selector.operands = ()  # type: ignore[misc]
    assert hash(selector) == hash(parse_selector("a=='x'&&has( b )"))
    assert LabelInSet("a", ("y", "x", "y")).values == ("x", "y")


# (selector, 0-based position of the problem, fragment of the reason)
ERROR_CASES: list[tuple[str, int, str]] = [
    # Unterminated strings: the position is the opening quote.
    ("a == 'b", 5, "unterminated string"),
    ('"FOO', 0, "unterminated string"),
    ("\"FOO'", 0, "unterminated string"),
    ("a in {'x', 'y}", 11, "unterminated string"),
    # Unknown tokens.
    ("%", 0, "unexpected character '%'"),
    ("a == 'b' && %", 12, "unexpected character '%'"),
    ("a = 'b'", 2, "'=='"),
    ("has(a) & has(b)", 7, "'&&'"),
    ("has(a) | has(b)", 7, "'||'"),
    ("a b", 2, "expected an operator"),
    ("a starts 'x'", 9, "'starts with'"),
    ("a not 'x'", 6, "'not in'"),
    ("a\n== 'b'", 1, "line break"),
    ("a == 'b' \u00e9", 9, "unexpected character"),
    ("has()", 4, "label key inside has()"),
    ("has(a b)", 6, "')' to close has(a"),
    ("all(x)", 4, "takes no argument"),
    # Missing operands.
    ("!", 1, "missing operand"),
    ("has(a) &&", 9, "missing operand"),
    ("has(a) || ", 10, "missing operand"),
    ("&& has(a)", 0, "missing operand"),
    ("()", 1, "missing operand"),
    ("b == b", 5, "quoted string after '=='"),
    ("b contains b", 11, "quoted string after 'contains'"),
    ("a ==", 4, "missing operand"),
    ("foo != ||", 7, "missing operand"),
    ("foo in ''", 7, "expected a set"),
    ("'b1' == b", 0, "missing operand"),
    ("b", 1, "expected an operator"),
    ("a ", 2, "expected an operator"),
    ("a && b == 'c'", 2, "expected an operator"),
    ("foo in {'', ||", 12, "a quoted string or '}'"),
    ("a in {'x' 'y'}", 10, "',' or '}'"),
    ("a in {'x'", 9, "',' or '}'"),
    # Unbalanced parentheses.
    ("(a == 'foo'", 0, "'(' at position 0 is never closed"),
    ("has(x) && (has(a) || (has(b))", 10, "never closed"),
    (")", 0, "')' without a matching '('"),
    ("a == 'b')", 8, "')' without a matching '('"),
    ("(has(a)) && has(b))", 18, "')' without a matching '('"),
    ("(has(a) has(b))", 8, "expected ')' to close the '(' at position 0"),
    # Trailing garbage.
    ("a == 'b' c", 9, "after a complete expression"),
    ("has(a) 'x'", 7, "after a complete expression"),
    ("all() all()", 6, "after a complete expression"),
]


@pytest.mark.parametrize(("text", "position", "reason"), ERROR_CASES)
def test_errors(text: str, position: int, reason: str) -> None:
    with pytest.raises(SelectorError) as caught:
        parse_selector(text)
    error = caught.value
    assert error.position == position
    assert error.expression == text
    assert reason in error.reason
    assert reason in str(error)


def test_error_message_has_a_caret_under_the_position() -> None:
    with pytest.raises(SelectorError) as caught:
        parse_selector("a == 'b' &&\t%")
    lines = str(caught.value).splitlines()
    assert lines[0].startswith("unexpected character '%'")
    assert "position 12" in lines[0]
    # Tabs are shown as one space so that the caret lines up.
    assert lines[1] == "  a == 'b' && %"
    assert lines[2] == "  " + " " * 12 + "^"
    assert lines[1][lines[2].index("^")] == "%"


def test_selector_error_is_a_value_error_and_a_meshemu_error() -> None:
    with pytest.raises(ValueError):
        parse_selector("(")
    with pytest.raises(MeshemuError):
        parse_selector("(")
