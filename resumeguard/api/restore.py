"""``restore_checkpoint`` and ``load_checkpoint``: fetch, verify while loading (weights only),
check the fit before ``load_state_dict``, then load."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from resumeguard.api.complete import (
    Expectation,
    expect_at_first_step,
    judging_with,
    many,
    restore_components,
)
from resumeguard.api.save import live_run
from resumeguard.checkpoint.beside import read_beside
from resumeguard.checkpoint.copies import find_copy
from resumeguard.checkpoint.files import load_weights, read_verified
from resumeguard.checkpoint.state import (
    find_model_state,
    find_optimizer_state,
    keys_for,
    step_of,
)
from resumeguard.errors import CheckpointError, ResumeBlocked
from resumeguard.io.archive import check_archive
from resumeguard.options import Options, disabled
from resumeguard.records.run import WANDB_STEP, CheckpointRecord, RunRecord
from resumeguard.verdict.findings import Finding, Severity

if TYPE_CHECKING:
    from resumeguard.verdict.fit import FitProblem
    from resumeguard.verdict.report import Report

log = logging.getLogger("resumeguard")


def lookup(record: RunRecord, name: str | os.PathLike[str], *, run_label: str) -> CheckpointRecord:
    """The record of checkpoint ``name``; CheckpointError listing the recorded names if absent."""
    key = Path(name).as_posix()
    checkpoint = record.checkpoints.get(key)
    if checkpoint is None:
        known = ", ".join(sorted(record.checkpoints)) or "none"
        raise CheckpointError(
            f"no checkpoint named {key!r} is recorded in run {run_label} (recorded: {known})"
        )
    return checkpoint


def restore_checkpoint(
    run: Any,
    name: str | os.PathLike[str],
    *,
    model: Any = None,
    optimizer: Any = None,
    scheduler: Any = None,
    scaler: Any = None,
    dataloader: Any = None,
    rng: bool = False,
    map_location: Any = "cpu",
    policy: Any = None,
) -> Any:
    """Fetch checkpoint ``name``, verify its digest while loading it with ``weights_only=True``,
    check that its state fits ``optimizer`` and ``model`` BEFORE loading, warn about
    hyperparameters it will override, then load into them and return the state.

    Each other component given is restored from the key its state uses: ``scheduler`` and
    ``scaler`` (one, or a list in the order saved), ``dataloader`` (its ``load_state_dict``),
    and with ``rng`` the RNG states. At the first optimizer step after it, whatever the run
    needs and was not put back is reported (``state.*``: a scheduler that restarts, a scaler
    at its default scale, RNG states or a data position left behind).

    ``run`` may be None (or a disabled run): the record beside the file is then the record.
    Under torch.distributed every rank calls it (``run`` may be None off rank 0); each rank
    verifies and fit-checks its own shard, and unless every rank passes, none loads."""
    from resumeguard.collect.configured import watch_optimizers

    parts = {"scheduler": scheduler, "scaler": scaler, "dataloader": dataloader}
    if disabled():
        state = _plain_load(name, map_location)
        load_state(state, model=model, optimizer=optimizer)
        restore_components(state, _expectation(name, state, **parts), **parts, rng=rng)
        return state
    watch_optimizers()
    fit = functools.partial(check_fit, model=model, optimizer=optimizer)
    state = _verified(run, name, map_location=map_location, policy=policy, fit=fit)
    load_state(state, model=model, optimizer=optimizer)
    expectation = _expect_complete(run, name, state, policy, **parts)
    restored = restore_components(state, expectation, **parts, rng=rng)
    if restored:
        from resumeguard.decide.verified import say

        say(f"resumeguard: restored {', '.join(restored)} from checkpoint {Path(name).as_posix()}")
    _settle(live_run(run), "resumed")
    return state


def load_checkpoint(
    run: Any, name: str | os.PathLike[str], *, map_location: Any = "cpu", policy: Any = None
) -> Any:
    """The verified state of checkpoint ``name`` (loaded with ``weights_only=True``) without a
    model or optimizer, e.g. to build the model from it; check it with :func:`check_fit` once
    they exist, before ``load_state_dict``."""
    if disabled():
        return _plain_load(name, map_location)
    state = _verified(run, name, map_location=map_location, policy=policy, fit=None)
    _expect_complete(run, name, state, policy)
    _settle(live_run(run), "resumed")
    return state


def _expectation(
    name: str | os.PathLike[str],
    state: Any,
    scheduler: Any = None,
    scaler: Any = None,
    dataloader: Any = None,
) -> Expectation:
    """What a restore of ``state`` puts back, with the components given to it."""
    from resumeguard.collect.components import components_of

    return Expectation(
        name=Path(name).as_posix(),
        held=components_of(state),
        step=step_of(state, None, None, WANDB_STEP)[0],
        schedulers=many(scheduler),
        scalers=many(scaler),
        dataloader=dataloader,
    )


def _expect_complete(
    run: Any,
    name: str | os.PathLike[str],
    state: Any,
    policy: Any,
    scheduler: Any = None,
    scaler: Any = None,
    dataloader: Any = None,
) -> Expectation:
    """Check at the first optimizer step that the resume put back what the run needs; the
    findings are judged by the run's policy and logged (or raise, where a rule blocks)."""
    from resumeguard.decide.pipeline import ensure_recorded, restore_policy

    run = live_run(run)
    label = Path(name).as_posix()
    record = ensure_recorded(run) if run is not None else None
    resolved = restore_policy(run, record, policy)
    expectation = _expectation(label, state, scheduler, scaler, dataloader)

    expect_at_first_step(expectation, judging_with(label, resolved))
    return expectation


def check_fit(
    state: Any,
    *,
    model: Any = None,
    optimizer: Any = None,
    name: str = "checkpoint",
    saved_class: str | None = None,
    saved_names: Sequence[str | None] = (),
    saved_order: Sequence[str] = (),
    configured: Mapping[str, Any] | None = None,
) -> None:
    """Raise CheckpointError when ``state`` (a loaded checkpoint) does not fit ``model`` and
    ``optimizer``; warn about the hyperparameters loading it would override. Names of a
    ``torch.compile``d model (``_orig_mod.``) fit the plain model and the other way round."""
    from resumeguard.verdict.fit import check_fit as optimizer_fit
    from resumeguard.verdict.fit import check_model_fit, hyper_overrides

    model_state = find_model_state(state)
    problems = []
    if optimizer is not None:
        opt_state = find_optimizer_state(state)
        if opt_state is None:
            raise CheckpointError(f"checkpoint {name} holds no optimizer state to restore")
        problems = optimizer_fit(
            opt_state,
            optimizer,
            model=model,
            saved_model_state=model_state,
            saved_class=saved_class,
            saved_names=saved_names,
            saved_order=saved_order,
        )
    elif model is not None and model_state is not None:
        problems = check_model_fit(model_state, model)
    if problems:
        raise CheckpointError(
            f"checkpoint {name} does not fit the current model/optimizer; nothing was loaded",
            misfit_report(name, problems),
        )
    if optimizer is not None:
        opt_state = find_optimizer_state(state) or {}
        for override in hyper_overrides(opt_state, optimizer, configured=configured):
            log.warning("resumeguard: %s (%s); %s", override.message, override.path, override.hint)


def misfit_report(name: str, problems: Sequence[FitProblem]) -> Report:
    """The ways a checkpoint does not fit, as a blocking report (rendered like the CLI's)."""
    from resumeguard.verdict.findings import Judged
    from resumeguard.verdict.judge import report_of

    # Not the policy's to judge: load_state_dict would fail, or load the wrong state.
    rule = "does not fit: load_state_dict would fail or load wrong state"
    judged = [
        Judged(Finding(p.path, p.recorded, p.current, p.message, p.hint), Severity.BLOCK, rule)
        for p in problems
    ]
    return report_of(name, judged)


def with_configured(checkpoint: CheckpointRecord, record: RunRecord) -> CheckpointRecord:
    """The checkpoint's record, with the optimizer configuration the run started with where the
    checkpoint was saved from a state dict alone (which does not hold it)."""
    from resumeguard.collect.optimizer import OptimizerRecord

    started = record.fingerprint.optimizer
    own = checkpoint.optimizer
    if not isinstance(started, OptimizerRecord) or started.defaults is None:
        return checkpoint
    if isinstance(own, OptimizerRecord) and own.defaults is None and own.cls == started.cls:
        return dataclasses.replace(
            checkpoint, optimizer=dataclasses.replace(own, defaults=started.defaults)
        )
    return checkpoint


def load_state(state: Any, *, model: Any, optimizer: Any) -> None:
    """Load a checked state into the model and optimizer (compile prefixes matched)."""
    model_state = find_model_state(state)
    opt_state = find_optimizer_state(state)
    if model is not None and model_state is not None:
        model.load_state_dict(keys_for(model_state, model))
    if optimizer is not None and opt_state is not None:
        optimizer.load_state_dict(opt_state)


Fit = Callable[..., None]

RESTORE_CALL = "restore_checkpoint"


def load_for_script(run: Any, name: str, read: Callable[[BinaryIO], Any]) -> Any:
    """A script's own ``torch.load`` of recorded checkpoint ``name``: ``read`` (the script's
    load, with its own arguments) runs on bytes that match the record, or CheckpointError.
    Each process verifies alone (no collective: a script may load on one rank only)."""
    state = _verified(run, name, map_location=None, policy=None, fit=None, read=read, alone=True)
    _settle(live_run(run), "resumed")
    return state


def _verified(
    run: Any,
    name: str | os.PathLike[str],
    *,
    map_location: Any,
    policy: Any,
    fit: Fit | None,
    read: Callable[[BinaryIO], Any] | None = None,
    alone: bool = False,
) -> Any:
    """Every rank: its verified, fit-checked state of ``name`` (read by ``read``, else loaded
    weights only); none returns unless all pass, or, ``alone``, this process's own."""
    from resumeguard.collect.env import rank_and_world
    from resumeguard.decide.distributed import agree, all_ranks

    run = live_run(run)
    label = Path(name).as_posix()
    rank, world = (0, 1) if alone else rank_and_world()

    compared: list[str] = []  # the run whose record this process was compared with

    def recorded() -> dict[str, Any] | None:
        from resumeguard.decide.pipeline import check_checkpoint_run, ensure_recorded, step_check

        record = ensure_recorded(run) if run is not None else None
        other = None
        if record is None or label not in record.checkpoints:
            # A checkpoint this run did not save (or no run): the run it was saved in, named
            # by the record beside the file, must let this process resume from it.
            other = check_checkpoint_run(Path(label.replace("{rank}", "0")), Options(policy=policy))
            if other is not None:
                compared.append(other.run_id)
        if record is None:
            return None  # each rank reads the record beside its own file
        checkpoint = record.checkpoints.get(label) or _copy_of_a_save(record, label)
        if checkpoint is None and other is not None and other.stored is not None:
            # Another run's checkpoint, checked against that run: training goes on here.
            theirs = _in_their_run(other.stored, label)
            if theirs is not None:
                _say_new_run(label, other.run_id, str(run.id))
                return with_configured(theirs, other.stored).to_json()
        if checkpoint is None:
            checkpoint = lookup(record, label, run_label=str(getattr(run, "id", run)))
        step_check(run, record, checkpoint, label, policy)
        return with_configured(checkpoint, record).to_json()

    try:
        entry_json = recorded() if alone else agree(recorded, tag="restore", call=RESTORE_CALL)
    except (CheckpointError, ResumeBlocked) as e:
        _settle(run, "refused", str(e))
        raise
    error = ""
    state: Any = None
    started = time.monotonic()
    try:
        if entry_json is None:
            path = Path(label.replace("{rank}", str(rank)))
            origin = read_beside(path)
            if origin is None:
                raise CheckpointError(
                    f"checkpoint {path} has no resumeguard record beside it (.{path.name}"
                    ".resumeguard.json), so it cannot be verified; save it with "
                    "save_checkpoint, or pass the run it was saved in"
                )
            entry = origin.checkpoint
        else:
            entry = CheckpointRecord.from_json(entry_json)
        load = read or functools.partial(load_weights, name=label, map_location=map_location)
        state, chosen = _first_verified(run, entry, label, rank, world, load)
        if run is not None and chosen.digest in {h.digest for h in entry.history}:
            from resumeguard.decide import runfiles
            from resumeguard.decide.pipeline import step_check

            known = runfiles.current_record(run)
            if known is not None:  # the run logged past that save: run.step, by policy
                step_check(run, known, chosen, label, policy)
        if fit is not None:
            fit(
                state,
                name=label,
                saved_class=getattr(chosen.optimizer, "cls", None),
                saved_names=[p.name for p in getattr(chosen.optimizer, "params", ())],
                saved_order=list(getattr(chosen.model, "params", {})),
                configured=getattr(chosen.optimizer, "defaults", None),
            )
        if rank == 0:
            from resumeguard.decide.verified import say

            say(loaded_line(label, chosen, run, compared[0] if compared else None))
    except CheckpointError as e:
        if world <= 1:
            _settle(run, "refused", str(e))
            raise
        error = f"rank {rank}: {e}"
    # Every rank verifies a shard alike: the slowest may take a few times this one's time.
    part = 4 * (time.monotonic() - started)
    gathered = [error] if alone else all_ranks(error, tag="restore", call=RESTORE_CALL, part=part)
    errors = [e for e in gathered if e]
    if errors:
        refused = CheckpointError("; ".join(errors))
        _settle(run, "refused", str(refused))
        raise refused
    return state


def _plain_load(name: str | os.PathLike[str], map_location: Any) -> Any:
    """``torch.load`` of this rank's file, as a script without resumeguard would."""
    import torch

    from resumeguard.collect.env import rank_and_world

    path = Path(name).as_posix().replace("{rank}", str(rank_and_world()[0]))
    return torch.load(path, map_location=map_location, weights_only=True)


def _in_their_run(theirs: RunRecord, label: str) -> CheckpointRecord | None:
    """The record, in the run that saved it, of checkpoint file ``label`` (by the name the
    record beside it gives, else by its path)."""
    from resumeguard.checkpoint.beside import checkpoint_origin

    origin = checkpoint_origin(Path(label.replace("{rank}", "0")))
    name = origin.name if origin is not None else label
    return theirs.checkpoints.get(name) or theirs.checkpoints.get(label)


def _say_new_run(label: str, theirs: str, ours: str) -> None:
    """The warning for a new run restoring another run's checkpoint (a lost run id)."""
    log.warning(
        "resumeguard: %s was saved in run %s and was checked against it; this process runs as "
        "the new run %s, so training continues in a new run, not in %s. To resume %s itself, "
        'start it with id="%s" (resume="must")',
        label,
        theirs,
        ours,
        theirs,
        theirs,
        theirs,
    )


def _copy_of_a_save(record: RunRecord, label: str) -> CheckpointRecord | None:
    """A file the run did not save under this name that holds bytes one of its saves wrote
    (a ``shutil.copyfile`` of it: ``model_best.pth.tar``): that save, read from the file."""
    from resumeguard.io.hashing import digest_file

    path = Path(label)
    if "{rank}" in label or not path.is_file():
        return None
    found = record.save_of(*digest_file(path))
    if found is None:
        return None
    name, save = found
    log.info(
        "resumeguard: %s holds the save of %s at step %s (recognised by its digest)",
        label,
        name,
        save.step,
    )
    return save.as_save(save.as_entry(), source=str(path.resolve()))


def loaded_line(label: str, chosen: CheckpointRecord, run: Any, other: str | None) -> str:
    """The line a restore logs: what was verified, and without a run, what was not."""
    step = f"step {chosen.step}, " if chosen.step is not None else ""
    line = (
        f"resumeguard: checkpoint {label} ({step}{chosen.size} bytes) matches its recorded "
        f"digest {chosen.digest[:27]}...; loaded"
    )
    if run is not None:
        return line
    if other is not None:
        return (
            f"{line}; code and deps compared with the record of run {other}, which saved it; "
            "config not compared (no run)"
        )
    return f"{line}; code and config not compared (no run record)"


def _settle(run: Any, outcome: str, reason: str = "") -> None:
    """The pending resume in the run's audit trail went ahead, or was refused here."""
    if run is not None:
        from resumeguard.decide.runfiles import settle

        settle(run, outcome, reason)


def _first_verified(
    run: Any,
    entry: CheckpointRecord,
    label: str,
    rank: int,
    world: int,
    load: Callable[[BinaryIO], Any],
) -> tuple[Any, CheckpointRecord]:
    """The state of the first save of ``entry`` whose bytes verify: a save killed midway keeps
    the one before it (``previous``), which wins while its bytes are still there."""
    saves = []
    older = entry.previous
    while older is not None:
        saves.append(older)
        older = older.previous
    saves.append(entry)
    first_error: CheckpointError | None = None
    for save in saves:
        shards = save.shards or (save,)
        if len(shards) > 1 and len(shards) != world:
            raise CheckpointError(
                f"checkpoint {label} was saved by {len(shards)} ranks; this world has {world}"
            )
        mine = shards[rank] if len(shards) > 1 else shards[0]
        with tempfile.TemporaryDirectory(prefix="resumeguard-") as download:
            for path in _locations(run, mine, rank=rank, download=Path(download)):
                try:
                    if path.is_file():  # the zip's directory, before anything loads
                        check_archive(path, name=label)
                    state = read_verified(path, mine, name=label, load=load)
                except CheckpointError as e:
                    first_error = first_error or e
                    continue
                if save is not entry:
                    log.warning(
                        "resumeguard: the save of %s at step %s did not complete; restoring "
                        "the checkpoint before it (step %s)",
                        label,
                        entry.step,
                        save.step,
                    )
                return state, save
    assert first_error is not None
    earlier = _earlier_save(entry, label, load) if not entry.shards else None
    if earlier is not None:
        return earlier
    raise first_error


def _earlier_save(
    entry: CheckpointRecord, label: str, load: Callable[[BinaryIO], Any]
) -> tuple[Any, CheckpointRecord] | None:
    """The state of the file ``entry`` was saved to when it holds an earlier save of the name
    (its digest is in the history): a genuine save of the run, said as such, never "changed
    or corrupted". None when it holds no recorded save."""
    from resumeguard.io.hashing import digest_file
    from resumeguard.records.run import older_save

    path = Path(entry.source)
    if not entry.history or not path.is_file():
        return None
    digest, size = digest_file(path)
    for saved in entry.history:
        if (saved.digest, saved.size) == (digest, size):
            older = entry.as_save(saved)
            state = read_verified(path, older, name=label, load=load)
            log.warning(
                "resumeguard: %s holds %s; restoring that save", label, older_save(entry, older)
            )
            return state, older
    return None


def _locations(run: Any, shard: CheckpointRecord, *, rank: int, download: Path) -> list[Path]:
    """Where this process can read the shard's bytes: the run's copy (downloaded when it is a
    run file not on this machine), then the file it was saved to."""
    found: list[Path] = []
    if run is not None and shard.file:
        local = find_copy(run, shard)
        if local is not None:
            found.append(local)
        elif not shard.local:
            from resumeguard.stores.choice import store_for_run

            store, ref = store_for_run(run)
            with contextlib.suppress(CheckpointError):  # gone from the run: try the source
                found.append(store.fetch_file(ref, shard.file, download))
    if shard.source:
        found.append(Path(shard.source))
    if not found:
        raise CheckpointError(f"rank {rank} has no copy of its checkpoint shard to verify")
    return found
