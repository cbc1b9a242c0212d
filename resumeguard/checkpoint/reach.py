"""Every recorded checkpoint file this host can reach, verified: the run's copies and, from
outside the training process (``resumeguard check``), the file at its recorded path and the
record beside it. ``"full"`` reads every byte; ``"stat"`` compares sizes (and modification
times where recorded: a file whose time changed is read, a changed time alone is no change).

A file this host cannot see is missing, unless it was written to another host's own disk: it
is then elsewhere, listed as not checked from here. Shared storage is the same on every
node, so a file missing there is missing whichever host wrote it."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Literal

from resumeguard.checkpoint.beside import read_beside
from resumeguard.errors import BadInput, CheckpointError
from resumeguard.io.disks import this_host
from resumeguard.io.hashing import digest_file
from resumeguard.records.run import CheckpointRecord, RunRecord, older_save
from resumeguard.stores.interface import RunRef, RunStore
from resumeguard.stores.layout import unreadable_copy
from resumeguard.verdict.findings import Finding
from resumeguard.verdict.hints import explain

Digests = Literal["full", "stat"]
"""How recorded checkpoint files are checked: every byte digested, or a stat of each."""


@dataclasses.dataclass(frozen=True)
class Reached:
    """What a check of a run's checkpoint files found."""

    findings: tuple[Finding, ...] = ()
    """Files gone, truncated, grown or altered (the run's copies and the user's files)."""
    elsewhere: tuple[str, ...] = ()
    """One line per file not checked from here (another host's own disk), naming the host."""
    verified: frozenset[str] = frozenset()
    """Checkpoint names whose recorded bytes this check read and found intact."""
    rotated: tuple[str, ...] = ()
    """One line per older checkpoint whose file was removed while a newer save of the run
    lies in its folder (the script's own rotation): no resume restores it."""


def checkpoint_findings(
    record: RunRecord,
    store: RunStore,
    ref: RunRef,
    *,
    digests: Digests = "full",
    files: bool = False,
    last_step: int | None = None,
) -> Reached:
    """``checkpoint.<name>.missing`` / ``.size`` / ``.digest`` (and ``.record``, the record
    beside the file) for recorded checkpoint files that are gone, truncated or changed. The
    run's copies are always checked (online, ``"full"`` downloads each); with ``files``, also
    the file at its recorded path and the record beside it, where this host can reach them.
    A file that holds an earlier save of its name is that save (``run.step`` against
    ``last_step``, the run's last logged step), not an altered file."""
    findings: list[Finding] = []
    elsewhere: list[str] = []
    verified: set[str] = set()
    rotated: list[str] = []
    newest = _newest_per_folder(record) if files else {}
    for name, checkpoint in sorted(record.checkpoints.items()):
        # A save killed midway keeps the save before it: fine while either one is intact.
        per_save: list[tuple[list[Finding], bool]] = []
        chain = _saves_of(checkpoint)
        save: CheckpointRecord | None = checkpoint
        while save is not None:
            found = _directory_findings(name, save, digests)
            # Every file of this save was read: a directory's, when all are here and read whole.
            read = not save.files or (digests == "full" and not _unreachable_files(name, save))
            for shard in save.shards or (save,):
                label = name if shard.rank is None else f"{name}[rank {shard.rank}]"
                copy = _copy_finding(store, ref, shard, label, digests) if shard.file else None
                copy_kept = bool(shard.file) and copy is None
                copy_read = copy_kept and digests == "full"
                if copy is not None:
                    found.append(copy)
                if not files or not shard.source or shard.files:  # a directory: its files above
                    read = read and (copy_read or bool(shard.files))
                    continue
                where = _locate(shard, label)
                if isinstance(where, str):
                    elsewhere.append(where)
                    read = read and copy_read
                elif where is not None:
                    mine, file_read = _file_findings(
                        where, shard, label, ref, digests, copy_kept, last_step, chain
                    )
                    found += mine
                    read = read and (file_read or copy_read)
                elif newest.get(_folder(shard), name) != name:
                    rotated.append(_rotated_line(label, shard, newest[_folder(shard)]))
                    read = False
                else:
                    found.append(_user_finding("missing", label, shard, ref, copy_kept))
            per_save.append((found, read))
            save = save.previous
        elsewhere += _unreachable_files(name, checkpoint)
        if all(found for found, _ in per_save):
            findings.extend(per_save[0][0])
        elif any(not found and read for found, read in per_save):
            verified.add(name)
    return Reached(tuple(findings), tuple(elsewhere), frozenset(verified), tuple(rotated))


def _directory_findings(name: str, save: CheckpointRecord, digests: Digests) -> list[Finding]:
    """``checkpoint.<name>/<file>.size`` / ``.digest`` for the files of a sharded checkpoint
    directory this machine can reach (``digests="stat"``: sizes only)."""
    from resumeguard.checkpoint.dirfiles import reachable

    findings = []
    for path, file in reachable(save)[0]:
        label = f"checkpoint.{name}/{file.name}"
        size = path.stat().st_size
        if size != file.size:
            findings.append(explain(f"{label}.size", file.size, size))
        elif digests == "full" and (digest := digest_file(path)[0]) != file.digest:
            findings.append(explain(f"{label}.digest", file.digest, digest))
    return findings


def _unreachable_files(name: str, checkpoint: CheckpointRecord) -> list[str]:
    """The line for the files of a sharded checkpoint directory not reachable from here."""
    from resumeguard.checkpoint.dirfiles import reachable

    _, unreachable = reachable(checkpoint)
    if not unreachable:
        return []
    shown = ", ".join(f"{f.name} (rank {f.rank})" for f in unreachable[:5])
    more = f" and {len(unreachable) - 5} more" if len(unreachable) > 5 else ""
    return [
        f"sharded checkpoint {name}: {len(unreachable)} of {len(checkpoint.files)} files not "
        f"reachable from here ({shown}{more}): another node's disk, or gone; "
        "resumeguard.api.dcp.load verifies them on the ranks that read them"
    ]


def _locate(shard: CheckpointRecord, label: str) -> Path | str | None:
    """The user's file of ``shard`` on this host; a "not checked from here" line when it lies
    on another host's own disk; None when it is missing."""
    path = Path(shard.source)
    if path.exists():
        return path
    if shard.host and shard.host != this_host() and shard.disk == "local":
        return f"{label}: {shard.source}, on the local disk of {shard.host}"
    if not shard.host and shard.rank is not None:
        # Recorded by an older resumeguard, which did not say where a rank's file lies.
        return (
            f"{label}: {shard.source}, written by rank {shard.rank} on a host the record does "
            "not name (an older resumeguard)"
        )
    return None


def _file_findings(
    path: Path,
    shard: CheckpointRecord,
    label: str,
    ref: RunRef,
    digests: Digests,
    copy_kept: bool,
    last_step: int | None = None,
    chain: frozenset[str] = frozenset(),
) -> tuple[list[Finding], bool]:
    """The user's file at ``path`` and the record beside it, against ``shard``; and whether
    its bytes were read."""
    found: list[Finding] = []
    read = False
    try:
        stat = path.stat()
        touched = shard.mtime_ns is not None and stat.st_mtime_ns != shard.mtime_ns
        if stat.st_size != shard.size:
            found.append(_user_finding("size", label, shard, ref, copy_kept, stat.st_size))
        elif digests == "full" or touched:  # a new mtime alone is no change: the bytes say
            digest, size = digest_file(path)
            read = True
            if size != shard.size:
                found.append(_user_finding("size", label, shard, ref, copy_kept, size))
            elif digest != shard.digest:
                earlier = [h for h in shard.history if (h.digest, h.size) == (digest, size)]
                if earlier:
                    found.append(_earlier_save(path, shard, shard.as_save(earlier[0]), last_step))
                else:
                    found.append(_user_finding("digest", label, shard, ref, copy_kept, digest))
    except OSError as e:
        found.append(_user_finding("missing", label, shard, ref, copy_kept, e.strerror))
    record = _beside_finding(path, shard, label, ref, chain)
    if record is not None:
        found.append(record)
    return found, read and not found


def _earlier_save(
    path: Path, latest: CheckpointRecord, older: CheckpointRecord, last_step: int | None
) -> Finding:
    """``run.step`` for a file that holds an earlier save of its name: a genuine save of the
    run, which a resume restores with the metrics logged after it lost (W&B drops them)."""
    logged = max(s for s in (last_step, latest.step, 0) if s is not None)
    finding = explain("run.step", logged, older.step)
    return dataclasses.replace(
        finding,
        message=f"{path} holds {older_save(latest, older)}; the run logged up to step "
        f"{logged}: W&B drops every log call below {logged + 1}",
        hint="to resume from the latest save, put it back (`resumeguard restore`, where the "
        "run keeps a copy of it)",
    )


def _beside_finding(
    path: Path, shard: CheckpointRecord, label: str, ref: RunRef, chain: frozenset[str]
) -> Finding | None:
    """``checkpoint.<name>.record`` when the record beside ``path`` is gone, unreadable, or
    names other bytes than the run's record (a resume from the path would be refused)."""
    try:
        origin = read_beside(path)
    except BadInput as e:
        problem = str(e).split(";")[0]
    else:
        if origin is None:
            problem = "the record beside it is gone"
        else:
            named = {origin.checkpoint.digest}
            if origin.checkpoint.previous is not None:
                named.add(origin.checkpoint.previous.digest)
            if named & (chain | {shard.digest}):  # a save killed midway: either one
                return None
            problem = "the record beside it names other bytes"
    finding = explain(f"checkpoint.{label}.record", shard.digest, None)
    return dataclasses.replace(
        finding,
        message=f"checkpoint {label} ({path}): {problem}",
        hint=f"{_restore_command(ref, label)} writes the file and its record back",
    )


def _user_finding(
    what: str,
    label: str,
    shard: CheckpointRecord,
    ref: RunRef,
    copy_kept: bool,
    current: object = None,
) -> Finding:
    """A finding on the user's file (not the run's copy), naming it."""
    recorded = {"missing": shard.source, "size": shard.size, "digest": shard.digest}[what]
    finding = explain(f"checkpoint.{label}.{what}", recorded, current)
    where = f"checkpoint {label} ({shard.source})"
    message = {
        "missing": f"{where} is recorded but the file is gone",
        "size": f"{where} is {current} bytes, recorded {shard.size}: it was truncated or "
        "changed after it was saved",
        "digest": f"{where} does not match its recorded digest: its bytes changed after it "
        "was saved",
    }[what]
    hint = (
        f"the run keeps a copy: {_restore_command(ref, label)} verifies it and puts it back "
        "(a damaged file is kept beside it)"
        if copy_kept
        else finding.hint
    )
    return dataclasses.replace(finding, message=message, hint=hint)


def _saves_of(checkpoint: CheckpointRecord) -> frozenset[str]:
    """The digests of a name's save and of the saves it keeps restorable (``previous``)."""
    found: set[str] = set()
    save: CheckpointRecord | None = checkpoint
    while save is not None:
        found |= {shard.digest for shard in save.shards or (save,)}
        save = save.previous
    return frozenset(found)


def _restore_command(ref: RunRef, label: str) -> str:
    name, _, rank = label.partition("[rank ")
    extra = f" --rank {rank.rstrip(']')}" if rank else ""
    return f"`resumeguard restore --run-id {ref} {name}{extra}`"


def _folder(shard: CheckpointRecord) -> str:
    return os.path.dirname(shard.source)


def _newest_per_folder(record: RunRecord) -> dict[str, str]:
    """Folder of each recorded file -> the checkpoint name saved there last."""
    newest: dict[str, tuple[str, str]] = {}
    for name, checkpoint in record.checkpoints.items():
        for shard in checkpoint.shards or (checkpoint,):
            if shard.source:
                key = (checkpoint.saved_at, name)
                folder = _folder(shard)
                if folder not in newest or key > newest[folder]:
                    newest[folder] = key
    return {folder: name for folder, (_, name) in newest.items()}


def _rotated_line(label: str, shard: CheckpointRecord, newer: str) -> str:
    return (
        f"{label}: {shard.source} was removed since it was saved, and {newer} was saved in "
        "its folder after it (rotated away): no resume restores it"
    )


def _copy_finding(
    store: RunStore, ref: RunRef, shard: CheckpointRecord, label: str, digests: Digests
) -> Finding | None:
    """The run's copy of ``shard``: gone, truncated or changed (None when intact, or, online
    under ``"stat"``, not on this machine to look at)."""
    path = store.local_file(ref, shard.file, local=shard.local)
    if path is None and (digests == "stat" or store.name == "offline" or shard.local):
        if store.name == "offline":
            return explain(f"checkpoint.{label}.missing", shard.file, None)
        return None
    with tempfile.TemporaryDirectory(prefix="resumeguard-") as tmp:
        if path is None:
            try:
                path = store.fetch_file(ref, shard.file, Path(tmp))
            except CheckpointError:
                return explain(f"checkpoint.{label}.missing", shard.file, None)
        try:
            if digests == "stat":
                size = path.stat().st_size
                if size != shard.size:
                    return explain(f"checkpoint.{label}.size", shard.size, size)
                return None
            digest, size = digest_file(path)
        except FileNotFoundError:  # gone since it was looked up
            return explain(f"checkpoint.{label}.missing", shard.file, None)
        except OSError as e:
            raise unreadable_copy(path, e) from None
    if size != shard.size:
        return explain(f"checkpoint.{label}.size", shard.size, size)
    if digest != shard.digest:
        return explain(f"checkpoint.{label}.digest", shard.digest, digest)
    return None
