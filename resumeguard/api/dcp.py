"""Sharded checkpoints: ``resumeguard.api.dcp.save`` and ``resumeguard.api.dcp.load`` take
``torch.distributed.checkpoint``'s own arguments and call its ``save``/``load`` with its
filesystem writer/reader, whose files are digested as they are written and verified before
they are read (see :mod:`resumeguard.checkpoint.sharded`). Both are collective, as DCP's own.

The run's record holds one checkpoint entry for the directory, listing every file with its
digest, size and the rank that wrote it, plus ``.metadata``.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, cast

from resumeguard.checkpoint.state import step_of
from resumeguard.collect.record import Unavailable
from resumeguard.errors import BadInput, CheckpointError, ResumeBlocked
from resumeguard.options import Options
from resumeguard.records.run import WANDB_STEP, CheckpointRecord, now

SAVE_CALL = "resumeguard.api.dcp.save"
LOAD_CALL = "resumeguard.api.dcp.load"

__all__ = ["async_save", "load", "save"]


def save(
    run: Any,
    state_dict: dict[str, Any],
    checkpoint_id: str | os.PathLike[str],
    *,
    storage_writer: Any = None,
    planner: Any = None,
    process_group: Any = None,
    no_dist: bool = False,
    step: int | None = None,
    step_counter: str = WANDB_STEP,
) -> CheckpointRecord | None:
    """``torch.distributed.checkpoint.save(state_dict, checkpoint_id=...)`` on every rank
    (``run`` may be None off rank 0), with each file digested as it is written; then rank 0
    records the directory's listing in the run (and beside the directory). ``storage_writer``
    may be a ``FileSystemWriter`` of your own (its options kept); the step as for
    ``save_checkpoint``. Returns the directory's record (None when resumeguard is off)."""
    from torch.distributed.checkpoint import state_dict_saver as dcp

    arguments = {"planner": planner, "process_group": process_group, "no_dist": no_dist}
    if _off():
        dcp.save(
            state_dict, checkpoint_id=checkpoint_id, storage_writer=storage_writer, **arguments
        )
        return None
    run = _live(run)
    root = Path(checkpoint_id)
    writer, written = _digesting_writer(storage_writer, root)
    at = step_of(state_dict, step, run, step_counter)
    started = time.monotonic()
    dcp.save(state_dict, checkpoint_id=checkpoint_id, storage_writer=writer, **arguments)
    return _recorded(run, root, written, at, time.monotonic() - started)


def async_save(
    run: Any,
    state_dict: dict[str, Any],
    checkpoint_id: str | os.PathLike[str],
    *,
    storage_writer: Any = None,
    planner: Any = None,
    process_group: Any = None,
    no_dist: bool = False,
    async_stager: Any = None,
    step: int | None = None,
    step_counter: str = WANDB_STEP,
) -> Future[CheckpointRecord | None]:
    """``torch.distributed.checkpoint.async_save`` (torchtitan's default; its thread
    checkpointer) as :func:`save` does it: returns a future that completes once the files are
    written and rank 0 has recorded them (call ``.result()`` on every rank, as DCP asks)."""
    from torch.distributed.checkpoint import state_dict_saver as dcp

    arguments = {"planner": planner, "process_group": process_group, "no_dist": no_dist}
    if async_stager is not None:
        arguments["async_stager"] = async_stager
    if _off():
        response = dcp.async_save(
            state_dict, checkpoint_id=checkpoint_id, storage_writer=storage_writer, **arguments
        )
        off: Future[CheckpointRecord | None] = Future()
        _upload(response).add_done_callback(
            lambda done: _complete(off, lambda: done.result() and None)
        )
        return off
    run = _live(run)
    root = Path(checkpoint_id)
    writer, written = _digesting_writer(storage_writer, root)
    at = step_of(state_dict, step, run, step_counter)
    started = time.monotonic()
    response = dcp.async_save(
        state_dict, checkpoint_id=checkpoint_id, storage_writer=writer, **arguments
    )
    recorded: Future[CheckpointRecord | None] = Future()

    def finish(done: Future[Any]) -> None:
        def record() -> CheckpointRecord | None:
            done.result()
            return _recorded(run, root, written, at, time.monotonic() - started)

        _complete(recorded, record)

    _upload(response).add_done_callback(finish)
    return recorded


def _upload(response: Any) -> Future[Any]:
    """The future of an async save's writes (an AsyncSaveResponse holds it, or it is one)."""
    return cast("Future[Any]", getattr(response, "upload_completion", response))


def _complete(future: Future[Any], produce: Callable[[], Any]) -> None:
    """Give ``future`` what ``produce`` returns, or what it raises (``.result()`` raises it)."""
    try:
        future.set_result(produce())
    except BaseException as e:
        future.set_exception(e)


def _digesting_writer(given: Any, root: Path) -> tuple[Any, dict[str, tuple[str, int]]]:
    """DCP's filesystem writer for ``root`` whose files are digested as written, and where
    their digests and sizes collect."""
    from resumeguard.checkpoint.sharded import DigestingFileSystem

    writer = _filesystem(given, "storage_writer", "FileSystemWriter", root)
    fs = DigestingFileSystem()
    writer.fs = fs
    return writer, fs.written


def _recorded(
    run: Any,
    root: Path,
    written: dict[str, tuple[str, int]],
    at: tuple[int | None, str],
    seconds: float,
) -> CheckpointRecord:
    """Every rank: what it wrote to rank 0, which records the listing; its record."""
    from resumeguard.collect.env import rank_and_world
    from resumeguard.decide.distributed import agree, all_ranks

    rank = rank_and_world()[0]
    # Every rank writes its share alike: the slowest may take a few times this one's time.
    gathered = all_ranks([rank, written], tag="dcp-save", call=SAVE_CALL, part=4 * seconds)
    entry = agree(
        lambda: _record(run, root, gathered, at),
        tag="dcp-save-record",
        call=SAVE_CALL,
        part=0.0,
    )
    return CheckpointRecord.from_json(entry)


def _record(
    run: Any, root: Path, gathered: list[Any], at: tuple[int | None, str]
) -> dict[str, Any]:
    """Rank 0: the directory's record, published in the run and beside the directory."""
    from resumeguard.checkpoint.beside import origin_of_run, write_beside
    from resumeguard.checkpoint.dirfiles import listing, listing_digest

    files = listing(root, [(int(r), written) for r, written in gathered])
    name = root.as_posix()
    entry = CheckpointRecord(
        file="",
        digest=listing_digest(files),
        size=sum(f.size for f in files),
        step=at[0],
        step_counter=at[1],
        saved_at=now(),
        source=str(root.resolve()),
        optimizer=Unavailable("a sharded checkpoint: its tensors are checked at load"),
        files=tuple(files),
    )
    if run is not None:
        from resumeguard.decide import runfiles
        from resumeguard.decide.pipeline import ensure_recorded
        from resumeguard.decide.runfiles import settle

        with runfiles.recording(run):
            record = ensure_recorded(run)
            old = record.checkpoints.get(name)
            if old is not None:  # the history keeps one digest of each listing, not the files
                old = dataclasses.replace(old, files=(), previous=None)
                entry = dataclasses.replace(entry, previous=old)
            runfiles.publish(run, record.with_checkpoint(name, entry))
        runfiles.write_state(run)
        settle(run, "resumed")  # a resume that saves a checkpoint went ahead
    write_beside(root, origin_of_run(run, name, entry))
    return entry.to_json()


def load(
    run: Any,
    state_dict: dict[str, Any],
    checkpoint_id: str | os.PathLike[str],
    *,
    storage_reader: Any = None,
    planner: Any = None,
    process_group: Any = None,
    no_dist: bool = False,
    policy: Any = None,
) -> None:
    """``torch.distributed.checkpoint.load(state_dict, checkpoint_id=...)`` on every rank
    (``run`` may be None off rank 0), once the directory is the recorded one: every file there
    at its size and ``.metadata`` as recorded (else CheckpointError on every rank, naming the
    file, and nothing is read), the state dict's tensors of the saved shapes and dtypes, and
    each file's bytes verified before DCP reads any of it."""
    from torch.distributed.checkpoint import state_dict_loader as dcp

    from resumeguard.api.restore import misfit_report
    from resumeguard.checkpoint.dirfiles import file_problem
    from resumeguard.checkpoint.sharded import (
        VerifyingFileSystem,
        fit_problems,
        verified_metadata,
    )
    from resumeguard.collect.env import rank_and_world
    from resumeguard.decide.distributed import agree, all_ranks

    if _off():
        dcp.load(
            state_dict,
            checkpoint_id=checkpoint_id,
            storage_reader=storage_reader,
            planner=planner,
            process_group=process_group,
            no_dist=no_dist,
        )
        return
    run = _live(run)
    root = Path(checkpoint_id)
    name = root.as_posix()
    reader = _filesystem(storage_reader, "storage_reader", "FileSystemReader", root)
    try:
        shared = agree(lambda: _lookup(run, root, policy), tag="dcp-load", call=LOAD_CALL)
    except (CheckpointError, ResumeBlocked) as e:
        _settle(run, "refused", str(e))
        raise
    entry = CheckpointRecord.from_json(shared)
    rank = rank_and_world()[0]
    started = time.monotonic()
    # Every file there at its size, .metadata as recorded, before DCP reads anything.
    problems = [p for p in (file_problem(root / f.name, f, digest=False) for f in entry.files) if p]
    mine = f"checkpoint {name}: {'; '.join(problems)}; nothing was loaded" if problems else ""
    misfit = []
    if not problems:
        try:
            misfit = fit_problems(verified_metadata(root, entry.files, name), state_dict, name)
        except CheckpointError as e:
            mine = str(e)
    mine = mine or (f"checkpoint {name} does not fit the state dict" if misfit else "")
    part = 4 * (time.monotonic() - started)
    said = all_ranks(mine, tag="dcp-load", call=LOAD_CALL, part=part)
    if misfit:
        refused = CheckpointError(
            f"checkpoint {name} does not fit the state dict; nothing was loaded",
            misfit_report(name, misfit),
        )
    elif any(said):
        refused = CheckpointError(by_rank(list(enumerate(said))))
    else:
        refused = None
    if refused is not None:
        _settle(run, "refused", str(refused))
        raise refused
    reader.fs = VerifyingFileSystem(root, entry.files, name)
    try:
        dcp.load(
            state_dict,
            checkpoint_id=checkpoint_id,
            storage_reader=reader,
            planner=planner,
            process_group=process_group,
            no_dist=no_dist,
        )
    except BaseException as e:
        ours = _own_failures(e)
        if not ours:
            raise
        _settle(run, "refused", ours)
        raise CheckpointError(ours) from None
    if rank == 0:
        from resumeguard.decide.verified import say

        say(
            f"resumeguard: checkpoint {name} (step {entry.step}, {len(entry.files)} files, "
            f"{entry.size} bytes) matches its record {entry.digest[:27]}...; loaded"
        )
    _settle(run, "resumed")


def _lookup(run: Any, root: Path, policy: Any) -> dict[str, Any]:
    """Rank 0: the directory's record, from the run, else from beside it (the run it names
    must let this process resume from it)."""
    from resumeguard.api.restore import lookup
    from resumeguard.checkpoint.beside import read_beside
    from resumeguard.decide.pipeline import check_checkpoint_run, ensure_recorded, step_check

    name = root.as_posix()
    record = ensure_recorded(run) if run is not None else None
    if record is not None and name in record.checkpoints:
        entry = lookup(record, name, run_label=str(getattr(run, "id", run)))
        step_check(run, record, entry, name, policy)
    else:
        check_checkpoint_run(root, Options(policy=policy))
        origin = read_beside(root)
        if origin is None:
            raise CheckpointError(
                f"checkpoint {name} has no resumeguard record (.{root.name}.resumeguard.json "
                "beside it), so it cannot be verified and is not read; save it with "
                "resumeguard.api.dcp.save, or pass the run it was saved in"
            )
        entry = origin.checkpoint
    if not entry.files:
        raise CheckpointError(
            f"checkpoint {name} is a single file, not a sharded checkpoint: restore it with "
            "resumeguard.restore_checkpoint"
        )
    return entry.to_json()


def _filesystem(given: Any, argument: str, kind: str, root: Path) -> Any:
    """DCP's filesystem writer or reader for ``root``: ``given`` when it is one, a new one
    when None; BadInput for another storage (its files could not be digested)."""
    from torch.distributed.checkpoint.filesystem import (
        FileSystem,
        FileSystemReader,
        FileSystemWriter,
    )

    cls = FileSystemWriter if kind == "FileSystemWriter" else FileSystemReader
    if given is None:
        return cls(root)
    if isinstance(given, cls) and type(given.fs) is FileSystem:
        return given
    raise BadInput(
        f"{argument}={type(given).__name__}: resumeguard.api.dcp digests and verifies the files of "
        f"DCP's {kind} on a local or shared filesystem; pass one (or none)"
    )


def _own_failures(error: BaseException) -> str:
    """The CheckpointErrors of resumeguard's reader inside DCP's CheckpointException (every
    rank gets every rank's), as one line; "" when there are none."""
    failures = getattr(error, "failures", None)
    if not isinstance(failures, dict):
        return ""
    lines = []
    for rank, wrapped in sorted(failures.items()):
        exc = wrapped[0] if isinstance(wrapped, tuple) else wrapped
        if isinstance(exc, CheckpointError):
            lines.append((int(rank), str(exc)))
    return by_rank(lines)


def by_rank(said: list[tuple[int, str]]) -> str:
    """What the ranks said, each line once with the ranks that said it ("" when none did)."""
    ranks: dict[str, list[str]] = {}
    for rank, line in said:
        if line:
            ranks.setdefault(line, []).append(str(rank))
    return "; ".join(f"{line} (rank {', '.join(r)})" for line, r in ranks.items())


def _off() -> bool:
    from resumeguard.options import disabled

    return disabled()


def _live(run: Any) -> Any:
    from resumeguard.api.save import live_run

    return live_run(run)


def _settle(run: Any, outcome: str, reason: str = "") -> None:
    if run is not None:
        from resumeguard.decide.runfiles import settle

        settle(run, outcome, reason)
