"""Sharded checkpoints (``torch.distributed.checkpoint``): DCP's own filesystem writer and
reader, with their file system swapped for one that digests every file as it is written, and
one that verifies every file against the record before DCP reads a byte of it.

DCP writes one or more files per rank plus ``.metadata`` (a pickle, written by the
coordinator). The record lists them all (:class:`~resumeguard.records.run.DirFile`): a
``.metadata`` that is not the recorded one is never unpickled, and a data file is read in full
and digested before DCP deserialises any slice of it.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from torch.distributed.checkpoint.filesystem import FileSystem

from resumeguard.checkpoint.dirfiles import METADATA, file_problem
from resumeguard.errors import CheckpointError
from resumeguard.io.hashing import CHUNK, finish, new_hasher, start_writeback
from resumeguard.records.run import DirFile


class _DigestingStream(io.RawIOBase):
    """A file DCP writes into, digested as it is written: each piece torch hands over is
    hashed on its way to the file (on this thread: blake3 on one core keeps ahead of a disk,
    where a second thread reading the pages back would compete with the other ranks), and
    every CHUNK written is sent on to the disk at once, so DCP's fsync has little left."""

    def __init__(self, path: Path, written: dict[str, tuple[str, int]]) -> None:
        super().__init__()
        self._path = path
        self._file = open(path, "wb")  # noqa: SIM115 -- closed in close()
        self._hasher = new_hasher(alongside=True)
        self._size = 0
        self._sent = 0
        self._written = written

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self._file.write(view)
        self._hasher.update(view)
        self._size += view.nbytes
        if self._size - self._sent >= CHUNK:
            self._file.flush()
            start_writeback(self._file.fileno(), self._sent, self._size - self._sent)
            self._sent = self._size
        return view.nbytes

    def tell(self) -> int:
        return self._size

    def flush(self) -> None:
        if not self._file.closed:  # io's close() flushes once more after ours
            self._file.flush()

    def fileno(self) -> int:
        return self._file.fileno()

    def close(self) -> None:
        if self.closed:
            return
        try:
            self._file.close()
            self._written[str(self._path)] = (finish(self._hasher), self._size)
        finally:
            super().close()


class DigestingFileSystem(FileSystem):
    """DCP's local file system, keeping the digest and size of every file written through it
    (by path, after renames: DCP writes ``.metadata.tmp`` and renames it)."""

    def __init__(self) -> None:
        super().__init__()
        self.written: dict[str, tuple[str, int]] = {}

    @contextlib.contextmanager
    def create_stream(self, path: str | os.PathLike[str], mode: str) -> Iterator[Any]:
        if "w" not in mode:
            with super().create_stream(path, mode) as stream:
                yield stream
            return
        stream = _DigestingStream(Path(path), self.written)
        try:
            yield stream
        finally:
            stream.close()

    def rename(self, path: str | os.PathLike[str], new_path: str | os.PathLike[str]) -> None:
        super().rename(path, new_path)
        if str(path) in self.written:
            self.written[str(new_path)] = self.written.pop(str(path))


class VerifyingFileSystem(FileSystem):
    """DCP's local file system that opens a file for reading only once its bytes match the
    record: a file the record does not list, or one that differs, raises CheckpointError
    before DCP reads it. Each file is verified once per load."""

    def __init__(self, root: Path, files: Sequence[DirFile], label: str) -> None:
        super().__init__()
        self._root = root.resolve()
        self._files = {f.name: f for f in files}
        self._label = label
        self._verified: set[str] = set()

    @contextlib.contextmanager
    def create_stream(self, path: str | os.PathLike[str], mode: str) -> Iterator[Any]:
        if "r" in mode and "+" not in mode:
            self.verify(Path(path))
        with super().create_stream(path, mode) as stream:
            yield stream

    def verify(self, path: Path) -> None:
        """CheckpointError unless ``path`` is a recorded file of the directory, as recorded."""
        try:
            name = path.resolve().relative_to(self._root).as_posix()
        except ValueError:
            name = path.as_posix()
        if name in self._verified:
            return
        expected = self._files.get(name)
        if expected is None:
            raise CheckpointError(
                f"checkpoint {self._label}: {name} is not a file its record lists; not read"
            )
        problem = file_problem(path, expected)
        if problem:
            raise CheckpointError(f"checkpoint {self._label}: {problem}; nothing was loaded")
        self._verified.add(name)


def verified_metadata(root: Path, files: Sequence[DirFile], label: str) -> Any:
    """DCP's metadata of the checkpoint in ``root``, unpickled only once its bytes match the
    record (CheckpointError otherwise, and when the record lists none)."""
    expected = next((f for f in files if f.name == METADATA), None)
    if expected is None:
        raise CheckpointError(f"checkpoint {label}: its record lists no {METADATA}; not read")
    data = (root / METADATA).read_bytes() if (root / METADATA).is_file() else None
    from resumeguard.io.hashing import digest_bytes

    if data is None or len(data) != expected.size or digest_bytes(data) != expected.digest:
        problem = file_problem(root / METADATA, expected) or f"{METADATA} changed"
        raise CheckpointError(f"checkpoint {label}: {problem}; nothing was loaded")
    return pickle.loads(data)


def fit_problems(metadata: Any, state_dict: Mapping[str, Any], label: str) -> list[Any]:
    """How the tensors of ``state_dict`` (what DCP would load into) differ from the saved ones
    in ``metadata``: a tensor the checkpoint lacks, or one of another shape or dtype (DCP would
    fail on the first only after reading, and would convert the dtype silently)."""
    import torch
    from torch.distributed.checkpoint._nested_dict import flatten_state_dict
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata
    from torch.distributed.checkpoint.stateful import Stateful

    from resumeguard.verdict.fit import FitProblem

    plain = {k: v.state_dict() if isinstance(v, Stateful) else v for k, v in state_dict.items()}
    flat, _ = flatten_state_dict(plain)
    saved_all = metadata.state_dict_metadata
    problems = []
    hint = (
        "build the model and optimizer as they were when the checkpoint was saved, or load "
        "another checkpoint"
    )
    for key, value in flat.items():
        if not isinstance(value, torch.Tensor):
            continue
        path = f"checkpoint.{label}.tensors.{key}"
        shape, dtype = list(value.shape), str(value.dtype).removeprefix("torch.")
        saved = saved_all.get(key)
        if not isinstance(saved, TensorStorageMetadata):
            message = f"the checkpoint holds no tensor {key}"
            problems.append(FitProblem(path, None, [shape, dtype], message, hint))
            continue
        was = [list(saved.size), str(saved.properties.dtype).removeprefix("torch.")]
        if was != [shape, dtype]:
            message = f"{key} was saved as {was[1]}{was[0]}, the state dict holds {dtype}{shape}"
            problems.append(FitProblem(path, was, [shape, dtype], message, hint))
    return problems
