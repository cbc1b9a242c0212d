"""Frozen, JSON-serialisable records and the "unavailable" value.

Every collector returns a frozen dataclass deriving from :class:`Record`, or an
:class:`Unavailable` saying why that part could not be collected (never ``None``).
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar, cast

R = TypeVar("R", bound="Record")

JSON = Any


@dataclasses.dataclass(frozen=True)
class Unavailable:
    """A part of the fingerprint that could not be collected, and why."""

    reason: str
    """One line a user can act on, e.g. "not a git repository"."""

    def to_json(self) -> dict[str, str]:
        """Serialise as ``{"unavailable": reason}``."""
        return {"unavailable": self.reason}


def is_unavailable(data: object) -> bool:
    """True for the JSON form of :class:`Unavailable`."""
    return isinstance(data, Mapping) and set(data) == {"unavailable"}


@dataclasses.dataclass(frozen=True)
class Record:
    """Base of the frozen records: ``to_json`` and a tolerant ``from_json``."""

    kind: ClassVar[str] = "record"

    def to_json(self) -> dict[str, JSON]:
        """A plain, JSON-serialisable dict (nested records included)."""
        return {f.name: _dump(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_json(cls: type[R], data: Mapping[str, JSON]) -> R:
        """Build from ``to_json`` output; unknown keys are ignored, missing ones take defaults."""
        if not isinstance(data, Mapping):
            raise TypeError(f"{cls.kind}: expected an object, got {type(data).__name__}")
        hints = _hints(cast(type, cls))
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name in data:
                kwargs[f.name] = _load(hints.get(f.name), data[f.name])
        return cls(**kwargs)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """A record class's resolved field types (resolving is slow; records are many)."""
    return typing.get_type_hints(cls)


def _dump(value: Any) -> JSON:
    if isinstance(value, (Record, Unavailable)):
        return value.to_json()
    if isinstance(value, Mapping):
        return {str(k): _dump(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_dump(v) for v in value]
    return value


def _load(hint: Any, value: JSON) -> Any:
    """Rebuild nested records from a type hint such as ``CodeRecord | Unavailable``."""
    if is_unavailable(value):
        return Unavailable(value["unavailable"])
    for arg in typing.get_args(hint) if typing.get_origin(hint) in _UNIONS else (hint,):
        if isinstance(arg, type) and issubclass(arg, Record) and isinstance(value, Mapping):
            return arg.from_json(value)
        if typing.get_origin(arg) is not None and typing.get_origin(hint) in _UNIONS:
            return _load(arg, value)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (list, tuple) and isinstance(value, list):
        item = args[0] if args else Any
        items = [_load(item, v) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict and isinstance(value, Mapping) and len(args) == 2:
        return {k: _load(args[1], v) for k, v in value.items()}
    return value


_UNIONS = (typing.Union, types.UnionType)
