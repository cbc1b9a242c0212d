"""Frozen, JSON-serialisable records and the "unavailable" value.

Every collector returns a frozen dataclass deriving from :class:`Record`, or an
:class:`Unavailable` saying why that part could not be collected (never ``None``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar, cast

from resumeguard.redact import redact_text

R = TypeVar("R", bound="Record")

JSON = Any


@dataclasses.dataclass(frozen=True)
class Unavailable:
    """A part of the fingerprint that could not be collected, and why."""

    reason: str
    """One line a user can act on, e.g. "not a git repository"."""

    def __post_init__(self) -> None:
        # A reason may quote a library's error, and with it a URL's credentials.
        object.__setattr__(self, "reason", redact_text(self.reason))

    def to_json(self) -> dict[str, str]:
        """Serialise as ``{"unavailable": reason}``."""
        return {"unavailable": self.reason}

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        """Validation of the JSON form ``{"unavailable": "why"}`` (see :meth:`Record.from_json`)."""
        from pydantic_core import core_schema as cs

        form = cs.typed_dict_schema(
            {"unavailable": cs.typed_dict_field(cs.str_schema())}, extra_behavior="forbid"
        )
        return cs.no_info_after_validator_function(lambda d: cls(d["unavailable"]), form)


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
    def from_json(cls: type[R], data: Any) -> R:
        """Build from ``to_json`` output, validated field by field: unknown keys are ignored,
        missing ones take defaults, a wrong type is a ValueError naming the field's path."""
        from pydantic import ValidationError

        try:
            text = json.dumps(data, allow_nan=False)
            return cast(R, _adapter(cast(type, cls)).validate_json(text, strict=True))
        except ValidationError as e:
            raise ValueError(_describe(e)) from None


@functools.cache
def _adapter(cls: type) -> Any:
    """A pydantic validator of a record class (building one is slow, records are many)."""
    from pydantic import TypeAdapter

    return TypeAdapter(cls)


def _describe(error: Any) -> str:
    """The first problem of a pydantic ValidationError as one line: "path: what (got X)"."""
    problems = error.errors(include_url=False)
    first = problems[0]
    where = ".".join(str(p) for p in first["loc"] if not str(p).startswith("function-")) or "top"
    got = json.dumps(first.get("input"), default=str)
    got = got if len(got) <= 40 else got[:37] + "..."
    more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"{where}: {first['msg'].lower()} (got {got}){more}"


def _dump(value: Any) -> JSON:
    if isinstance(value, (Record, Unavailable)):
        return value.to_json()
    if isinstance(value, Mapping):
        return {str(k): _dump(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_dump(v) for v in value]
    return value
