"""Reading and writing the JSON meshemu keeps (the plan, agent configurations, allocations).

Owns the two pieces every wire form is made of:
- `Wire`, the JSON form of a frozen dataclass whose JSON is simply its fields: `to_json` and
  `from_json` follow `dataclasses.fields` and the type hints (str, int, float, bool, `X | None`,
  `tuple[X, ...]`, `dict[str, X]`, nested `Wire` dataclasses, `Annotated[X, OneOf(...)]`);
- `Fields`, the reader of the hand-written forms, whose JSON differs from their fields on purpose
  (the `plan --json` contract of LabPlan, NodePlan and Session; FibRoute; Sticky); it reads their
  parts with the same checks (`Fields.each` for a list of `Wire` objects).
Both check that each field is there and has the type the writer gives it, and raise `LabError`
naming the field (`plan.nodes[2].sessions[0].peer_as: expected a whole number, found 'x'`)
instead of a KeyError or TypeError. Such JSON lives in a lab's state folder; if it does not read
back, the folder was changed by hand or written by another version, which is what `LabError`
means. It decides nothing about what the fields mean.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Generic, NoReturn, Self, TypeVar

from meshemu.errors import LabError

T = TypeVar("T")
NoneType = type(None)
Convert = Callable[[Any], Any]


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return repr(value[:40])
    return type(value).__name__


class _Misfit(Exception):
    """A JSON value that does not fit its type. Where it sits is collected while the readers
    unwind (`trail`, innermost step first), so reading that succeeds builds no path text."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.trail: list[str] = []

    def at(self, step: str) -> _Misfit:
        self.trail.append(step)
        return self

    def error(self, where: str) -> LabError:
        return LabError(f"{where}{''.join(reversed(self.trail))}: {self.message}")


def _misfit(wanted: str, value: object) -> _Misfit:
    return _Misfit(f"expected {wanted}, found {_kind(value)}")


@dataclass(frozen=True)
class _Codec(Generic[T]):
    """How one type travels: the JSON values that fit it, and the conversions both ways."""

    wanted: str  # what a fitting value is, for messages ("text", "a whole number", ...)
    kinds: tuple[type, ...]  # the JSON types that fit ...
    excluded: tuple[type, ...] = ()  # ... except these (JSON true/false are Python ints)
    convert: Convert | None = None  # a fitting JSON value -> T; None: the value as it is
    encode: Convert | None = None  # T -> its JSON value; None: the value as it is
    # JSON value -> T, or _Misfit; a closure over the fields above, which is faster to call.
    read: Callable[[object], T] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        wanted, kinds, excluded, convert = self.wanted, self.kinds, self.excluded, self.convert

        def read(value: object) -> Any:
            if isinstance(value, kinds) and not (excluded and isinstance(value, excluded)):
                return value if convert is None else convert(value)
            raise _misfit(wanted, value)

        object.__setattr__(self, "read", read)


_TEXT = _Codec[str]("text", (str,))
_WHOLE = _Codec[int]("a whole number", (int,), (bool,))
_FLAG = _Codec[bool]("true or false", (bool,))
_SCALARS: dict[object, _Codec[Any]] = {
    str: _TEXT,
    int: _WHOLE,
    float: _Codec[float]("a number", (int, float), (bool,)),
    bool: _FLAG,
}
_LIST = _Codec[list[object]]("a list", (list,))
_MAPPING = _Codec[Mapping[str, object]]("an object", (Mapping,))


class OneOf:
    """`Annotated[int, OneOf(4, 6)]`: a field whose JSON value must be one of these."""

    def __init__(self, *choices: object) -> None:
        self.choices = choices


class Wire:
    """Base of a frozen dataclass whose JSON form is simply its fields, in their order, under
    their names; nested dataclasses must be `Wire` too. Reading is as strict as `Fields`."""

    __slots__ = ()

    def to_json(self) -> dict[str, Any]:
        encode = _codec(type(self)).encode
        assert encode is not None  # every dataclass codec has one
        json: dict[str, Any] = encode(self)
        return json

    @classmethod
    def from_json(cls, data: object, where: str) -> Self:
        """`to_json`'s form back; LabError names a field that is missing or mistyped."""
        try:
            read: Self = _codec(cls).read(data)
        except _Misfit as misfit:
            raise misfit.error(where) from None
        return read


_CODECS: dict[object, _Codec[Any]] = {}


def _codec(tp: Any) -> _Codec[Any]:
    """The codec of a type hint, compiled once per hint."""
    codec = _CODECS.get(tp)
    if codec is None:
        codec = _CODECS[tp] = _compile(tp)
    return codec


def _compile(tp: Any) -> _Codec[Any]:
    """A hint with no JSON form is a bug in a dataclass, not bad data: TypeError."""
    if tp in _SCALARS:
        return _SCALARS[tp]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Annotated:
        choices = [c for m in tp.__metadata__ if isinstance(m, OneOf) for c in m.choices]
        return _one_of(_codec(args[0]), tuple(choices)) if choices else _codec(args[0])
    if origin in (typing.Union, types.UnionType) and len(args) == 2 and NoneType in args:
        return _optional(_codec(args[0] if args[1] is NoneType else args[1]))
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return _tuple(_codec(args[0]))
    if origin is dict and args[0] is str:
        return _dict(_codec(args[1]))
    if isinstance(tp, type) and issubclass(tp, Wire) and dataclasses.is_dataclass(tp):
        return _object(tp)
    raise TypeError(f"no JSON form for {tp!r}")


def _one_of(base: _Codec[Any], choices: tuple[object, ...]) -> _Codec[Any]:
    wanted = " or ".join(map(str, choices))

    def convert(value: object) -> object:
        if value not in choices:
            raise _misfit(wanted, value)
        return value

    return dataclasses.replace(base, convert=_then(base.convert, convert))


def _then(first: Convert | None, second: Convert) -> Convert:
    return second if first is None else lambda value: second(first(value))


def _optional(inner: _Codec[Any]) -> _Codec[Any]:
    return _Codec(
        f"{inner.wanted} or null",
        (*inner.kinds, NoneType),
        inner.excluded,
        _or_null(inner.convert),
        _or_null(inner.encode),
    )


def _or_null(convert: Convert | None) -> Convert | None:
    if convert is None:
        return None
    present = convert
    return lambda value: None if value is None else present(value)


def _tuple(item: _Codec[Any]) -> _Codec[tuple[Any, ...]]:
    read, encode = item.read, item.encode

    def convert(values: list[object]) -> tuple[Any, ...]:
        try:
            return tuple(map(read, values))
        except _Misfit:
            # Read again one by one to say which item: only bad data pays for the index.
            for index, value in enumerate(values):
                try:
                    read(value)
                except _Misfit as misfit:
                    raise misfit.at(f"[{index}]") from None
            raise

    def encode_items(values: tuple[Any, ...]) -> list[Any]:
        return list(values) if encode is None else list(map(encode, values))

    return _Codec("a list", (list,), convert=convert, encode=encode_items)


def _dict(item: _Codec[Any]) -> _Codec[dict[str, Any]]:
    read, encode = item.read, item.encode

    def convert(values: Mapping[object, object]) -> dict[str, Any]:
        out = {}
        for key, value in values.items():
            try:
                out[str(key)] = read(value)
            except _Misfit as misfit:
                raise misfit.at(f".{key}") from None
        return out

    def encode_items(values: dict[str, Any]) -> dict[str, Any]:
        return dict(values) if encode is None else {k: encode(v) for k, v in values.items()}

    return _Codec("an object", (Mapping,), convert=convert, encode=encode_items)


def _object(cls: type[Any]) -> _Codec[Any]:
    hints = typing.get_type_hints(cls, include_extras=True)
    codecs = [(f.name, _codec(hints[f.name])) for f in dataclasses.fields(cls) if f.init]
    # The hot loop reads plain tuples: a plan of a few hundred nodes has some 10^6 fields.
    reads = tuple((name, c.kinds, c.excluded, c.convert, c.wanted) for name, c in codecs)
    encodes = tuple((name, c.encode) for name, c in codecs)

    def convert(data: Mapping[str, object]) -> object:
        values = []
        key = ""
        try:
            for key, kinds, excluded, convert_value, wanted in reads:
                try:
                    value = data[key]
                except KeyError:
                    raise _Misfit("missing") from None
                if not isinstance(value, kinds) or (excluded and isinstance(value, excluded)):
                    raise _misfit(wanted, value)
                values.append(value if convert_value is None else convert_value(value))
        except _Misfit as misfit:
            raise misfit.at(f".{key}") from None
        return cls(*values)

    def encode(obj: object) -> dict[str, Any]:
        out = {}
        for name, encode_value in encodes:
            value = getattr(obj, name)
            out[name] = value if encode_value is None else encode_value(value)
        return out

    return _Codec("an object", (Mapping,), convert=convert, encode=encode)


class Fields:
    """One JSON object of a hand-written form being read, with where it sits in its document."""

    def __init__(self, data: object, where: str) -> None:
        if not isinstance(data, Mapping):
            raise LabError(f"{where}: expected an object, found {_kind(data)}")
        self.data: Mapping[str, object] = data
        self.where = where

    def fail(self, key: str, message: str) -> NoReturn:
        raise LabError(f"{self.where}.{key}: {message}")

    def has(self, key: str) -> bool:
        return key in self.data

    def _read(self, key: str, codec: _Codec[T]) -> T:
        try:
            value = self.data[key]
        except KeyError:
            self.fail(key, "missing")
        try:
            return codec.read(value)
        except _Misfit as misfit:
            raise misfit.error(f"{self.where}.{key}") from None

    # -- scalars ----------------------------------------------------------------------------
    def text(self, key: str, default: str | None = None) -> str:
        if default is not None and key not in self.data:
            return default
        return self._read(key, _TEXT)

    def opt_text(self, key: str) -> str | None:
        return self._read(key, _OPT_TEXT)

    def number(self, key: str, default: int | None = None) -> int:
        if default is not None and key not in self.data:
            return default
        return self._read(key, _WHOLE)

    def opt_number(self, key: str) -> int | None:
        return self._read(key, _OPT_WHOLE)

    def flag(self, key: str, default: bool | None = None) -> bool:
        if default is not None and key not in self.data:
            return default
        return self._read(key, _FLAG)

    # -- containers -------------------------------------------------------------------------
    def items(self, key: str) -> list[object]:
        return self._read(key, _LIST)

    def objects(self, key: str) -> list[Fields]:
        return [Fields(item, f"{self.where}.{key}[{i}]") for i, item in enumerate(self.items(key))]

    def obj(self, key: str) -> Fields:
        return Fields(self._read(key, _MAPPING), f"{self.where}.{key}")

    def each(self, key: str, cls: type[T]) -> tuple[T, ...]:
        """A list of `Wire` objects (`cls`), read by their generic form."""
        return self._read(key, _codec(types.GenericAlias(tuple, (cls, ...))))

    def texts(self, key: str) -> tuple[str, ...]:
        return self._read(key, _TEXTS)

    def numbers(self, key: str) -> tuple[int, ...]:
        return self._read(key, _WHOLES)

    def text_map(self, key: str) -> dict[str, str]:
        return self._read(key, _TEXT_MAP)

    def mapping(self, key: str) -> Mapping[str, object]:
        return self._read(key, _MAPPING)


_OPT_TEXT: _Codec[str | None] = _codec(str | None)
_OPT_WHOLE: _Codec[int | None] = _codec(int | None)
_TEXTS: _Codec[tuple[str, ...]] = _codec(tuple[str, ...])
_WHOLES: _Codec[tuple[int, ...]] = _codec(tuple[int, ...])
_TEXT_MAP: _Codec[dict[str, str]] = _codec(dict[str, str])
