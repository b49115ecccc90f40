"""Calico label selectors: parsing, matching and the canonical text form.

This module owns the selector language of Calico v3 as it appears in `BGPPeer.spec.nodeSelector`,
`BGPPeer.spec.peerSelector` and `IPPool.spec.nodeSelector`: it turns the text into an immutable
expression tree (`parse_selector`), evaluates the tree against a node's labels
(`Selector.matches`) and prints it back in Calico's canonical form (`str(selector)`).

It follows Calico's own tokenizer and parser (libcalico-go `lib/selector`):

- Empty (or blank) text selects everything, like `all()`. `global()` also selects every node:
  it only narrows things down for namespaced resources, which nodes are not.
- `&&` binds tighter than `||`; a run of leading `!` applies to the next operation only, so
  `!a == 'x' && has(b)` means `(!(a == 'x')) && has(b)`.
- `k != 'v'`, `k not in {...}` and `!has(k)` are true when the label `k` is absent; `==`, `in`,
  `contains`, `starts with`, `ends with` and `has()` need the label to be present.
- Strings are quoted with `'` or `"` and have no escapes. Only spaces and tabs count as
  whitespace. Label keys are runs of ``[A-Za-z0-9_./-]``: Calico does not check the Kubernetes
  key structure inside a selector (a key that no label can have simply never matches).
- Operator words after a label are matched by prefix, as Calico does, so `startswith`,
  `endswith` and `notin` are accepted and printed canonically as `starts with`, `ends with` and
  `not in`.
- Parentheses nest at most `MAX_SELECTOR_DEPTH` deep. Calico's recursive parser has no limit;
  meshemu's parser, matcher and printer recurse once per level, so a bound keeps a hostile
  selector from exhausting Python's stack. Real selectors nest two or three levels.

It owns no I/O. Label values arrive as strings; turning YAML booleans into `'true'`/`'false'`
is the caller's business.
"""

from __future__ import annotations

import enum
import string
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass

from meshemu.errors import MeshemuError

__all__ = [
    "MAX_SELECTOR_DEPTH",
    "And",
    "CompareOp",
    "HasLabel",
    "LabelCompare",
    "LabelInSet",
    "MatchAll",
    "MatchGlobal",
    "Not",
    "Or",
    "Selector",
    "SelectorError",
    "parse_selector",
]

MAX_SELECTOR_DEPTH = 64


class SelectorError(MeshemuError, ValueError):
    """A selector that Calico would reject.

    `reason` is the bare message, `position` the 0-based character offset of the problem in
    `expression`; `str()` adds the expression with a caret under that offset.
    """

    def __init__(self, reason: str, expression: str, position: int) -> None:
        self.reason = reason
        self.expression = expression
        self.position = position
        super().__init__(self._render())

    def _render(self) -> str:
        shown = "".join(" " if ch in "\t\r\n" else ch for ch in self.expression)
        return f"{self.reason} (at position {self.position})\n  {shown}\n  {' ' * self.position}^"

    def __str__(self) -> str:
        return self._render()


# --------------------------------------------------------------------------------------------
# The expression tree.


class Selector(ABC):
    """A parsed selector; every node of the tree is an immutable, hashable value."""

    @abstractmethod
    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether an object carrying `labels` is selected."""

    @abstractmethod
    def __str__(self) -> str:
        """The canonical text form, exactly as Calico prints it.

        Parsing it again gives a selector that matches the same labels. The text is a fixed
        point except after a double negation such as `!(!has(a))`: Calico prints it as
        `!!has(a)`, which parses back to `has(a)` because leading `!`s cancel out.
        """


def _quote(value: str) -> str:
    # A value never holds both quote characters: there are no escapes inside a string.
    quote = "'" if '"' in value else '"'
    return f"{quote}{value}{quote}"


@dataclass(frozen=True)
class MatchAll(Selector):
    """`all()`, and also the empty selector: selects everything."""

    def matches(self, labels: Mapping[str, str]) -> bool:
        return True

    def __str__(self) -> str:
        return "all()"


@dataclass(frozen=True)
class MatchGlobal(Selector):
    """`global()`: selects every non-namespaced object, so every node."""

    def matches(self, labels: Mapping[str, str]) -> bool:
        return True

    def __str__(self) -> str:
        return "global()"


@dataclass(frozen=True)
class HasLabel(Selector):
    """`has(key)`: the label is present, whatever its value."""

    key: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        return self.key in labels

    def __str__(self) -> str:
        return f"has({self.key})"


class CompareOp(enum.StrEnum):
    """The operators that compare one label's value with one string."""

    EQ = "=="
    NE = "!="
    CONTAINS = "contains"
    STARTS_WITH = "starts with"
    ENDS_WITH = "ends with"


@dataclass(frozen=True)
class LabelCompare(Selector):
    """`key <op> 'value'`; only `!=` is true for an absent label."""

    key: str
    op: CompareOp
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.key)
        if actual is None:
            return self.op is CompareOp.NE
        match self.op:
            case CompareOp.EQ:
                return actual == self.value
            case CompareOp.NE:
                return actual != self.value
            case CompareOp.CONTAINS:
                return self.value in actual
            case CompareOp.STARTS_WITH:
                return actual.startswith(self.value)
            case CompareOp.ENDS_WITH:
                return actual.endswith(self.value)

    def __str__(self) -> str:
        return f"{self.key} {self.op.value} {_quote(self.value)}"


@dataclass(frozen=True)
class LabelInSet(Selector):
    """`key in {...}` or, with `negated`, `key not in {...}` (true for an absent label).

    `values` is sorted and free of duplicates, as Calico stores it.
    """

    key: str
    values: tuple[str, ...]
    negated: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", tuple(sorted(set(self.values))))

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.key)
        if actual is None:
            return self.negated
        return (actual in self.values) != self.negated

    def __str__(self) -> str:
        op = "not in" if self.negated else "in"
        return f"{self.key} {op} {{{', '.join(_quote(v) for v in self.values)}}}"


@dataclass(frozen=True)
class Not(Selector):
    """`!operand`."""

    operand: Selector

    def matches(self, labels: Mapping[str, str]) -> bool:
        return not self.operand.matches(labels)

    def __str__(self) -> str:
        return f"!{self.operand}"


@dataclass(frozen=True)
class And(Selector):
    """`a && b && ...` (two or more operands); printed in parentheses, as Calico does."""

    operands: tuple[Selector, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(op.matches(labels) for op in self.operands)

    def __str__(self) -> str:
        return "(" + " && ".join(str(op) for op in self.operands) + ")"


@dataclass(frozen=True)
class Or(Selector):
    """`a || b || ...` (two or more operands); printed in parentheses, as Calico does."""

    operands: tuple[Selector, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return any(op.matches(labels) for op in self.operands)

    def __str__(self) -> str:
        return "(" + " || ".join(str(op) for op in self.operands) + ")"


# --------------------------------------------------------------------------------------------
# Tokenizer.

_WHITESPACE = " \t"
_KEY_CHARS = frozenset(string.ascii_letters + string.digits + "_./-")


class _Kind(enum.Enum):
    LABEL = "label"
    STRING = "string"
    LBRACE = "{"
    RBRACE = "}"
    COMMA = ","
    EQ = "=="
    NE = "!="
    IN = "in"
    NOT_IN = "not in"
    CONTAINS = "contains"
    STARTS_WITH = "starts with"
    ENDS_WITH = "ends with"
    NOT = "!"
    ALL = "all()"
    GLOBAL = "global()"
    HAS = "has()"
    LPAREN = "("
    RPAREN = ")"
    AND = "&&"
    OR = "||"
    EOF = "end of selector"


_COMPARE_KINDS = {
    _Kind.EQ: CompareOp.EQ,
    _Kind.NE: CompareOp.NE,
    _Kind.CONTAINS: CompareOp.CONTAINS,
    _Kind.STARTS_WITH: CompareOp.STARTS_WITH,
    _Kind.ENDS_WITH: CompareOp.ENDS_WITH,
}

_OPERATORS_HINT = "==, !=, in, not in, contains, starts with or ends with"


@dataclass(frozen=True)
class _Token:
    kind: _Kind
    start: int
    end: int
    value: str = ""  # the key of LABEL and HAS, the contents of STRING


class _Tokenizer:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.tokens: list[_Token] = []

    def error(self, reason: str, position: int) -> SelectorError:
        return SelectorError(reason, self.text, position)

    def skip_whitespace(self, pos: int) -> int:
        while pos < len(self.text) and self.text[pos] in _WHITESPACE:
            pos += 1
        return pos

    def read_key(self, pos: int) -> str:
        end = pos
        while end < len(self.text) and self.text[end] in _KEY_CHARS:
            end += 1
        return self.text[pos:end]

    def emit(self, kind: _Kind, end: int, value: str = "") -> None:
        self.tokens.append(_Token(kind, self.pos, end, value))
        self.pos = end

    def run(self) -> list[_Token]:
        text = self.text
        while True:
            self.pos = self.skip_whitespace(self.pos)
            if self.pos >= len(text):
                self.emit(_Kind.EOF, len(text))
                return self.tokens
            after_label = bool(self.tokens) and self.tokens[-1].kind is _Kind.LABEL
            ch = text[self.pos]
            nxt = text[self.pos + 1] if self.pos + 1 < len(text) else ""
            if ch in "(){},":
                self.emit(_Kind(ch), self.pos + 1)
            elif ch in "'\"":
                close = text.find(ch, self.pos + 1)
                if close < 0:
                    raise self.error(f"unterminated string: no closing {ch} found", self.pos)
                self.emit(_Kind.STRING, close + 1, text[self.pos + 1 : close])
            elif ch == "=":
                if nxt != "=":
                    raise self.error("expected '==' (a single '=' is not an operator)", self.pos)
                self.emit(_Kind.EQ, self.pos + 2)
            elif ch == "!":
                if nxt == "=":
                    self.emit(_Kind.NE, self.pos + 2)
                else:
                    self.emit(_Kind.NOT, self.pos + 1)
            elif ch in "&|":
                if nxt != ch:
                    raise self.error(f"expected '{ch}{ch}'", self.pos)
                self.emit(_Kind.AND if ch == "&" else _Kind.OR, self.pos + 2)
            elif ch in "\r\n":
                raise self.error(
                    "line break in selector (Calico allows only spaces and tabs)", self.pos
                )
            elif after_label:
                self.operator_word()
            elif text.startswith("has(", self.pos):
                self.has()
            elif text.startswith("all(", self.pos):
                self.empty_call("all", _Kind.ALL)
            elif text.startswith("global(", self.pos):
                self.empty_call("global", _Kind.GLOBAL)
            elif ch in _KEY_CHARS:
                key = self.read_key(self.pos)
                self.emit(_Kind.LABEL, self.pos + len(key), key)
            else:
                raise self.error(f"unexpected character {ch!r}", self.pos)

    def operator_word(self) -> None:
        """After a label only an operator may follow; Calico matches the words by prefix."""
        text, pos = self.text, self.pos
        if text.startswith("contains", pos):
            self.emit(_Kind.CONTAINS, pos + len("contains"))
            return
        for first, second, kind in (
            ("starts", "with", _Kind.STARTS_WITH),
            ("ends", "with", _Kind.ENDS_WITH),
            ("not", "in", _Kind.NOT_IN),
        ):
            if text.startswith(first, pos):
                after = self.skip_whitespace(pos + len(first))
                if not text.startswith(second, after):
                    raise self.error(f"expected '{first} {second}'", after)
                self.emit(kind, after + len(second))
                return
        if text.startswith("in", pos):
            self.emit(_Kind.IN, pos + len("in"))
            return
        label = self.tokens[-1].value
        raise self.error(f"expected an operator ({_OPERATORS_HINT}) after label {label!r}", pos)

    def has(self) -> None:
        inner = self.skip_whitespace(self.pos + len("has("))
        key = self.read_key(inner)
        if not key:
            raise self.error("expected a label key inside has()", inner)
        close = self.skip_whitespace(inner + len(key))
        if not self.text.startswith(")", close):
            raise self.error(f"expected ')' to close has({key}", close)
        self.emit(_Kind.HAS, close + 1, key)

    def empty_call(self, name: str, kind: _Kind) -> None:
        close = self.skip_whitespace(self.pos + len(name) + 1)
        if not self.text.startswith(")", close):
            raise self.error(f"expected ')' right after {name}(: {name}() takes no argument", close)
        self.emit(kind, close + 1)


# --------------------------------------------------------------------------------------------
# Parser.


class _Parser:
    def __init__(self, text: str, tokens: list[_Token]) -> None:
        self.text = text
        self.tokens = tokens
        self.index = 0
        self.depth = 0

    def error(self, reason: str, position: int) -> SelectorError:
        return SelectorError(reason, self.text, position)

    def describe(self, token: _Token) -> str:
        if token.kind is _Kind.EOF:
            return "the end of the selector"
        return repr(self.text[token.start : token.end])

    def peek(self) -> _Token:
        return self.tokens[self.index]

    def advance(self) -> _Token:
        token = self.tokens[self.index]
        if token.kind is not _Kind.EOF:
            self.index += 1
        return token

    def parse(self) -> Selector:
        if self.peek().kind is _Kind.EOF:
            return MatchAll()
        node = self.parse_or()
        extra = self.peek()
        if extra.kind is _Kind.RPAREN:
            raise self.error("unbalanced parentheses: ')' without a matching '('", extra.start)
        if extra.kind is not _Kind.EOF:
            raise self.error(
                f"unexpected {self.describe(extra)} after a complete expression "
                "(join expressions with && or ||)",
                extra.start,
            )
        return node

    def parse_or(self) -> Selector:
        operands = [self.parse_and()]
        while self.peek().kind is _Kind.OR:
            self.advance()
            operands.append(self.parse_and())
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def parse_and(self) -> Selector:
        operands = [self.parse_operation()]
        while self.peek().kind is _Kind.AND:
            self.advance()
            operands.append(self.parse_operation())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def parse_operation(self) -> Selector:
        negated = False
        while self.peek().kind is _Kind.NOT:
            self.advance()
            negated = not negated
        node = self.parse_positive()
        return Not(node) if negated else node

    def parse_positive(self) -> Selector:
        token = self.advance()
        match token.kind:
            case _Kind.ALL:
                return MatchAll()
            case _Kind.GLOBAL:
                return MatchGlobal()
            case _Kind.HAS:
                return HasLabel(token.value)
            case _Kind.LABEL:
                return self.parse_label_operation(token)
            case _Kind.LPAREN:
                return self.parse_group(token)
            case _Kind.EOF:
                raise self.error(
                    "missing operand: the selector ends where an expression is due", token.start
                )
            case _Kind.RPAREN if self.depth == 0:
                raise self.error("unbalanced parentheses: ')' without a matching '('", token.start)
            case _:
                raise self.error(
                    f"missing operand: expected an expression, found {self.describe(token)}",
                    token.start,
                )

    def parse_group(self, lparen: _Token) -> Selector:
        if self.depth >= MAX_SELECTOR_DEPTH:
            raise self.error(
                f"parentheses nested more than {MAX_SELECTOR_DEPTH} deep", lparen.start
            )
        self.depth += 1
        node = self.parse_or()
        self.depth -= 1
        closing = self.advance()
        if closing.kind is _Kind.RPAREN:
            return node
        if closing.kind is _Kind.EOF:
            raise self.error(
                f"unbalanced parentheses: '(' at position {lparen.start} is never closed",
                lparen.start,
            )
        raise self.error(
            f"expected ')' to close the '(' at position {lparen.start}, "
            f"found {self.describe(closing)}",
            closing.start,
        )

    def parse_label_operation(self, label: _Token) -> Selector:
        op = self.advance()
        if op.kind in _COMPARE_KINDS:
            value = self.advance()
            if value.kind is not _Kind.STRING:
                raise self.error(
                    f"missing operand: expected a quoted string after '{op.kind.value}', "
                    f"found {self.describe(value)}",
                    value.start,
                )
            return LabelCompare(label.value, _COMPARE_KINDS[op.kind], value.value)
        if op.kind in (_Kind.IN, _Kind.NOT_IN):
            return LabelInSet(label.value, self.parse_set(op), negated=op.kind is _Kind.NOT_IN)
        raise self.error(
            f"expected an operator ({_OPERATORS_HINT}) after label {label.value!r}, "
            f"found {self.describe(op)}",
            op.start,
        )

    def parse_set(self, op: _Token) -> tuple[str, ...]:
        """`{'a', 'b'}`; empty and a trailing comma are allowed, as in Calico."""
        brace = self.advance()
        if brace.kind is not _Kind.LBRACE:
            raise self.error(
                f"missing operand: expected a set such as {{'a', 'b'}} after '{op.kind.value}', "
                f"found {self.describe(brace)}",
                brace.start,
            )
        values: list[str] = []
        expected = "a quoted string or '}'"
        while self.peek().kind is _Kind.STRING:
            values.append(self.advance().value)
            if self.peek().kind is not _Kind.COMMA:
                expected = "',' or '}'"
                break
            self.advance()
        closing = self.advance()
        if closing.kind is not _Kind.RBRACE:
            raise self.error(
                f"expected {expected} in the set opened at position {brace.start}, "
                f"found {self.describe(closing)}",
                closing.start,
            )
        return tuple(values)


def parse_selector(text: str) -> Selector:
    """Parse a Calico selector; raises `SelectorError` where Calico would reject it."""
    return _Parser(text, _Tokenizer(text).run()).parse()
