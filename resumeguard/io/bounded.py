"""Reading files resumeguard did not write itself (run records, sidecars, state files, policy
files, fingerprints, W&B's YAML) in bounded time and memory.

A run directory may have been edited, damaged or planted by someone else: a record may be a
FIFO (an ordinary ``open`` would wait forever), a link to ``/dev/zero`` (an ordinary ``read``
would never end), gigabytes of JSON, ten thousand nested arrays, ``1e999`` or a YAML alias bomb.
Every reader here refuses those with a :class:`ValueError` saying what is wrong, which the
callers turn into one line of bad input.
"""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from typing import Any

MAX_FILE_BYTES = 16 << 20
"""The largest JSON, TOML or YAML file read (a run record with 1000 packages is ~100 KiB)."""
MAX_DEPTH = 100
"""The deepest nesting accepted (user configs nest a handful of levels)."""
MAX_NODES = 1_000_000
"""The most values one document may expand to (YAML aliases counted once per use)."""
MAX_ALIASES = 100
"""The most YAML aliases one document may use."""
MAX_INT = 2**63
"""Integers must lie in (-MAX_INT, MAX_INT): what any JSON reader can hold."""


def read_bytes(path: str | Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of the regular file at ``path`` (symlinks followed), at most ``limit`` of them.

    Never blocks on a FIFO and never reads a device: OSError when absent or unreadable,
    ValueError when not a regular file or larger than ``limit``."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("not a regular file")
        if st.st_size > limit:
            raise ValueError(f"larger than {limit} bytes ({st.st_size})")
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > limit:
        raise ValueError(f"larger than {limit} bytes (it grew while being read)")
    return b"".join(chunks)


def read_text(path: str | Path, limit: int = MAX_FILE_BYTES) -> str:
    """:func:`read_bytes` decoded as UTF-8; ValueError when it is not UTF-8."""
    data = read_bytes(path, limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"not UTF-8 text (byte {e.start})") from None


def loads_json(text: str | bytes) -> Any:
    """Parse JSON strictly: no NaN or Infinity, numbers in range, bounded nesting and size."""
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"not valid JSON (line {e.lineno}: {e.msg})") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"not UTF-8 text (byte {e.start})") from None
    check_tree(value)
    return value


def read_json(path: str | Path, limit: int = MAX_FILE_BYTES) -> Any:
    """The JSON document at ``path``, read and parsed within the bounds above."""
    return loads_json(read_text(path, limit))


def read_yaml(path: str | Path, limit: int = MAX_FILE_BYTES) -> Any:
    """A YAML document read with a safe loader (no Python objects) that bounds aliases."""
    import yaml

    class Loader(yaml.SafeLoader):  # type: ignore[misc]
        aliases = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                self.aliases += 1
                if self.aliases > MAX_ALIASES:
                    raise ValueError(f"more than {MAX_ALIASES} YAML aliases")
            return super().compose_node(parent, index)

    try:
        value = yaml.load(read_text(path, limit), Loader=Loader)  # a SafeLoader subclass
    except RecursionError:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels") from None
    except yaml.YAMLError as e:
        raise ValueError(f"not valid YAML ({str(e).splitlines()[0]})") from None
    check_tree(value)
    return value


def check_tree(value: Any) -> None:
    """ValueError naming the place when a parsed document nests deeper than MAX_DEPTH, expands to
    more than MAX_NODES values, or holds a number out of range. Iterative: no recursion."""
    stack: list[tuple[Any, int, str]] = [(value, 0, "")]
    nodes = 0
    while stack:
        item, depth, where = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise ValueError(f"more than {MAX_NODES} values")
        if depth > MAX_DEPTH:
            raise ValueError(f"{where or 'top'}: nested deeper than {MAX_DEPTH} levels")
        if isinstance(item, dict):
            stack.extend((v, depth + 1, f"{where}.{k}".lstrip(".")) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((v, depth + 1, f"{where}[{i}]") for i, v in enumerate(item))
        elif isinstance(item, bool) or item is None or isinstance(item, str):
            continue
        elif isinstance(item, int):
            if not -MAX_INT < item < MAX_INT:
                raise ValueError(f"{where or 'top'}: integer out of range")
        elif isinstance(item, float) and not math.isfinite(item):
            raise ValueError(f"{where or 'top'}: not a finite number")


def _no_constant(name: str) -> Any:
    raise ValueError(f"not valid JSON ({name} is not a number JSON allows)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"not valid JSON (number {text[:20]} is out of range)")
    return value
