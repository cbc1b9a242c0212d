"""Digests: blake3 over files, bytes and tensor memory. Every digest reads "blake3:<hex>"."""

from __future__ import annotations

import ctypes
import functools
import json
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import blake3

if TYPE_CHECKING:
    import torch

PREFIX = "blake3:"
CHUNK = 16 << 20
"""Bytes read at a time from a file: the only buffer a file digest needs."""


def new_hasher(*, alongside: bool = False) -> blake3.blake3:
    """A blake3 hasher that uses every core for large updates; one core when it runs
    ``alongside`` other work (torch writing or reading the same file), which a second hashing
    thread would only slow down (about 3.5 GiB/s on one core keeps ahead of either)."""
    return blake3.blake3(max_threads=1 if alongside else blake3.blake3.AUTO)


def finish(hasher: blake3.blake3) -> str:
    """The prefixed hex digest of ``hasher``."""
    return PREFIX + hasher.hexdigest()


def digest_bytes(data: bytes) -> str:
    """Digest of a byte string."""
    return PREFIX + blake3.blake3(data).hexdigest()


def digest_json(value: Any) -> str:
    """Digest of a JSON value in canonical form (sorted keys, no spaces)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return digest_bytes(text.encode())


def digest_file(path: str | Path) -> tuple[str, int]:
    """Digest and size in bytes of a file, read once in CHUNK-sized pieces."""
    with open(path, "rb") as f:
        return digest_fd(f.fileno())


def digest_fd(fd: int, *, alongside: bool = False) -> tuple[str, int]:
    """Digest and size of an open file from its start, read with ``pread`` (the file's own
    offset is left alone, so another reader can use it at the same time: say ``alongside``).

    On its own, one thread reads the next CHUNK while blake3 hashes the last one on every core
    (both release the GIL), so a file takes about the longer of its read and its hash. No
    memory map: a file truncated while it is read ends the digest early (its size then tells),
    where a map would kill the process with SIGBUS."""
    hasher = new_hasher(alongside=alongside)
    if alongside:
        buffer = memoryview(bytearray(CHUNK))
        offset = 0
        while n := pread_into(fd, buffer, offset):
            hasher.update(buffer[:n])
            offset += n
        return finish(hasher), offset
    from concurrent.futures import ThreadPoolExecutor

    buffers = [memoryview(bytearray(CHUNK)), memoryview(bytearray(CHUNK))]
    offset = 0
    with ThreadPoolExecutor(1, thread_name_prefix="resumeguard-read") as reader:
        pending = reader.submit(pread_into, fd, buffers[0], 0)
        turn = 0
        while n := pending.result():
            ready = buffers[turn][:n]
            offset += n
            turn ^= 1
            pending = reader.submit(pread_into, fd, buffers[turn], offset)
            hasher.update(ready)
    return finish(hasher), offset


def pread_into(fd: int, buffer: memoryview, offset: int) -> int:
    """Read into ``buffer`` at ``offset`` of ``fd`` without moving its offset; bytes read."""
    if hasattr(os, "preadv"):
        return os.preadv(fd, [buffer], offset)
    data = os.pread(fd, len(buffer), offset)  # no preadv here: one copy more
    buffer[: len(data)] = data
    return len(data)


_SYNC_FILE_RANGE_WRITE = 2


def start_writeback(fd: int, offset: int, nbytes: int) -> None:
    """Ask the kernel to start writing ``nbytes`` at ``offset`` of ``fd`` to the disk now, without
    waiting (Linux ``sync_file_range``), so that the final fsync finds little left to write; a
    no-op where that call does not exist. Durability still takes an fsync."""
    call = _sync_file_range()
    if call is not None:
        call(fd, offset, nbytes, _SYNC_FILE_RANGE_WRITE)


@functools.cache
def _sync_file_range() -> Any:
    """libc's ``sync_file_range``, None where there is none."""
    try:
        call = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (AttributeError, OSError, TypeError):
        return None
    call.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    return call


class HashingWriter:
    """A binary file for ``torch.save`` that digests the bytes as they are written: a second
    thread reads each piece back from the page cache right after it is written (one buffer of
    CHUNK bytes), so hashing overlaps the writing and the fsync, and the writer never waits for
    it. Each piece hashed is sent on to the disk at once, so the final fsync has little left.
    ``raw`` must be unbuffered and readable (``open(path, "w+b", buffering=0)``)."""

    def __init__(self, raw: BinaryIO, after_write: Callable[[int], None] | None = None) -> None:
        self._raw = raw
        self._fd = raw.fileno()
        self._after_write = after_write
        self._cond = threading.Condition()
        self._closed = False
        self._hashed: tuple[str, int] | None = None
        self._failure: BaseException | None = None
        self.size = 0
        """Bytes written so far."""
        self.error: OSError | None = None
        """The write error, if one came (torch may re-raise it as another type)."""
        self._thread = threading.Thread(target=self._follow, name="resumeguard-hash", daemon=True)
        self._thread.start()

    def write(self, data: Any) -> int:
        """Write ``data`` (bytes or a buffer torch hands over) in full."""
        view = memoryview(data).cast("B")
        done = 0
        try:
            while done < view.nbytes:
                done += self._raw.write(view[done:]) or 0
        except OSError as e:
            self.error = e
            raise
        with self._cond:
            self.size += done
            self._cond.notify()
        if self._after_write is not None:
            self._after_write(self.size)
        return done

    def flush(self) -> None:
        """Nothing is buffered here; kept for torch."""

    def _follow(self) -> None:
        """Digest the file's bytes as far as they are written, until the writer is done."""
        hasher = new_hasher(alongside=True)
        buffer = memoryview(bytearray(CHUNK))
        offset = 0
        try:
            while True:
                with self._cond:
                    while self.size == offset and not self._closed:
                        self._cond.wait()
                    end, closed = self.size, self._closed
                while offset < end:
                    n = pread_into(self._fd, buffer[: min(CHUNK, end - offset)], offset)
                    if n <= 0:
                        raise OSError(f"file ended at {offset} of {end} bytes written")
                    hasher.update(buffer[:n])
                    start_writeback(self._fd, offset, n)  # hashed: on its way to the disk
                    offset += n
                if closed and offset == self.size:
                    self._hashed = (finish(hasher), offset)
                    return
        except BaseException as e:  # reported by digest()
            self._failure = e

    def digest(self) -> str:
        """The digest of everything written (waits for the reading thread to catch up)."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()
        if self._hashed is None:
            raise OSError(f"could not digest the bytes written: {self._failure}")
        return self._hashed[0]


# --- Tensors ------------------------------------------------------------------------------------

TENSOR_CHUNK = 64 << 20
"""Bytes copied at a time from a non-CPU or non-contiguous tensor, so memory never doubles."""


def digest_tensors(items: Iterable[tuple[str, torch.Tensor]]) -> str:
    """Digest of named tensors (names, dtypes, shapes, bytes), streamed without copying CPU memory.

    Each tensor contributes a length-prefixed header (name, dtype, shape, byte count) before its
    bytes, so renaming, reordering, reshaping or retyping changes the digest even when the bytes
    do not. Equal content gives an equal digest whatever the device or memory layout.
    """
    hasher = new_hasher()
    for name, tensor in items:
        t = _plain(tensor)
        nbytes = t.numel() * t.element_size()
        fields: list[Any] = [name, _dtype_name(t), list(t.shape), nbytes]
        storage = _overlapping_storage(t)
        if storage is not None:
            # An expanded (stride-0) or otherwise self-overlapping view names far more elements
            # than its memory holds: digest that memory and how the view reads it, so the work
            # is proportional to the storage, not the view (a 10**12-element expand is 4 bytes).
            fields += ["storage", list(t.stride()), t.storage_offset()]
        header = json.dumps(fields, separators=(",", ":")).encode()
        hasher.update(len(header).to_bytes(8, "little"))
        hasher.update(header)
        for chunk in _byte_chunks(storage if storage is not None else t):
            hasher.update(chunk)
    return finish(hasher)


def _overlapping_storage(t: torch.Tensor) -> torch.Tensor | None:
    """The whole storage of ``t`` as bytes when ``t`` reads more elements than it holds."""
    import torch

    try:
        storage = t.untyped_storage()
    except (RuntimeError, NotImplementedError):  # no plain storage (e.g. a tensor subclass)
        return None
    if t.numel() * t.element_size() <= storage.nbytes():
        return None
    empty = torch.empty(0, dtype=torch.uint8, device=t.device)
    return empty.set_(storage, 0, (storage.nbytes(),), (1,))


def _dtype_name(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def _plain(t: torch.Tensor) -> torch.Tensor:
    """A dense, strided tensor with the same values (the conj/neg bits and sparsity resolved)."""
    import torch

    if type(t).__name__ == "DTensor":
        # A sharded DTensor: this rank holds (and can digest) only its local shard.
        t = t.to_local()  # type: ignore[attr-defined]
    if t.is_meta:
        raise ValueError("cannot digest a tensor on the meta device: it holds no data")
    if t.layout != torch.strided:
        t = t.to_dense()
    # The conj and neg bits are lazy views: the memory holds the unconjugated values.
    if t.is_conj():
        t = t.resolve_conj()
    if t.is_neg():
        t = t.resolve_neg()
    return t.detach()


def _byte_chunks(t: torch.Tensor) -> Iterator[memoryview]:
    """The tensor's bytes in row-major order; zero-copy for contiguous CPU tensors."""
    if t.numel() == 0:
        return
    if not t.is_contiguous():
        # Row blocks of about TENSOR_CHUNK bytes: each block's contiguous copy is bounded,
        # and concatenated row-major blocks are exactly the bytes of ``t.contiguous()``.
        rows = t.shape[0]
        row_bytes = max(1, t[0].numel() * t.element_size())
        step = max(1, TENSOR_CHUNK // row_bytes)
        for start in range(0, rows, step):
            yield from _byte_chunks(t[start : start + step].contiguous())
        return
    nbytes = t.numel() * t.element_size()
    if t.device.type == "cpu":
        # A view straight onto the tensor's memory; ``t`` stays referenced (alive) while the
        # caller consumes the view, since this generator frame holds it.
        buffer = (ctypes.c_char * nbytes).from_address(t.data_ptr())
        yield memoryview(buffer).cast("B")
        return
    yield from _staged_chunks(t)


def _staged_chunks(t: torch.Tensor) -> Iterator[memoryview]:
    """A contiguous tensor's bytes copied to the CPU through one reused TENSOR_CHUNK buffer.

    Each view is valid only until the next one is produced: the buffer is overwritten.
    """
    import torch

    flat = t.reshape(-1).view(torch.uint8)
    nbytes = flat.numel()
    staging = torch.empty(min(nbytes, TENSOR_CHUNK), dtype=torch.uint8)
    for start in range(0, nbytes, TENSOR_CHUNK):
        n = min(TENSOR_CHUNK, nbytes - start)
        staging[:n].copy_(flat[start : start + n])
        yield from _byte_chunks(staging[:n])
