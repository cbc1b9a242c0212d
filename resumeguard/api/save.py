"""``save_checkpoint``: write new, publish, then retire the old.

The order is what makes a save crash-safe (``kill -9`` at any point leaves the previous
checkpoint restorable and the record agreeing with the files): the new bytes go to a temp file
(digested as they are written), the run's copy of them to a new folder, the record then says
the save is under way (keeping the previous save as ``previous``), the temp file is renamed over
the user's file, the record is published without ``previous``, and only then is the previous
copy removed. A full disk at any step raises DiskFull with everything as it was.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from resumeguard.checkpoint.beside import origin_of_run, read_beside, write_beside
from resumeguard.checkpoint.copies import keep_copy, retire, rotated_away, sweep
from resumeguard.checkpoint.files import Written, crash_point, write_staged
from resumeguard.checkpoint.state import find_optimizer_state, step_of
from resumeguard.checkpoint.storage import Storage, resolve
from resumeguard.collect.record import Unavailable
from resumeguard.errors import BadInput, CheckpointError, ResumeGuardError
from resumeguard.io.atomic import remove_later
from resumeguard.records.run import WANDB_STEP, CheckpointRecord, now


def live_run(run: Any) -> Any:
    """``run``, or None for no run or the stand-in run of ``mode="disabled"`` (which keeps
    nothing): then the record beside the checkpoint is the only record."""
    if run is None:
        return None
    settings = getattr(run, "settings", None)
    if getattr(run, "disabled", False) or getattr(settings, "mode", "") == "disabled":
        return None
    return run


def save_checkpoint(
    run: Any,
    state: Any,
    name: str | os.PathLike[str],
    *,
    step: int | None = None,
    step_counter: str = WANDB_STEP,
    optimizer: Any = None,
    model: Any = None,
    storage: Storage | str | None = None,
) -> CheckpointRecord | None:
    """Write ``state`` atomically to ``name`` (digested while written), record digest, size,
    step and the optimizer and model fingerprints in the run and beside the file, and keep the
    run's copy as ``storage`` says (default: ``RESUMEGUARD_STORAGE``, else ``auto``).

    The step is ``step``, else the state's ``step``/``global_step``/``iteration``, else the
    run's. A step given or in the state is taken as the one the script logs at (W&B's own,
    compared with the run's last logged step when it resumes); ``step_counter`` names what it
    counts instead when it is not (optimizer steps of a script that logs more often), and then
    it is not compared.

    ``run`` may be None (or a disabled run): the record beside the file is then the record.
    Under torch.distributed, a name without ``{rank}`` is rank 0's to write and waits for no
    other rank, as torch.save (a script may save on rank 0 only; other ranks that call it
    write nothing and get None). A name with ``{rank}`` is collective: every rank calls it
    and writes its own shard (``run`` may be None off rank 0), and rank 0 records them all."""
    from resumeguard.collect.configured import watch_optimizers
    from resumeguard.collect.env import rank_and_world
    from resumeguard.options import disabled

    if disabled():
        import torch

        torch.save(state, Path(name).as_posix().replace("{rank}", str(rank_and_world()[0])))
        return None
    watch_optimizers()
    run = live_run(run)
    chosen = resolve(storage)
    if not isinstance(step_counter, str) or not step_counter.strip():
        raise BadInput(
            f"bad step_counter {step_counter!r}: name what the step counts (e.g. "
            f"'trainer/global_step'), or leave it out for W&B's own step ({WANDB_STEP})"
        )
    _check_name(name)
    rank, world = rank_and_world()
    template = Path(name).as_posix()
    if "{rank}" not in template:
        if rank != 0:
            return None
        rank, world = 0, 1  # rank 0's own save: no other rank takes part
    together = _Together(world)
    mine: tuple[Written, CheckpointRecord] | None = None
    error = ""
    path = Path(template.replace("{rank}", str(rank)))
    started = time.monotonic()
    try:
        at = (step, step_counter)
        mine = _write(state, path, at, run, optimizer, model, rank if world > 1 else None)
    except ResumeGuardError as e:
        if world <= 1:
            raise
        error = f"rank {rank}: {e}"
    written = time.monotonic() - started
    payload = {"record": mine[1].to_json(), "tmp": str(mine[0].staged.tmp)} if mine else None
    try:
        # Every rank writes a shard alike: the slowest may take a few times this one's time.
        gathered = together.gather({"error": error} if error else payload, "save", 4 * written)
        errors = [g["error"] for g in gathered if g and "error" in g]
        if errors:
            raise CheckpointError("; ".join(errors))
        shards = [(CheckpointRecord.from_json(g["record"]), Path(g["tmp"])) for g in gathered if g]
        begun = together.agree(
            lambda: _begin(run, template, shards, chosen), "save-begin", 4 * written * world
        )
    except BaseException:
        if mine is not None:
            mine[0].staged.discard()
        raise
    main = CheckpointRecord.from_json(begun)
    replaced = _put_in_place(run, template, mine, main) if mine is not None else None
    try:
        together.gather(None, "save-placed", 0.0)  # every file is in place before the record
        together.agree(lambda: _finish(run, template, main, chosen), "save-finish", 0.0)
    finally:
        if replaced is not None:  # after the records' fsyncs, which would wait for it
            remove_later(replaced)
    if mine is not None and world > 1 and rank != 0:
        return mine[1]
    return main


@dataclasses.dataclass(frozen=True)
class _Together:
    """The collective steps of a save: with every rank in a sharded save, else this one's."""

    world: int

    def gather(self, value: Any, tag: str, part: float) -> list[Any]:
        from resumeguard.decide.distributed import all_ranks

        if self.world <= 1:
            return [value]
        return all_ranks(value, tag=tag, call=SAVE_CALL, part=part)

    def agree(self, decide: Callable[[], Any], tag: str, part: float) -> Any:
        from resumeguard.decide.distributed import agree

        if self.world <= 1:
            return decide()
        return agree(decide, tag=tag, call=SAVE_CALL, part=part)


SAVE_CALL = "save_checkpoint (a name with {rank})"


def _write(
    state: Any,
    path: Path,
    step: tuple[int | None, str],
    run: Any,
    optimizer: Any,
    model: Any,
    rank: int | None,
) -> tuple[Written, CheckpointRecord]:
    """Write one file to its temp file and describe it: digest, size, step (the one given and
    its counter), fingerprints."""
    from resumeguard.collect.components import components_of
    from resumeguard.collect.optimizer import collect_model, collect_optimizer

    written = write_staged(state, path)
    crash_point("written")
    try:
        opt_state = find_optimizer_state(state)
        opt_record: Any = Unavailable("no optimizer state in the checkpoint")
        source = optimizer if optimizer is not None else opt_state
        if source is not None:
            # The file's digest identifies these bytes; the state digest would be a second pass.
            opt_record = collect_optimizer(
                source, model=model if optimizer is not None else None, state_digest=False
            )
            if optimizer is None:
                from resumeguard.collect.configured import configured_for

                # The state dict holds the schedule's values; the optimizer it came from,
                # what was set.
                opt_record = dataclasses.replace(opt_record, defaults=configured_for(source))
        at, counter = step_of(state, step[0], run, step[1])
        record = CheckpointRecord(
            file="",
            digest=written.digest,
            size=written.size,
            step=at,
            step_counter=counter,
            saved_at=now(),
            source=str(path.resolve()),
            optimizer=opt_record,
            model=collect_model(model) if model is not None else Unavailable("not given"),
            rank=rank,
            components=components_of(state),
        ).placed(written.staged.tmp)  # renamed into place: the same disk and mtime
    except BaseException:
        written.staged.discard()
        raise
    return written, record


def _begin(
    run: Any, template: str, shards: list[tuple[CheckpointRecord, Path]], storage: Storage
) -> dict[str, Any]:
    """Rank 0: keep the run's copies and record the save as under way (the previous one kept
    as ``previous``). Returns the new record."""
    kept = [shard for shard, _ in shards]
    if run is not None:
        kept = [keep_copy(run, tmp, template, shard, storage) for shard, tmp in shards]
    main = kept[0]
    if len(kept) > 1:
        main = dataclasses.replace(main, shards=tuple(kept))
    crash_point("copied")
    if run is not None:
        from resumeguard.decide import runfiles
        from resumeguard.decide.pipeline import ensure_recorded

        with runfiles.recording(run):  # another thread's save must not publish in between
            record = ensure_recorded(run)
            old = record.checkpoints.get(template)
            if old is not None:  # a first save has no previous one to keep restorable
                runfiles.publish(run, record.with_checkpoint(template, _under_way(main, old)))
    crash_point("pending")
    return main.to_json()


def _under_way(new: CheckpointRecord, old: CheckpointRecord | None) -> CheckpointRecord:
    """``new`` as a save still under way: ``old`` (at most one save back) stays restorable."""
    if old is None:
        return new
    older = old.previous
    if older is not None:
        older = dataclasses.replace(older, previous=None)
    return dataclasses.replace(new, previous=dataclasses.replace(old, previous=older))


def _put_in_place(
    run: Any, template: str, mine: tuple[Written, CheckpointRecord], main: CheckpointRecord
) -> Path | None:
    """Rename this rank's temp file over its checkpoint, with the record beside it saying the
    save is under way until the file is in place. Returns the replaced file's second name
    (large files only), to be removed once the save is recorded."""
    written, record = mine
    path = written.staged.target
    if record.rank is not None and main.shards:
        record = main.shards[record.rank]
    elif record.rank is None:
        record = main
    # Without a run this is the only record: it keeps the previous save restorable too.
    before = read_beside(path) if run is None else None
    if before is not None:
        write_beside(path, origin_of_run(run, template, _under_way(record, before.checkpoint)))
    replaced = written.staged.commit(remove_old=False)
    crash_point("replaced")
    write_beside(path, origin_of_run(run, template, record))
    return replaced


def _finish(run: Any, template: str, main: CheckpointRecord, storage: Storage) -> None:
    """Rank 0: publish the save as complete, then retire copies no record needs."""
    if run is None:  # the record beside the file is complete already
        crash_point("published")
        crash_point("retired")
        return
    from resumeguard.decide import runfiles
    from resumeguard.decide.pipeline import ensure_recorded
    from resumeguard.decide.runfiles import settle

    with runfiles.recording(run):  # another thread's save must not publish in between
        record = ensure_recorded(run)
        old = record.checkpoints.get(template)
        record = record.with_checkpoint(template, main)
        retired = [old] if old is not None else []
        for name in rotated_away(record, template) if storage.copies != "all" else []:
            retired.append(record.checkpoints[name])
            record = record.with_checkpoint(name, _without_copies(record.checkpoints[name]))
        runfiles.publish(run, record)
    crash_point("published")
    if storage.copies != "all":
        retire(run, record.checkpoints.values(), retired)
        sweep(run, template, record.checkpoints.values())
    crash_point("retired")
    runfiles.write_state(run)
    settle(run, "resumed")  # a resume that saves a checkpoint went ahead


def _without_copies(checkpoint: CheckpointRecord) -> CheckpointRecord:
    return dataclasses.replace(
        checkpoint,
        file="",
        local=False,
        previous=None,
        shards=tuple(_without_copies(s) for s in checkpoint.shards),
    )


def _check_name(name: str | os.PathLike[str]) -> None:
    """BadInput for a checkpoint name that cannot be a file: empty, holding a NUL byte, or an
    existing directory."""
    text = os.fspath(name)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if not text or "\0" in text:
        raise BadInput(f"bad checkpoint name {text!r}: give a file path without NUL bytes")
    if Path(text.replace("{rank}", "0")).is_dir():
        raise BadInput(
            f"checkpoint name {text} is a directory: give a file path inside it "
            f"(e.g. {Path(text) / 'checkpoint.pt'})"
        )
