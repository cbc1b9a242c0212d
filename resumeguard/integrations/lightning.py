"""Lightning integration (``pip install 'resumeguard[lightning]'``): a callback that checks a
resume before training, records the W&B run that ``WandbLogger`` starts, and records and
verifies Lightning's own checkpoint files.

```python
from resumeguard.integrations.lightning import ResumeGuardCallback

trainer = Trainer(logger=WandbLogger(project="p", id=run_id), callbacks=[ResumeGuardCallback()])
trainer.fit(model, ckpt_path="last")
```

Where it hooks in, and why (lightning 2.6, paths below ``lightning/pytorch``):

- ``Callback.setup(stage="fit")`` is the first callback hook of a fit. ``Trainer._run`` calls
  ``call._call_setup_hook`` (trainer/trainer.py:1039), which first creates every logger's
  experiment, ``WandbLogger.experiment`` -> ``wandb.init`` (trainer/call.py:98-103,
  loggers/wandb.py:410), and only then calls the callbacks' ``setup`` (call.py:109). So the
  W&B run exists when the check runs: a callback cannot check before ``wandb.init`` the way
  ``resumeguard.init`` does. It still checks before the checkpoint is read
  (``_restore_modules_and_callbacks``, trainer.py:1046) and before any training step. Offline,
  that init only made a new run directory; online, W&B has marked the run resumed and shows it
  running because of this very process, so ``run.live`` is not judged there. ``WandbLogger``
  always passes ``resume="allow"`` (loggers/wandb.py:344), so a logger with an ``id`` (or
  ``WANDB_RUN_ID``) whose run has data from before is a resume.
- ``trainer.ckpt_path`` is still None in ``setup`` for ``fit(ckpt_path=...)``: the connector
  sets it in ``resume_start`` (trainer/connectors/checkpoint_connector.py:76), right before
  ``strategy.load_checkpoint`` reads the file. So the file is verified where it is read.
- The file hooks are the strategy's ``CheckpointIO`` plugin, wrapped in ``setup``
  (``Strategy.checkpoint_io`` has a public setter, strategies/strategy.py:90-92). It is where the
  bytes are written and read: ``Strategy.save_checkpoint`` -> ``checkpoint_io.save_checkpoint``
  on global rank zero (strategy.py:479-491), for ``ModelCheckpoint._save_checkpoint``
  (callbacks/model_checkpoint.py:593-607) and ``trainer.save_checkpoint`` alike;
  ``Strategy.load_checkpoint`` -> ``checkpoint_io.load_checkpoint`` (strategy.py:366-368), called
  by ``resume_start`` for ``ckpt_path``; ``Strategy.remove_checkpoint`` -> ``remove_checkpoint``
  (strategy.py:493-501) when ``ModelCheckpoint`` drops one from its top-k. ``Callback
  .on_save_checkpoint`` would be too early: ``dump_checkpoint`` calls it while the dict is built
  (checkpoint_connector.py:509), before the file is written (trainer.py:1463-1464); and
  ``Logger.after_save_checkpoint`` sees only ``ModelCheckpoint``'s saves.
- What Lightning knows of the run is compared in ``setup`` too: the module's and datamodule's
  ``hparams_initial`` (``_log_hyperparams`` logs them only after ``on_fit_start``,
  trainer/trainer.py:1062, so the record takes them from the module), the trainer's precision
  and gradient accumulation, and the effective batch size. A checkpoint's fit is checked by a
  ``load_state_dict`` pre-hook on the module, armed from ``setup`` to ``on_train_start``:
  ``restore_model`` calls ``load_state_dict`` (checkpoint_connector.py) after the file was read
  and verified, before any weight is copied. ``on_train_start`` comes after
  ``restore_training_state`` (trainer.py:1070) and before the first step: a resumed run whose
  ``global_step`` is still 0 is a silent restart.
- Rank zero holds the W&B run and decides; :func:`resumeguard.decide.distributed.agree` hands its
  error to every rank (DDP's process group exists by ``setup``), so all ranks stop together.
- Not covered: strategies that write checkpoints without ``CheckpointIO`` (DeepSpeed, FSDP
  sharded directories), ``AsyncCheckpointIO`` (the file is not written yet when the save
  returns; a warning says so), remote (fsspec URL) paths, and ``LightningModule
  .load_from_checkpoint`` (it reads the file directly, not through the strategy).

The callback binds to ``lightning.pytorch`` when that is installed, else to
``pytorch_lightning``: use it with the Trainer of that same package.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from resumeguard.checkpoint.storage import Storage
from resumeguard.decide.pipeline import resolve_intent
from resumeguard.decide.runfiles import settle
from resumeguard.errors import ResumeGuardError
from resumeguard.integrations import (
    FrameworkGuard,
    checkpoint_name,
    find_checkpoint,
    is_disabled,
    run_label,
)
from resumeguard.integrations.training import (
    BatchSize,
    LoadWatch,
    batch_rules,
    fit_findings,
    judge,
    restart,
    say,
    verified_line,
    with_batch,
)
from resumeguard.options import Options, disabled
from resumeguard.verdict.policy import Policy

try:
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import Callback
    from lightning.pytorch.plugins import CheckpointIO
except ImportError:  # the standalone package, for projects that still use only that one
    try:
        import pytorch_lightning as pl  # type: ignore[no-redef]
        from pytorch_lightning.callbacks import Callback  # type: ignore[assignment]
        from pytorch_lightning.plugins import CheckpointIO  # type: ignore[assignment]
    except ImportError as e:
        raise ImportError(
            "resumeguard.integrations.lightning needs Lightning: "
            "pip install 'resumeguard[lightning]'"
        ) from e

__all__ = ["ResumeGuardCallback"]

log = logging.getLogger("resumeguard")

STEP_COUNTER = "trainer/global_step"
"""What a checkpoint's step counts: Lightning's optimizer steps, logged to W&B as this."""


class ResumeGuardCallback(Callback):
    """Check a resume before training, record the W&B run and Lightning's checkpoint files,
    and verify a checkpoint's bytes before Lightning loads it for a resume.

    Blocked: ``resumeguard.ResumeBlocked``; a changed or truncated checkpoint:
    ``resumeguard.CheckpointError``; resume "must" with nothing recorded:
    ``resumeguard.Unverifiable`` (with ``raise_on_block=False``: printed, and the process exits
    with the error's status, as ``@resumeguard.guard`` does)."""

    def __init__(
        self,
        policy: Policy | str | None = None,
        repo: str | Path = ".",
        requirements: Sequence[str | Path] = (),
        raise_on_block: bool = False,
        keep_copies: bool = True,
        storage: Storage | str | None = None,
    ) -> None:
        super().__init__()
        self.guard = FrameworkGuard(
            Options(policy=policy, repo=repo, requirements=tuple(requirements), storage=storage),
            raise_on_block=raise_on_block,
            keep_copies=keep_copies,
        )
        self.run: Any = None
        """The W&B run this callback records into (None until a fit starts, or without one)."""
        self._warned: set[str] = set()
        self._batch: BatchSize | None = None
        self._config: dict[str, Any] = {}
        self._loaded: str | None = None
        self._loads = LoadWatch()

    # --- Lightning hooks ----------------------------------------------------------------------

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Wrap the checkpoint IO; at a fit, check a resume (code, dependencies, hparams,
        effective batch size) and make sure the run is recorded, then watch the checkpoint's
        load into the module."""
        if disabled():
            return
        self._wrap_checkpoint_io(trainer)
        if stage == "fit":
            # Rank zero holds the W&B run and decides; every rank gets its error (DDP has set up
            # the process group before this hook), so no rank trains on alone.
            self._agree(lambda: self._start(trainer, pl_module), tag="lightning-setup")
            self._loads.arm(pl_module, lambda state: self._fit(state, pl_module))

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """After the restore, before the first step: a resumed run that starts from step 0
        (no checkpoint was loaded) is a silent restart."""
        if disabled():
            return
        self._loads.disarm()
        self._agree(lambda: self._begin(trainer), tag="lightning-start")

    # --- what the hooks do --------------------------------------------------------------------

    def _start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        logger = _wandb_logger(trainer)
        if logger is not None:
            run = logger.experiment  # created by Lightning just before this hook (call.py:103)
            # The logger's own wandb.init arguments: WandbLogger always passes resume="allow".
            init = getattr(logger, "_wandb_init", {}) or {}
            intent = resolve_intent(init.get("id"), init.get("resume"))
        else:
            import wandb

            run, intent = wandb.run, resolve_intent()
        if run is None or is_disabled(run):
            self._warn_once(
                "no-run",
                "resumeguard: no W&B run in this fit (add a WandbLogger): nothing to check this "
                "resume against, and the checkpoints are not recorded",
            )
            return
        hparams = _hparams(trainer, pl_module)
        self._batch = _batch_size(trainer, pl_module, hparams)
        self._config = with_batch({**hparams, **_trainer_facts(trainer)}, self._batch)
        self.guard.check(intent, run=run, facts=self._config, rules=batch_rules(self._batch))
        self.guard.adopt(run, facts=self._config)
        self.run = run

    def _fit(self, state: Mapping[str, Any], pl_module: pl.LightningModule) -> None:
        """Before Lightning copies the checkpoint's weights into the module (every rank)."""

        def decide() -> None:
            if self.guard.checked is not None:
                judge(self.guard.checked, fit_findings(state, pl_module))

        self._agree(decide, tag="lightning-fit")

    def _begin(self, trainer: pl.Trainer) -> None:
        check = self.guard.checked
        if check is None:
            return  # a fresh run, or one another front door guards
        restart(check, trainer.global_step)
        settle(self.run, "resumed", check=check)  # every check passed: the resume goes ahead
        say(verified_line(check, self._loaded, self._batch))

    def _saved(self, path: Any, step: Any, checkpoint: Mapping[str, Any] | None = None) -> None:
        """After Lightning wrote a checkpoint file (global rank zero): record it, and what its
        state holds."""
        if self.run is None or not _is_local(path):
            return
        from resumeguard.collect.components import components_of

        name = checkpoint_name(path)
        try:
            self.guard.record(
                self.run,
                [(name, Path(path))],
                step=step if isinstance(step, int) else None,
                counter=STEP_COUNTER,
                held={name: components_of(checkpoint)} if checkpoint is not None else None,
            )
        except OSError as e:  # never lose the training over the record; a resume will say so
            log.error("resumeguard: checkpoint %s was saved but not recorded: %s", name, e)

    def _removed(self, path: Any) -> None:
        if self.run is not None and _is_local(path):
            self.guard.forget(self.run, [checkpoint_name(path)])

    def _before_load(self, path: Any) -> None:
        """Before Lightning reads a checkpoint (every rank reads it): rank zero verifies."""

        def verify() -> None:
            if not _is_local(path):
                self._warn_once("remote", f"resumeguard: {path} is remote; not verified")
                return
            # A checkpoint no run check covered (a new run, or none): the run it was saved in.
            origin = self.guard.check_checkpoint(Path(path), self.run)
            if self.run is None and origin is None:
                return  # nothing to verify against; check_checkpoint said why
            record = origin or self.guard.known_record(self.run)
            checked = self.guard.checked
            label = checked.run_id if origin is not None and checked else run_label(self.run)
            self.guard.verify_file(record, Path(path), run_label=label)
            found = find_checkpoint(record, Path(path)) if record is not None else None
            if found is not None:
                self._loaded = f"{found[0]} ({found[1].digest[:19]})"

        self._agree(verify, tag="lightning-load")

    def _expect_restored(self, checkpoint: Mapping[str, Any], path: Any) -> None:
        """Lightning restores the LR schedulers and the precision plugin's scaler itself: at the
        first step after the restore, assert that it did (rank zero reports)."""
        from resumeguard.collect.components import components_of
        from resumeguard.collect.env import rank_and_world

        if rank_and_world()[0] != 0 or not isinstance(checkpoint, Mapping):
            return
        step = checkpoint.get("global_step")
        self.guard.expect_complete(
            checkpoint_name(path) if _is_local(path) else str(path),
            components_of(checkpoint),
            step if isinstance(step, int) else None,
        )

    def _agree(self, decide: Callable[[], None], *, tag: str) -> None:
        from resumeguard.decide.distributed import agree

        try:
            agree(decide, tag=tag)
        except ResumeGuardError as e:
            self.guard.fail(e, self.run)

    def _wrap_checkpoint_io(self, trainer: pl.Trainer) -> None:
        strategy = trainer.strategy
        current = strategy.checkpoint_io
        if isinstance(current, _GuardedCheckpointIO) and current.owner is self:
            return
        if type(current).__name__ == "AsyncCheckpointIO":
            self._warn_once(
                "async",
                "resumeguard: AsyncCheckpointIO writes checkpoints after the save returns; they "
                "are not recorded, and a checked resume from one is refused",
            )
        strategy.checkpoint_io = _GuardedCheckpointIO(current, self)

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message)


class _GuardedCheckpointIO(CheckpointIO):
    """The strategy's CheckpointIO with resumeguard around it: record after each write, verify
    before each read, forget after each removal. Everything else goes to the wrapped plugin."""

    def __init__(self, inner: Any, owner: ResumeGuardCallback) -> None:
        super().__init__()
        self.inner = inner
        self.owner = owner
        self.asynchronous = type(inner).__name__ == "AsyncCheckpointIO"

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        """Write through the wrapped plugin, then record the file it wrote."""
        self.inner.save_checkpoint(checkpoint, path, storage_options=storage_options)
        if not self.asynchronous:
            self.owner._saved(path, checkpoint.get("global_step"), checkpoint)

    def load_checkpoint(self, path: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Verify the file against the run's record, then read it with the wrapped plugin."""
        self.owner._before_load(path)
        loaded: dict[str, Any] = self.inner.load_checkpoint(path, *args, **kwargs)
        self.owner._expect_restored(loaded, path)
        return loaded

    def remove_checkpoint(self, path: Any) -> None:
        """Remove through the wrapped plugin, then drop the file's record and the run's copy."""
        self.inner.remove_checkpoint(path)
        self.owner._removed(path)

    def teardown(self) -> None:
        """Tear down the wrapped plugin."""
        self.inner.teardown()

    def __getattr__(self, name: str) -> Any:
        # Plugin-specific attributes (e.g. an XLA or cloud plugin's options) stay reachable.
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


def _wandb_logger(trainer: pl.Trainer) -> Any:
    """The trainer's first WandbLogger (of the same Lightning package as the callback), if any."""
    from importlib import import_module

    wandb_logger = import_module(f"{pl.__name__}.loggers").WandbLogger
    for logger in trainer.loggers:
        if isinstance(logger, wandb_logger):
            return logger
    return None


def _is_local(path: Any) -> bool:
    """True for a path on this machine's file system (not an fsspec URL such as s3://)."""
    return "://" not in str(os.fspath(path))


def _hparams(trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
    """The hyper-parameters Lightning logs after the setup hook (``_log_hyperparams``: the
    module's and the datamodule's ``hparams_initial``), converted as ``WandbLogger`` does."""
    from importlib import import_module

    fabric = "lightning.fabric" if pl.__name__ == "lightning.pytorch" else "lightning_fabric"
    convert = import_module(f"{fabric}.utilities.logger")
    merged: dict[str, Any] = {}
    if getattr(pl_module, "_log_hyperparams", True):
        merged.update(pl_module.hparams_initial)
    datamodule = getattr(trainer, "datamodule", None)
    if datamodule is not None and getattr(datamodule, "_log_hyperparams", True):
        merged.update(datamodule.hparams_initial)
    merged.pop("_class_path", None)  # LightningCLI's own key, not logged either
    params = convert._convert_params(merged)
    params = convert._sanitize_callable_params(params)
    return dict(convert._convert_json_serializable(params))


def _trainer_facts(trainer: pl.Trainer) -> dict[str, Any]:
    """Trainer settings that change what a step computes, under resumeguard's own keys."""
    return {
        "trainer/precision": str(trainer.precision),
        "trainer/accumulate_grad_batches": trainer.accumulate_grad_batches,
    }


def _batch_size(
    trainer: pl.Trainer, pl_module: pl.LightningModule, hparams: Mapping[str, Any]
) -> BatchSize | None:
    """The effective batch size, where the per-device batch is known before the data loads:
    a DataLoader passed to ``fit``, else ``batch_size`` of the module or datamodule (attribute
    or hparam, as Lightning's batch-size finder reads it). None when it is not."""
    from importlib import import_module

    from torch.utils.data import DataLoader

    parsing = import_module(f"{pl.__name__}.utilities.parsing")
    per_device: Any = None
    source = getattr(trainer.fit_loop, "_data_source", None)
    loader = getattr(source, "instance", None)
    if isinstance(loader, DataLoader):
        per_device = loader.batch_size or getattr(loader.batch_sampler, "batch_size", None)
    elif parsing.lightning_hasattr(pl_module, "batch_size"):
        per_device = parsing.lightning_getattr(pl_module, "batch_size")
    if not isinstance(per_device, int) or per_device <= 0:
        return None
    keys = ["trainer/accumulate_grad_batches"]
    if hparams.get("batch_size") == per_device:
        keys.append("batch_size")
    return BatchSize(
        per_device=per_device,
        world_size=trainer.world_size,
        accumulation=trainer.accumulate_grad_batches,
        factor_keys=tuple(keys),
    )
