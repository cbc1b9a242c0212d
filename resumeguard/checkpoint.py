"""Checkpoints: atomic save with a recorded digest, and a verified, fit-checked restore."""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resumeguard import runfiles
from resumeguard.configured import configured_for, watch_optimizers
from resumeguard.distributed import agree, all_ranks, rank_and_world
from resumeguard.errors import CheckpointError, ResumeBlocked
from resumeguard.hashing import digest_file
from resumeguard.pipeline import ensure_recorded, settle, step_check
from resumeguard.record import Unavailable
from resumeguard.runrecord import CheckpointRecord, RunRecord, now, run_copy_name

if TYPE_CHECKING:
    from resumeguard.fit import FitProblem
    from resumeguard.report import Report

log = logging.getLogger("resumeguard")


def find_optimizer_state(state: Any) -> Mapping[str, Any] | None:
    """The first optimizer state dict inside ``state`` (a dict with "state" and "param_groups")."""
    if isinstance(state, Mapping):
        if "state" in state and "param_groups" in state:
            return state
        for key in ("optimizer", "optimizer_state_dict", "optim", "opt"):
            found = find_optimizer_state(state.get(key))
            if found is not None:
                return found
        for value in state.values():
            if isinstance(value, Mapping):
                found = find_optimizer_state(value)
                if found is not None:
                    return found
    return None


def find_model_state(state: Any) -> Mapping[str, Any] | None:
    """The model state dict inside ``state`` under a usual key, if any."""
    if isinstance(state, Mapping):
        for key in ("model", "model_state_dict", "state_dict", "module"):
            value = state.get(key)
            if isinstance(value, Mapping):
                return value
    return None


def _step_of(state: Any, step: int | None, run: Any) -> int | None:
    if step is not None:
        return step
    if isinstance(state, Mapping):
        for key in ("step", "global_step", "iteration"):
            value = state.get(key)
            if isinstance(value, int):
                return value
    run_step = getattr(run, "step", None)
    return run_step if isinstance(run_step, int) else None


def write_checkpoint(state: Any, path: Path) -> tuple[str, int]:
    """``torch.save`` to a temp file beside ``path``, fsync, rename; returns digest and size."""
    import torch

    from resumeguard.atomic import replacing

    with replacing(path) as tmp:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        digest, size = digest_file(tmp)
    return digest, size


def save_checkpoint(
    run: Any,
    state: Any,
    name: str | os.PathLike[str],
    *,
    step: int | None = None,
    optimizer: Any = None,
    model: Any = None,
) -> CheckpointRecord:
    """Write ``state`` atomically to ``name``, keep the run's own copy of those exact bytes, and
    record digest, size, step and the optimizer and model fingerprints under ``name``.

    Under torch.distributed every rank calls it (``run`` may be None off rank 0): with
    ``{rank}`` in ``name`` each rank writes and fingerprints its own shard, without it rank 0
    writes the (replicated) state; rank 0 records every shard."""
    watch_optimizers()
    rank, world = rank_and_world()
    template = Path(name).as_posix()
    per_rank = "{rank}" in template
    shard: CheckpointRecord | None = None
    if rank == 0 or per_rank:
        path = Path(template.replace("{rank}", str(rank)))
        shard = _write_shard(state, path, step=step, run=run, optimizer=optimizer, model=model)
        if world > 1:
            shard = dataclasses.replace(shard, rank=rank)
    gathered = all_ranks(shard.to_json() if shard is not None else None)
    if rank != 0:
        assert shard is not None or not per_rank
        return shard if shard is not None else CheckpointRecord.from_json(gathered[0])
    if run is None:
        from resumeguard.errors import BadInput

        raise BadInput("save_checkpoint needs the W&B run on rank 0 (pass the run there)")
    with runfiles.recording(run):  # another thread's save must not publish in between
        record = ensure_recorded(run)
        shards = [
            _keep_in_run(run, CheckpointRecord.from_json(g), template)
            for g in gathered
            if g is not None
        ]
        main = shards[0]
        if len(shards) > 1:
            main = dataclasses.replace(main, shards=tuple(shards))
        runfiles.publish(run, record.with_checkpoint(template, main))
        runfiles.write_state(run)
    settle(run, "resumed")  # a resume that saves a checkpoint went ahead
    return main


def _write_shard(
    state: Any, path: Path, *, step: int | None, run: Any, optimizer: Any, model: Any
) -> CheckpointRecord:
    """Write one file and describe it: digest, size, step, optimizer and model fingerprints."""
    from resumeguard.collect.optimizer import collect_model, collect_optimizer

    digest, size = write_checkpoint(state, path)
    opt_state = find_optimizer_state(state)
    opt_record: Any = Unavailable("no optimizer state in the checkpoint")
    if optimizer is not None:
        opt_record = collect_optimizer(optimizer, model=model)
    elif opt_state is not None:
        opt_record = collect_optimizer(opt_state)
        # The state dict holds the schedule's values; the optimizer it came from, what was set.
        opt_record = dataclasses.replace(opt_record, defaults=configured_for(opt_state))
    return CheckpointRecord(
        file="",
        digest=digest,
        size=size,
        step=_step_of(state, step, run),
        saved_at=now(),
        source=str(path.resolve()),
        optimizer=opt_record,
        model=collect_model(model) if model is not None else Unavailable("not given"),
    )


def _keep_in_run(run: Any, shard: CheckpointRecord, key: str) -> CheckpointRecord:
    """Put the run's own copy of a shard's bytes in its files directory (when this host can
    read the file) and hand it to W&B; the record then points at that copy."""

    source = Path(shard.source)
    if not source.is_file():
        return shard  # another node's local disk: the rank verifies its own file at restore
    rel = run_copy_name(key, shard.rank)
    run_copy = Path(run.dir) / rel
    _snapshot(source, run_copy)
    runfiles.save_run_file(run, run_copy)
    return dataclasses.replace(shard, file=rel)


def _snapshot(source: Path, dest: Path) -> None:
    """The run's copy: a hard link where possible (the user's next save replaces the inode, so
    the link keeps these bytes), else a copy. An edit in place is caught by the digest."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() or dest.is_symlink():
        dest.unlink()
    try:
        os.link(source, dest)
    except OSError:
        shutil.copyfile(source, dest)


def verify_file(path: Path, checkpoint: CheckpointRecord, *, name: str) -> None:
    """Raise CheckpointError unless ``path`` holds exactly the recorded bytes."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {name} is missing: {path} does not exist")
    digest, size = digest_file(path)
    if size != checkpoint.size:
        what = "truncated" if size < checkpoint.size else "longer than recorded"
        raise CheckpointError(
            f"checkpoint {name} is {what}: {size} of {checkpoint.size} bytes; nothing was loaded "
            "(restore an intact copy, or save a new checkpoint)"
        )
    if digest != checkpoint.digest:
        raise CheckpointError(
            f"checkpoint {name} does not match its record (digest {digest[:19]}..., recorded "
            f"{checkpoint.digest[:19]}...): it was changed or corrupted after it was saved; "
            "nothing was loaded"
        )


def load_verified(path: Path, *, name: str, map_location: Any = "cpu") -> Any:
    """``torch.load`` with ``weights_only=True``; arbitrary pickled objects are refused."""
    import pickle

    import torch

    from resumeguard.archive import check_archive

    check_archive(path, name=name)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"refusing to load checkpoint {name}: it holds pickled objects other than tensors "
            f"and plain containers ({str(e).splitlines()[0][:160]}); save plain state dicts"
        ) from e
    except (RuntimeError, EOFError, ValueError) as e:
        raise CheckpointError(f"checkpoint {name} cannot be read by torch: {e}") from e


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
    map_location: Any = "cpu",
    policy: Any = None,
) -> Any:
    """Fetch checkpoint ``name``, verify its digest, load it with ``weights_only=True``, check that
    its optimizer state fits ``optimizer`` and ``model`` BEFORE loading, warn about
    hyperparameters it will override, then load into them and return the state.

    Under torch.distributed every rank calls it (``run`` may be None off rank 0); each rank
    verifies and fit-checks its own shard, and unless every rank passes, none loads."""
    watch_optimizers()
    label = Path(name).as_posix()
    rank, world = rank_and_world()

    def recorded() -> dict[str, Any]:
        record = ensure_recorded(run)
        checkpoint = lookup(record, label, run_label=str(getattr(run, "id", run)))
        step_check(run, record, checkpoint, label, policy)
        return with_configured(checkpoint, record).to_json()

    try:
        checkpoint = CheckpointRecord.from_json(agree(recorded, tag="restore"))
    except (CheckpointError, ResumeBlocked) as e:
        if run is not None:
            settle(run, "refused", str(e))
        raise
    shards = checkpoint.shards or (checkpoint,)
    error = ""
    state: Any = None
    try:
        if len(shards) > 1 and len(shards) != world:
            raise CheckpointError(
                f"checkpoint {label} was saved by {len(shards)} ranks; this world has {world}"
            )
        mine = shards[rank] if len(shards) > 1 else shards[0]
        # A download (online) lives only until the state is in memory.
        with tempfile.TemporaryDirectory(prefix="resumeguard-") as download:
            path = _locate(run, mine, rank=rank, download=Path(download))
            verify_file(path, mine, name=label)
            state = load_verified(path, name=label, map_location=map_location)
        check_state(state, mine, model=model, optimizer=optimizer, name=label)
    except CheckpointError as e:
        if world <= 1:
            if run is not None:
                settle(run, "refused", str(e))
            raise
        error = f"rank {rank}: {e}"
    errors = [e for e in all_ranks(error) if e]
    if errors:
        refused = CheckpointError("; ".join(errors))
        if run is not None:
            settle(run, "refused", str(refused))
        raise refused
    load_state(state, model=model, optimizer=optimizer)
    if run is not None:
        settle(run, "resumed")
    if rank == 0:
        from resumeguard.verified import say

        say(
            f"resumeguard: checkpoint {label} (step {mine.step}, {mine.size} bytes) matches its"
            f" recorded digest {mine.digest[:27]}...; loaded"
        )
    return state


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


def _locate(run: Any, shard: CheckpointRecord, *, rank: int, download: Path) -> Path:
    """The file to verify: the run's copy where this process holds the run, else the rank's own."""
    if run is not None and shard.file:
        local = Path(run.dir) / shard.file if hasattr(run, "dir") else None
        if local is not None and local.is_file():
            return local
        from resumeguard.stores.interface import store_for_run

        store, ref = store_for_run(run)
        return store.fetch_file(ref, shard.file, download)
    if shard.source:
        return Path(shard.source)
    raise CheckpointError(f"rank {rank} has no copy of its checkpoint shard to verify")


def check_state(
    state: Any, checkpoint: CheckpointRecord, *, model: Any, optimizer: Any, name: str
) -> None:
    """Raise CheckpointError when the optimizer state does not fit; warn about overrides."""
    from resumeguard.fit import check_fit, hyper_overrides

    if optimizer is None:
        return
    opt_state = find_optimizer_state(state)
    if opt_state is None:
        raise CheckpointError(f"checkpoint {name} holds no optimizer state to restore")
    problems = check_fit(
        opt_state,
        optimizer,
        model=model,
        saved_model_state=find_model_state(state),
        saved_class=getattr(checkpoint.optimizer, "cls", None),
        saved_names=[p.name for p in getattr(checkpoint.optimizer, "params", ())],
        saved_order=list(getattr(checkpoint.model, "params", {})),
    )
    if problems:
        raise CheckpointError(
            f"checkpoint {name} does not fit the current model/optimizer; nothing was loaded",
            misfit_report(name, problems),
        )
    configured = getattr(checkpoint.optimizer, "defaults", None)
    for override in hyper_overrides(opt_state, optimizer, configured=configured):
        log.warning("resumeguard: %s (%s); %s", override.message, override.path, override.hint)


def misfit_report(name: str, problems: Sequence[FitProblem]) -> Report:
    """The ways a checkpoint does not fit, as a blocking report (rendered like the CLI's)."""
    from resumeguard.findings import Finding, Judged, Severity, Verdict
    from resumeguard.report import Report

    rule = "does not fit: load_state_dict would fail or load wrong state"
    judged = tuple(
        Judged(Finding(p.path, p.recorded, p.current, p.message, p.hint), Severity.BLOCK, rule)
        for p in problems
    )
    return Report(run=name, verdict=Verdict.BLOCK, findings=judged)


def load_state(state: Any, *, model: Any, optimizer: Any) -> None:
    """Load a checked state into the model and optimizer."""
    model_state = find_model_state(state)
    opt_state = find_optimizer_state(state)
    if model is not None and model_state is not None:
        model.load_state_dict(model_state)
    if optimizer is not None and opt_state is not None:
        optimizer.load_state_dict(opt_state)
