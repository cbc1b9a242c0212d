"""A checkpoint's bytes: written once while they are digested, read once while they are
verified, and the named points where a test may kill a save."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import stat
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, BinaryIO, TypeVar, cast

from resumeguard.errors import CheckpointError
from resumeguard.io.atomic import Staged, no_space_is_disk_full
from resumeguard.io.hashing import HashingWriter, digest_fd
from resumeguard.records.run import CheckpointRecord

T = TypeVar("T")

CRASH_ENV = "RESUMEGUARD_CRASH_AT"
"""Test hook: the named point of ``save_checkpoint`` at which the process kills itself."""
CRASH_POINTS = ("write", "written", "copied", "pending", "replaced", "published", "retired")
"""In order: mid-write; temp file complete; run's copy made; the save recorded as under way;
the user's file replaced; the record published; the previous copy retired."""


def crash_point(name: str) -> None:
    """Die here, as ``kill -9`` would, when ``RESUMEGUARD_CRASH_AT`` names this point."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


@dataclasses.dataclass
class Written:
    """A checkpoint written to its temp file (fsynced, not yet in place) and its digest."""

    staged: Staged
    """The temp file beside the target; ``commit()`` puts it in place."""
    digest: str
    """blake3 of the bytes written."""
    size: int
    """Bytes written."""


def write_staged(state: Any, path: Path) -> Written:
    """``torch.save`` ``state`` into a temp file beside ``path`` through a hashing writer, and
    fsync it; ``path`` itself is untouched until the caller commits. DiskFull on a full disk."""
    import torch

    _release_cache(path)
    staged = Staged(path)
    try:
        with no_space_is_disk_full(path, staged.tmp), open(staged.tmp, "w+b", buffering=0) as f:
            writer = HashingWriter(f, after_write=_mid_write)
            try:
                torch.save(state, cast("IO[bytes]", writer))  # a file as torch wants one
            except Exception as e:
                with contextlib.suppress(OSError):
                    writer.digest()  # ends its reading thread
                if writer.error is not None and writer.error is not e:
                    raise writer.error from e
                raise
            os.fsync(f.fileno())  # the digest catches up meanwhile
            digest = writer.digest()
        return Written(staged, digest, writer.size)
    except BaseException:
        staged.discard()
        raise


def _release_cache(path: Path) -> None:
    """Drop the page cache of the file about to be replaced, as a plain ``torch.save`` to the
    same path frees it by truncating: the new bytes then need no memory to be reclaimed first.
    Only clean pages go; the file itself is untouched and stays readable."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    except (OSError, AttributeError):
        pass
    finally:
        os.close(fd)


def _mid_write(written: int) -> None:
    if written >= 4096:
        crash_point("write")


def verify_file(path: Path, checkpoint: CheckpointRecord, *, name: str) -> None:
    """Raise CheckpointError unless ``path`` holds exactly the recorded bytes (one read)."""
    read_verified(path, checkpoint, name=name, load=None)


def read_verified(
    path: Path,
    checkpoint: CheckpointRecord,
    *,
    name: str,
    load: Callable[[BinaryIO], T] | None,
) -> T | None:
    """Check ``path``'s size, then digest it on a second thread while ``load`` reads the same
    open file (so the bytes come off the disk once); the result only when the digest matches
    the record and the file did not change meanwhile. CheckpointError otherwise."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below, after both readers are done
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {name} is missing: {path} does not exist") from None
    except OSError as e:
        raise CheckpointError(f"checkpoint {name} cannot be read: {e}") from e
    with f, ThreadPoolExecutor(1, thread_name_prefix="resumeguard-verify") as pool:
        before = os.fstat(f.fileno())
        _check_size(before.st_size, checkpoint, name)
        digesting = pool.submit(digest_fd, f.fileno(), alongside=load is not None)
        result: T | None = None
        failure: BaseException | None = None
        if load is not None:
            try:
                result = load(f)
            except BaseException as e:  # judged after the digest: damage explains a failed load
                failure = e
        digest, size = digesting.result()
        after = os.fstat(f.fileno())
    if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
        raise CheckpointError(f"checkpoint {name} changed while it was read ({path}); try again")
    _check_size(size, checkpoint, name)
    if digest != checkpoint.digest:
        raise CheckpointError(
            f"checkpoint {name} does not match its record (digest {digest[:19]}..., recorded "
            f"{checkpoint.digest[:19]}...): it was changed or corrupted after it was saved; "
            "nothing was loaded"
        )
    if failure is not None:
        raise failure
    return result


def _check_size(size: int, checkpoint: CheckpointRecord, name: str) -> None:
    if size != checkpoint.size:
        what = "truncated" if size < checkpoint.size else "longer than recorded"
        raise CheckpointError(
            f"checkpoint {name} is {what}: {size} of {checkpoint.size} bytes; nothing was loaded "
            "(restore an intact copy, or save a new checkpoint)"
        )


def load_weights(f: BinaryIO, *, name: str, map_location: Any = "cpu") -> Any:
    """``torch.load`` with ``weights_only=True``; arbitrary pickled objects are refused."""
    import pickle

    import torch

    try:
        return torch.load(f, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"refusing to load checkpoint {name}: it holds pickled objects other than tensors "
            f"and plain containers ({str(e).splitlines()[0][:160]}); save plain state dicts"
        ) from e
    except (RuntimeError, EOFError, ValueError) as e:
        raise CheckpointError(f"checkpoint {name} cannot be read by torch: {e}") from e


def load_verified(path: Path, *, name: str, map_location: Any = "cpu") -> Any:
    """Load ``path`` weights-only after checking its archive's directory (bounded work on a
    hostile file); the digest is the caller's: see :func:`read_verified`."""
    from resumeguard.io.archive import check_archive

    check_archive(path, name=name)
    with open(path, "rb") as f:
        return load_weights(f, name=name, map_location=map_location)
