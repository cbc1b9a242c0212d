"""Atomic file writes and copies: readers see the old file or the new one, never half of one.

Every file resumeguard writes goes through :class:`Staged`: a temp file beside the target,
locked by its writer until it is renamed over the target or removed. A writer killed midway
leaves its temp file behind unlocked; the next write beside that target removes it. A full disk
is a :class:`~resumeguard.errors.DiskFull` naming the device, and the target is left as it was.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import stat
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from resumeguard.errors import DiskFull

TMP_SUFFIX = ".resumeguard-tmp"
"""Suffix of every temp file resumeguard writes (``.<target name>.<random>.resumeguard-tmp``)."""
FICLONE = 0x40049409
"""Linux ioctl: make the destination share the source's extents (copy-on-write, a reflink)."""
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class Staged:
    """A temp file beside ``target``, locked by this process until :meth:`commit` renames it
    over the target or :meth:`discard` removes it."""

    def __init__(self, target: Path) -> None:
        self.target = target
        target.parent.mkdir(parents=True, exist_ok=True)
        reclaim(target)
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=TMP_SUFFIX)
        self.tmp = Path(name)
        self._lock: int | None = fd
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.fchmod(fd, new_file_mode(target))  # mkstemp makes 0600; a plain open() would not

    def commit(self, to: Path | None = None, *, remove_old: bool = True) -> Path | None:
        """Rename the temp file over the target (or ``to``, on the same filesystem, when the
        name is known only once the bytes are) and make the rename durable.

        A large file it replaces is removed on a background thread; with ``remove_old=False``
        its second name is returned instead, for the caller to pass to :func:`remove_later`
        once its own writes are durable (see there)."""
        target = to or self.target
        target.parent.mkdir(parents=True, exist_ok=True)
        old = _set_aside(target)
        os.replace(self.tmp, target)
        fsync_dir(target.parent)
        self._unlock()
        if old is not None and remove_old:
            remove_later(old)
            return None
        return old

    def discard(self) -> None:
        """Remove the temp file (the target stays as it was)."""
        self.tmp.unlink(missing_ok=True)
        self._unlock()

    def _unlock(self) -> None:
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def __enter__(self) -> Staged:
        return self

    def __exit__(self, kind: object, error: object, tb: object) -> None:
        if self._lock is not None:
            self.discard()


def remove_later(path: Path) -> None:
    """Unlink ``path`` on a background thread. Freeing a large file's blocks takes a while, and
    on a filesystem that discards freed blocks the next journal commit (any small fsync) waits
    for it: neither belongs on a save's path. A kill before it runs leaves a temp-suffixed name
    that the next write beside the file reclaims."""
    # Not a daemon: the interpreter waits for it at exit, so nothing is left behind.
    threading.Thread(target=path.unlink, kwargs={"missing_ok": True}).start()


SET_ASIDE_BYTES = 64 << 20
"""Replaced files at least this large are removed on a background thread."""


def _set_aside(target: Path) -> Path | None:
    """A second, reclaimable name for a large file about to be replaced (so the rename does not
    wait for its blocks to be freed); None for small files or where links are not possible."""
    try:
        st = os.lstat(target)
        if not stat.S_ISREG(st.st_mode) or st.st_size < SET_ASIDE_BYTES or st.st_nlink != 1:
            return None
        aside = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.old{TMP_SUFFIX}")
        os.link(target, aside)
    except OSError:
        return None
    return aside


def reclaim(target: Path) -> None:
    """Remove temp files of writes to ``target`` whose writer is gone (no one holds the lock)."""
    for tmp in target.parent.glob(f".{_glob_escape(target.name)}.*{TMP_SUFFIX}"):
        try:
            fd = os.open(tmp, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # a live writer holds it
        else:
            tmp.unlink(missing_ok=True)
        finally:
            os.close(fd)


def _glob_escape(name: str) -> str:
    import glob

    return glob.escape(name)


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success it is renamed over ``path``, on error
    removed. Write and fsync it inside the block; a full disk raises DiskFull."""
    with Staged(path) as staged, no_space_is_disk_full(path, staged.tmp):
        yield staged.tmp
        staged.commit()


@contextmanager
def no_space_is_disk_full(
    path: Path, partial: Path | None = None, nbytes: int = 0
) -> Iterator[None]:
    """Turn ENOSPC/EDQUOT raised inside the block into DiskFull for ``path``; the size given is
    ``nbytes``, else what ``partial`` reached."""
    try:
        yield
    except OSError as e:
        if isinstance(e, DiskFull) or e.errno not in _NO_SPACE:
            raise
        if not nbytes and partial is not None:
            with contextlib.suppress(OSError):
                nbytes = partial.stat().st_size
        raise disk_full(path, nbytes) from e


def disk_full(path: Path, nbytes: int) -> DiskFull:
    """The DiskFull error for writing ``nbytes`` to ``path``."""
    return DiskFull(device_of(path.parent), path, nbytes)


def device_of(path: Path) -> str:
    """ "MOUNT POINT (SOURCE)" of the filesystem holding ``path`` (as /proc/self/mountinfo says)."""
    try:
        dev = os.stat(path).st_dev
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return str(path)
    for line in lines:
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        major, _, minor = fields[2].partition(":")
        if os.makedev(int(major), int(minor)) == dev:
            source = line.split(" - ", 1)[1].split()
            where = fields[4].encode().decode("unicode_escape")
            return f"{where} ({source[1] if len(source) > 1 else source[0]})"
    return str(path)


def new_file_mode(target: Path) -> int:
    """The mode a plain ``open(target, "wb")`` would leave: the existing file's, else 0666 less
    the umask."""
    try:
        return os.stat(target).st_mode & 0o7777
    except OSError:
        return 0o666 & ~_umask()


def _umask() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # no /proc: read it the only other way (and put it back)
    os.umask(mask)
    return mask


def fsync_dir(directory: Path) -> None:
    """Make a rename inside ``directory`` durable."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the rename is still atomic
    finally:
        os.close(fd)


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, fsynced."""
    with replacing(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_json(path: Path, value: Any) -> None:
    """Write ``value`` as indented JSON to ``path`` atomically."""
    write_bytes(path, (json.dumps(value, indent=2, default=str) + "\n").encode())


def clone_or_copy(source: Path, dest: Path, *, clone_only: bool = False) -> str | None:
    """Fill ``dest`` (a new, empty file) with ``source``'s bytes, fsynced: a reflink where the
    filesystem offers one (shares no storage an in-place rewrite of ``source`` could change),
    else a real copy in the kernel. Returns "reflink" or "copy"; None when ``clone_only`` and
    no reflink could be made (``dest`` is then left empty)."""
    size = source.stat().st_size
    with (
        open(source, "rb") as src,
        open(dest, "r+b") as dst,
        no_space_is_disk_full(dest, None, size),
    ):
        try:
            fcntl.ioctl(dst.fileno(), FICLONE, src.fileno())
            how = "reflink"
        except OSError:
            if clone_only:
                return None
            _copy_range(src.fileno(), dst.fileno(), size)
            how = "copy"
        os.fsync(dst.fileno())
    return how


def _copy_range(src: int, dst: int, size: int) -> None:
    """Copy ``size`` bytes in the kernel (no user-space buffer); shutil's copy where it can't."""
    done = 0
    try:
        if not hasattr(os, "copy_file_range"):
            raise OSError(errno.ENOSYS, "no copy_file_range here")
        while done < size:
            n = os.copy_file_range(src, dst, size - done)
            if n == 0:
                break
            done += n
    except OSError as e:
        if e.errno in _NO_SPACE:
            raise
        os.lseek(src, done, os.SEEK_SET)
        os.lseek(dst, done, os.SEEK_SET)
        with open(src, "rb", closefd=False) as s, open(dst, "wb", closefd=False) as d:
            shutil.copyfileobj(s, d, 8 << 20)


def copy(source: Path, target: Path) -> Path:
    """Copy ``source`` to ``target`` atomically (a reflink where possible); a no-op when both
    are the same file."""
    if target.exists() and os.path.samefile(source, target):
        return target
    with replacing(target) as tmp:
        clone_or_copy(source, tmp)
    return target
