"""Reading back the JSON meshemu writes (the plan, agent configurations, allocations), strictly.

Owns one small reader, `Fields`, that every `from_json` uses: it checks that each field is there
and has the type the writer gives it, and raises `LabError` naming the field (`plan.nodes[2].
sessions[0].peer_as: expected a whole number, found 'x'`) instead of a KeyError or TypeError.
Such JSON lives in a lab's state folder; if it does not read back, the folder was changed by
hand or written by another version, which is what `LabError` means.
It decides nothing about what the fields mean.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NoReturn

from meshemu.errors import LabError


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


class Fields:
    """One JSON object being read, with where it sits in its document."""

    def __init__(self, data: object, where: str) -> None:
        if not isinstance(data, Mapping):
            raise LabError(f"{where}: expected an object, found {_kind(data)}")
        self.data: Mapping[str, object] = data
        self.where = where

    def fail(self, key: str, message: str) -> NoReturn:
        raise LabError(f"{self.where}.{key}: {message}")

    def _get(self, key: str) -> object:
        if key not in self.data:
            self.fail(key, "missing")
        return self.data[key]

    def has(self, key: str) -> bool:
        return key in self.data

    # -- scalars ----------------------------------------------------------------------------
    def text(self, key: str, default: str | None = None) -> str:
        if default is not None and key not in self.data:
            return default
        value = self._get(key)
        if not isinstance(value, str):
            self.fail(key, f"expected text, found {_kind(value)}")
        return value

    def opt_text(self, key: str) -> str | None:
        value = self._get(key)
        if value is not None and not isinstance(value, str):
            self.fail(key, f"expected text or null, found {_kind(value)}")
        return value

    def number(self, key: str, default: int | None = None) -> int:
        if default is not None and key not in self.data:
            return default
        value = self._get(key)
        # JSON true/false are Python bools, which are ints: not a number here.
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail(key, f"expected a whole number, found {_kind(value)}")
        return value

    def opt_number(self, key: str) -> int | None:
        value = self._get(key)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail(key, f"expected a whole number or null, found {_kind(value)}")
        return value

    def flag(self, key: str, default: bool | None = None) -> bool:
        if default is not None and key not in self.data:
            return default
        value = self._get(key)
        if not isinstance(value, bool):
            self.fail(key, f"expected true or false, found {_kind(value)}")
        return value

    # -- containers -------------------------------------------------------------------------
    def items(self, key: str) -> list[object]:
        value = self._get(key)
        if not isinstance(value, list):
            self.fail(key, f"expected a list, found {_kind(value)}")
        return value

    def objects(self, key: str) -> list[Fields]:
        return [Fields(item, f"{self.where}.{key}[{i}]") for i, item in enumerate(self.items(key))]

    def obj(self, key: str) -> Fields:
        return Fields(self._get(key), f"{self.where}.{key}")

    def texts(self, key: str) -> tuple[str, ...]:
        out = []
        for i, item in enumerate(self.items(key)):
            if not isinstance(item, str):
                self.fail(f"{key}[{i}]", f"expected text, found {_kind(item)}")
            out.append(item)
        return tuple(out)

    def numbers(self, key: str) -> tuple[int, ...]:
        out = []
        for i, item in enumerate(self.items(key)):
            if not isinstance(item, int) or isinstance(item, bool):
                self.fail(f"{key}[{i}]", f"expected a whole number, found {_kind(item)}")
            out.append(item)
        return tuple(out)

    def text_map(self, key: str) -> dict[str, str]:
        value = self._get(key)
        if not isinstance(value, Mapping):
            self.fail(key, f"expected an object, found {_kind(value)}")
        out = {}
        for name, item in value.items():
            if not isinstance(item, str):
                self.fail(f"{key}.{name}", f"expected text, found {_kind(item)}")
            out[str(name)] = item
        return out

    def mapping(self, key: str) -> Mapping[str, object]:
        value = self._get(key)
        if not isinstance(value, Mapping):
            self.fail(key, f"expected an object, found {_kind(value)}")
        return value
