"""The run's copies of checkpoint files: made as the storage option says (a reflink where the
filesystem offers one, else a real copy, else none), retired when no record needs them."""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from resumeguard.checkpoint.storage import Storage
from resumeguard.io.atomic import Staged, clone_or_copy
from resumeguard.io.hashing import digest_file
from resumeguard.records.run import CHECKPOINT_DIR, CheckpointRecord, RunRecord, run_copy_name
from resumeguard.stores.layout import LOCAL_COPIES, save_run_file

log = logging.getLogger("resumeguard")
_told: set[str] = set()


def copy_root(run: Any, *, local: bool) -> Path:
    """The folder a run's copies are named relative to: its files (uploaded) or beside them."""
    files = Path(run.dir)
    return files.parent / LOCAL_COPIES if local else files


def copy_path(run: Any, checkpoint: CheckpointRecord) -> Path:
    """Where the live run keeps ``checkpoint``'s copy."""
    return copy_root(run, local=checkpoint.local) / checkpoint.file


def find_copy(run: Any, checkpoint: CheckpointRecord) -> Path | None:
    """``checkpoint``'s copy on this machine: in the live run's directory, else in an earlier
    directory of the same run id beside it (each resume of a run gets a new one)."""
    here = copy_path(run, checkpoint)
    if here.is_file():
        return here
    own = Path(run.dir).parent
    folder = LOCAL_COPIES if checkpoint.local else "files"
    with contextlib.suppress(OSError):
        for directory in sorted(own.parent.glob(f"*-{glob.escape(str(run.id))}"), reverse=True):
            path = directory / folder / checkpoint.file
            if path.is_file():
                return path
    return None


def keep_copy(
    run: Any, source: Path, name: str, checkpoint: CheckpointRecord, storage: Storage
) -> CheckpointRecord:
    """``checkpoint`` with the run's copy of ``source`` (whose bytes it records) made as
    ``storage`` says; unchanged (no copy kept) for ``digest``, or for ``auto`` where the
    filesystem makes no reflink."""
    if storage.copies == "digest" or not source.is_file():
        return checkpoint  # nothing to copy, or another node's local disk: verified by its rank
    tag = checkpoint.digest.removeprefix("blake3:")[:16]
    rel = run_copy_name(name, checkpoint.rank, tag)
    dest = copy_root(run, local=not storage.upload) / rel
    if not (dest.is_file() and dest.stat().st_size == checkpoint.size):
        with Staged(dest) as staged:
            how = clone_or_copy(source, staged.tmp, clone_only=storage.copies == "auto")
            if how is None:
                _say_no_copy(run, Path(checkpoint.source or name))
                return checkpoint
            staged.commit()
    if storage.upload:
        save_run_file(run, dest)
    return dataclasses.replace(checkpoint, file=rel, local=not storage.upload)


def copy_and_digest(
    run: Any, source: Path, name: str, checkpoint: CheckpointRecord, storage: Storage
) -> CheckpointRecord:
    """For a file written by someone else (a framework): keep the run's copy as ``storage``
    says and record the digest of the bytes kept, read once (from the copy when there is one)."""
    if storage.copies != "digest":
        root = copy_root(run, local=not storage.upload)
        incoming = root / run_copy_name(name, checkpoint.rank, "incoming")
        with Staged(incoming) as staged:
            if clone_or_copy(source, staged.tmp, clone_only=storage.copies == "auto"):
                digest, size = digest_file(staged.tmp)
                tag = digest.removeprefix("blake3:")[:16]
                rel = run_copy_name(name, checkpoint.rank, tag)
                staged.commit(to=root / rel)
                remove_copy(root, incoming.relative_to(root).as_posix())  # its empty folders
                if storage.upload:
                    save_run_file(run, root / rel)
                return dataclasses.replace(
                    checkpoint, digest=digest, size=size, file=rel, local=not storage.upload
                )
        _say_no_copy(run, source)
    digest, size = digest_file(source)
    return dataclasses.replace(checkpoint, digest=digest, size=size)


def _say_no_copy(run: Any, source: Path) -> None:
    """Say once per run that no copy is kept, naming the user's file (never a temp name)."""
    key = str(getattr(run, "id", ""))
    if key not in _told:
        _told.add(key)
        log.info(
            "resumeguard: no copy of %s is kept (its filesystem makes no reflinks; storage "
            "'latest' keeps a real copy); its digest is recorded and verified",
            source,
        )


def files_of(checkpoint: CheckpointRecord | None) -> set[tuple[bool, str]]:
    """The copies a record (its shards and the saves it keeps as ``previous``) points at."""
    found: set[tuple[bool, str]] = set()
    while checkpoint is not None:
        for shard in (checkpoint, *checkpoint.shards):
            if shard.file:
                found.add((shard.local, shard.file))
        checkpoint = checkpoint.previous
    return found


def retire(run: Any, keep: Iterable[CheckpointRecord], old: Iterable[CheckpointRecord]) -> None:
    """Remove the copies ``old`` records point at that none of ``keep`` needs."""
    needed: set[tuple[bool, str]] = set()
    for checkpoint in keep:
        needed |= files_of(checkpoint)
    for checkpoint in old:
        for local, rel in files_of(checkpoint) - needed:
            remove_copy(copy_root(run, local=local), rel)


def rotated_away(record: RunRecord, current: str) -> list[str]:
    """Names (other than ``current``) whose file was deleted from a folder that still exists:
    the user's rotation removed them, so their copies can go."""
    gone = []
    for name, checkpoint in record.checkpoints.items():
        if name == current or checkpoint.shards or not files_of(checkpoint):
            continue
        source = Path(checkpoint.source) if checkpoint.source else None
        if source is not None and source.parent.is_dir() and not source.exists():
            gone.append(name)
    return gone


def remove_copy(root: Path, rel: str) -> None:
    """Delete the copy ``root/rel`` and the folders it leaves empty (within the copies folder)."""
    path = root / rel
    path.unlink(missing_ok=True)
    top = root / CHECKPOINT_DIR
    for folder in path.parents:
        if folder == top or top not in folder.parents:
            break
        try:
            folder.rmdir()
        except FileNotFoundError:
            continue
        except OSError:
            break  # not empty: the folders above are not empty either


def sweep(run: Any, name: str, keep: Iterable[CheckpointRecord]) -> None:
    """Remove copies of ``name`` no record points at (left by a save killed midway)."""
    needed: set[tuple[bool, str]] = set()
    for checkpoint in keep:
        needed |= files_of(checkpoint)
    safe = run_copy_name(name)[len(CHECKPOINT_DIR) + 1 :]
    for local in (False, True):
        root = copy_root(run, local=local)
        base = root / CHECKPOINT_DIR
        if not base.is_dir():
            continue
        for pattern in (f"*/{safe}", f"*/rank*/{safe}"):
            with contextlib.suppress(OSError, ValueError):
                for path in base.glob(pattern):
                    rel = path.relative_to(root).as_posix()
                    if (local, rel) not in needed and path.is_file():
                        remove_copy(root, rel)


@dataclasses.dataclass(frozen=True)
class Stored:
    """How much a run keeps of its checkpoints."""

    copies: int
    """Copies the record points at."""
    bytes: int
    """Their size in bytes."""
    uploaded: int
    """Bytes among them that are run files (uploaded)."""
    on_disk: int | None
    """Bytes of every copy found in the run's directories (None when not on this machine)."""


def stored(record: RunRecord, directories: Iterable[str]) -> Stored:
    """What ``record`` keeps, and what the offline run ``directories`` hold in copies."""
    copies = total = uploaded = 0
    seen: set[tuple[bool, str]] = set()
    for entry in record.checkpoints.values():
        checkpoint: CheckpointRecord | None = entry
        while checkpoint is not None:
            for shard in checkpoint.shards or (checkpoint,):
                key = (shard.local, shard.file)
                if shard.file and key not in seen:
                    seen.add(key)
                    copies += 1
                    total += shard.size
                    uploaded += 0 if shard.local else shard.size
            checkpoint = checkpoint.previous
    on_disk: int | None = None
    dirs = [Path(d) for d in directories]
    if dirs:
        on_disk = 0
        for d in dirs:
            for base in (d / "files" / CHECKPOINT_DIR, d / LOCAL_COPIES / CHECKPOINT_DIR):
                for path in base.rglob("*") if base.is_dir() else ():
                    with contextlib.suppress(OSError):
                        if path.is_file() and not path.is_symlink():
                            on_disk += path.stat().st_size
    return Stored(copies=copies, bytes=total, uploaded=uploaded, on_disk=on_disk)
