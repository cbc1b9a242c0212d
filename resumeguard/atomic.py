"""Atomic file replacement: readers see the old file or the new one, never half of one."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success it is renamed over ``path``, on error
    removed. Write and fsync it inside the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, fsynced."""
    with replacing(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_json(path: Path, value: Any) -> None:
    """Write ``value`` as indented JSON to ``path`` atomically."""
    write_bytes(path, (json.dumps(value, indent=2, default=str) + "\n").encode())


def copy(source: Path, target: Path) -> Path:
    """Copy ``source`` to ``target`` atomically; a no-op when both are the same file."""
    if target.exists() and os.path.samefile(source, target):
        return target
    with replacing(target) as tmp:
        shutil.copyfile(source, tmp)
    return target
