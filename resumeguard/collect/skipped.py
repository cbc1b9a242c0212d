"""Cheap stamps for the files the code digest leaves out, so that none is skipped in silence.

A source or configuration file over the size limit, one that cannot be read, something that is
not a regular file, and a nested git repository (not a submodule) are not hashed into the code
fingerprint, but each still gets a stamp that changes when it does; ``code.skipped.<path>``
reports the change. Run output (logs, checkpoints) is never stamped: it changes by design.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from resumeguard.io import hashing

FULL_DIGEST_BYTES = 64 << 20
"""Files up to this size are digested whole (blake3 reads them in tens of milliseconds): an
edit anywhere shows, and a touch that changes nothing does not."""

SAMPLE_BYTES = 1 << 20
"""For larger files: this many bytes from the start and from the end are digested, with the
size and the modification time (a same-size edit in the middle shows by its time)."""


def stamps(root: Path, paths: Iterable[str]) -> dict[str, str]:
    """path -> stamp for each left-out path below ``root`` (vanished ones are left out)."""
    out: dict[str, str] = {}
    for rel in sorted(paths):
        value = stamp(root / rel)
        if value is not None:
            out[rel] = value
    return out


def stamp(path: Path) -> str | None:
    """A short text that changes when the file (or nested repository) at ``path`` does."""
    try:
        st = path.lstat()
    except OSError:
        return None
    if stat.S_ISDIR(st.st_mode):
        return _repo_stamp(path)
    if not stat.S_ISREG(st.st_mode):
        return f"{_kind(st.st_mode)} (not a regular file)"
    if not os.access(path, os.R_OK):
        return f"{st.st_size} bytes, modified {st.st_mtime_ns} (unreadable)"
    try:
        if st.st_size <= FULL_DIGEST_BYTES:
            return hashing.digest_file(path)[0]
        hasher = hashing.new_hasher()
        with open(path, "rb") as f:
            hasher.update(f.read(SAMPLE_BYTES))
            f.seek(max(st.st_size - SAMPLE_BYTES, SAMPLE_BYTES))
            hasher.update(f.read(SAMPLE_BYTES))
    except OSError:
        return f"{st.st_size} bytes, modified {st.st_mtime_ns} (unreadable)"
    return f"{st.st_size} bytes, modified {st.st_mtime_ns}, ends {hashing.finish(hasher)[:23]}"


def _repo_stamp(path: Path) -> str:
    """A nested repository's HEAD commit, and a digest of its uncommitted changes if any."""
    import git

    try:
        repo = git.Repo(path)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return "directory (not a readable git repository)"
    try:
        repo.git.update_environment(GIT_OPTIONAL_LOCKS="0")
        head = repo.head.commit.hexsha if repo.head.is_valid() else "no commits"
        status = repo.git.status("--porcelain=v1", "-z", "--untracked-files=all")
        if not status:
            return f"commit {head}"
        diff = repo.git.diff("HEAD", "--binary", "--no-ext-diff") if head != "no commits" else ""
        changes = hashing.digest_json([status, diff])
        return f"commit {head}, uncommitted changes {changes[:23]}"
    except git.GitCommandError as e:
        return f"git failed: {str(e.stderr).strip()[:60]}"
    finally:
        repo.close()


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISLNK, "symlink"),
        (stat.S_ISFIFO, "fifo"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    ):
        if test(mode):
            return name
    return "special file"
