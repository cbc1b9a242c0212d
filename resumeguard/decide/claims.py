"""One resume at a time: an exclusive claim on a run, taken before its resume is decided and held
while the resuming process lives.

Checking the run's state and then writing it leaves a gap in which a second resume, started in
the same second, sees the run as idle too. The claim closes it: an ``flock`` on a file, which the
kernel gives to exactly one process and takes back when that process ends, ``kill -9`` included
(no stale claim to clean up). Where the file lives decides who is excluded:

- offline: ``resumeguard.lock`` in the run's oldest directory, the one directory every later
  resume of the id sees first (each ``wandb.init`` adds a newer one), so every process on every
  host that shares the run directory is excluded;
- online: a file per run in this user's cache, so only resumes on this host are excluded; across
  hosts the W&B run state and heartbeat (``run.live``) are what is left, and W&B offers no atomic
  claim through its API.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from resumeguard.errors import Unverifiable

CLAIM_FILE = "resumeguard.lock"
"""The claim's file name in an offline run's oldest directory."""

_held: dict[str, tuple[str, int]] = {}
"""Claim file (resolved) -> (run id, open descriptor holding the lock), for this process."""
_lock = threading.Lock()


def offline_claim_path(run_dir: str | Path) -> Path:
    """The claim file of an offline run, given its oldest directory."""
    return Path(run_dir) / CLAIM_FILE


def online_claim_path(run_path: str) -> Path:
    """The claim file of an online run (``ENTITY/PROJECT/ID``) on this host."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    name = hashlib.sha256(run_path.encode()).hexdigest()[:32]
    return cache / "resumeguard" / "claims" / f"{name}.lock"


def take(path: Path, run_id: str) -> bool:
    """Claim the run whose claim file is ``path``: True when this process holds it now (it may
    already have), False when another process does. Never blocks."""
    import fcntl

    key = _key(path)
    with _lock:
        if key in _held:
            return True
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, flags, 0o644)
        except OSError as e:
            raise _cannot(path, e) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        _held[key] = (run_id, fd)
        return True


def held_elsewhere(path: Path) -> bool:
    """True when another process holds the claim at ``path``; for checks that only look (the
    command line's ``check``) and must not take it. Creates nothing."""
    import fcntl

    with _lock:
        if _key(path) in _held:
            return False
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return False
    except OSError as e:
        raise _cannot(path, e) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the shared lock taken just to look
    return False


def release(run_id: str) -> None:
    """Give up this process's claims on run ``run_id`` (its run finished)."""
    with _lock:
        mine = [key for key, (owner, _) in _held.items() if owner == run_id]
        for key in mine:
            os.close(_held.pop(key)[1])


def _cannot(path: Path, error: OSError) -> Unverifiable:
    return Unverifiable(
        f"cannot tell whether another resume holds this run: {path}: {error.strerror or error}"
    )


def _key(path: Path) -> str:
    try:
        return str(path.resolve())
    except OSError:
        return str(path.absolute())
