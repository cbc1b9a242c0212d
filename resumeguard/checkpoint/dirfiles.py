"""The files of a checkpoint directory against their record: what is wrong with each, the
listing a save records, and what a check from outside can and cannot reach. No torch here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from resumeguard.io.hashing import digest_file, digest_json
from resumeguard.records.run import CheckpointRecord, DirFile

METADATA = ".metadata"
"""The name of DCP's metadata file in a checkpoint directory."""


def file_problem(path: Path, expected: DirFile, *, digest: bool = True) -> str:
    """What is wrong with ``path`` against its record ("" when nothing): missing, another
    size, other bytes (``digest``: read in full; else only its size is compared)."""
    try:
        size = path.stat().st_size
    except OSError:
        return f"{expected.name} (written by rank {expected.rank}) is missing"
    if size != expected.size:
        return (
            f"{expected.name} (written by rank {expected.rank}) has {size} bytes, "
            f"{expected.size} recorded (truncated or replaced)"
        )
    if digest:
        found, _ = digest_file(path)
        if found != expected.digest:
            return (
                f"{expected.name} (written by rank {expected.rank}) does not match its record "
                f"(digest {found[:19]}..., recorded {expected.digest[:19]}...)"
            )
    return ""


def listing(
    root: Path, written: Sequence[tuple[int, Mapping[str, Sequence[Any]]]]
) -> list[DirFile]:
    """Every file the ranks wrote below ``root``, in name order, from each rank's
    ``{path: (digest, size)}``."""
    base = root.resolve()
    files = {}
    for rank, paths in written:
        for path, (digest, size) in paths.items():
            name = Path(path).resolve().relative_to(base).as_posix()
            files[name] = DirFile(name=name, digest=str(digest), size=int(size), rank=rank)
    return [files[n] for n in sorted(files)]


def listing_digest(files: Sequence[DirFile]) -> str:
    """The digest of a listing: what a save's history keeps of it."""
    return digest_json([f.to_json() for f in files])


def reachable(checkpoint: CheckpointRecord) -> tuple[list[tuple[Path, DirFile]], list[DirFile]]:
    """The files of a directory checkpoint this machine can reach, and those it cannot (not
    here: on another node's disk, or gone; the load refuses what is gone)."""
    root = Path(checkpoint.source)
    here, elsewhere = [], []
    for f in checkpoint.files:
        path = root / f.name
        if checkpoint.source and path.exists():
            here.append((path, f))
        else:
            elsewhere.append(f)
    return here, elsewhere
