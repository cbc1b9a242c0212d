"""Hugging Face Trainer integration (``pip install 'resumeguard[transformers]'``): a callback that
checks a W&B resume, records the run ``WandbCallback`` starts, and records and verifies the
files of each Trainer checkpoint directory.

```python
from resumeguard.integrations.transformers import ResumeGuardTrainerCallback

# WANDB_RUN_ID=... WANDB_RESUME=allow, as WandbCallback's wandb.init reads them
trainer = Trainer(model, args, train_dataset=ds, callbacks=[ResumeGuardTrainerCallback()])
trainer.train(resume_from_checkpoint=True)
```

Where it hooks in, and why (transformers 5.x, ``transformers/trainer.py``):

- ``on_init_end`` fires at the end of ``Trainer.__init__`` (trainer.py:642), before ``train()``
  and before ``WandbCallback`` calls ``wandb.init`` (in its ``on_train_begin`` -> ``setup``,
  integrations/integration_utils.py:826 and :762). The W&B resume is known there
  (``WANDB_RUN_ID``/``WANDB_RESUME``, which that ``wandb.init()`` reads), so it is checked
  there, like ``resumeguard.init``: a blocked resume raises from ``Trainer(...)`` and the run is
  untouched. A callback added later with ``trainer.add_callback`` checks in ``on_train_begin``.
- ``train(resume_from_checkpoint=...)`` reads the checkpoint before any callback fires: the
  weights in ``_load_from_checkpoint`` (trainer.py:1564), optimizer, scheduler and scaler in
  ``_prepare_for_training`` (trainer.py:1815-1818); the first event of ``train()``,
  ``on_train_begin``, comes after (trainer.py:1653), and the RNG state only in the first epoch
  (trainer.py:1857). So the directory is verified in ``on_train_begin``, which fails the run
  before any training step, but after those files were read into memory (with
  ``weights_only`` loading, as transformers does). To verify before anything is read, set
  ``TrainingArguments(resume_from_checkpoint=PATH)`` (then it is verified in ``on_init_end``) or
  call :meth:`ResumeGuardTrainerCallback.verify_checkpoint` before ``train()``.
- Which directory was loaded is not passed to callbacks: ``on_train_begin`` sees the restored
  ``state.global_step`` and looks at ``args.resume_from_checkpoint``, then
  ``output_dir/checkpoint-<global_step>`` (what ``resume_from_checkpoint=True`` picks), and takes
  the one whose ``trainer_state.json`` holds that step.
- What the Trainer knows of the run is compared in ``on_init_end``: the config WandbCallback
  gives the run (the model's config with ``args.to_dict()`` over it) and the effective batch
  size. A checkpoint's fit is checked by a ``load_state_dict`` pre-hook on the model, armed in
  ``on_init_end``: ``_load_from_checkpoint`` calls ``model.load_state_dict(state_dict, False)``
  (trainer.py:3703) inside ``train()`` before ``on_train_begin``, so a width change is refused
  before the Trainer's size-mismatch error and before ``wandb.init``. A resumed run whose
  restored ``state.global_step`` is 0 in ``on_train_begin`` is a silent restart (after
  ``wandb.init``: that event is the first of ``train()``).
- ``on_save`` fires after ``_save_checkpoint`` wrote ``output_dir/checkpoint-<global_step>``
  and rotated old ones away (trainer.py:2285-2286, 3363-3430): every file in it is recorded,
  and the records of rotated checkpoints are dropped.
- Rank 0, where ``WandbCallback`` keeps the run, checks and verifies;
  :func:`resumeguard.decide.distributed.agree` hands its error to every rank (accelerate has set
  up the process group when ``TrainingArguments`` picked the device), so all ranks stop together.
  Only rank 0 writes checkpoints (``args.should_save``), so only it records them.
- Not covered: hyperparameter-search trials (their own output dirs) and W&B runs started with a
  plain ``wandb.init`` (use ``resumeguard.init`` for those).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from resumeguard.api.complete import directory_components, file_components
from resumeguard.checkpoint.storage import Storage
from resumeguard.decide.pipeline import resolve_intent
from resumeguard.decide.runfiles import settle
from resumeguard.errors import CheckpointError, ResumeGuardError
from resumeguard.integrations import (
    FrameworkGuard,
    checkpoint_name,
    files_below,
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
    from transformers import TrainerCallback
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
except ImportError as e:
    raise ImportError(
        "resumeguard.integrations.transformers needs transformers and accelerate: "
        "pip install 'resumeguard[transformers]'"
    ) from e

__all__ = ["ResumeGuardTrainerCallback"]

log = logging.getLogger("resumeguard")

TRAINER_STATE = "trainer_state.json"
"""The Trainer's state file in a checkpoint directory."""

STEP_COUNTER = "train/global_step"
"""What a checkpoint's step counts: the Trainer's optimizer steps, logged to W&B as this."""


class ResumeGuardTrainerCallback(TrainerCallback):
    """Check a W&B resume before training, record the W&B run and every Trainer checkpoint,
    and verify a checkpoint's files before the first training step of a resume.

    Blocked: ``resumeguard.ResumeBlocked``; a changed, truncated or extra checkpoint file:
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
        self.guard = FrameworkGuard(
            Options(policy=policy, repo=repo, requirements=tuple(requirements), storage=storage),
            raise_on_block=raise_on_block,
            keep_copies=keep_copies,
        )
        self._checked = False
        self._verified: Path | None = None
        self._warned: set[str] = set()
        self._batch: BatchSize | None = None
        self._config: dict[str, Any] = {}
        self._loads = LoadWatch()

    # --- Trainer events -----------------------------------------------------------------------

    def on_init_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Check the W&B resume (code, dependencies, TrainingArguments and model config,
        effective batch size) before WandbCallback resumes the run; verify a checkpoint named
        in ``args.resume_from_checkpoint`` before the Trainer reads it; watch the model for the
        checkpoint's weights."""
        if disabled():
            return
        model = kwargs.get("model")
        self._decide(lambda: self._early(args, model), tag="transformers-init")
        self._watch(model)

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Record the run WandbCallback started; verify the checkpoint resumed from; a resumed
        run that starts from step 0 (no checkpoint) is a silent restart."""
        if disabled():
            return
        self._loads.disarm()
        self._decide(
            lambda: self._begin(args, state, kwargs.get("model")), tag="transformers-begin"
        )

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Record the files of the checkpoint directory just written."""
        if state.is_world_process_zero and not disabled():
            self._record(args, state)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """A later ``train()`` of the same Trainer may resume from another checkpoint."""
        self._verified = None

    def verify_checkpoint(self, path: str | os.PathLike[str]) -> None:
        """Verify a Trainer checkpoint directory against the run's record now, before
        ``trainer.train(resume_from_checkpoint=path)`` reads any of it (call it on every rank)."""
        if disabled():
            return
        self._decide(lambda: self._verify(Path(path)), tag="transformers-verify")

    # --- what the events do -------------------------------------------------------------------

    def _early(self, args: Any, model: Any) -> None:
        run = _wandb_run()
        self._gather(args, model)
        self.guard.check(
            resolve_intent(),
            run=run,
            project=_project(),
            entity=_entity(),
            facts=self._config,
            rules=batch_rules(self._batch),
        )
        self._checked = True
        if args.resume_from_checkpoint and Path(args.resume_from_checkpoint).is_dir():
            self._verify(Path(args.resume_from_checkpoint))

    def _gather(self, args: Any, model: Any) -> None:
        """What WandbCallback records as the run's config, and the effective batch size."""
        self._batch = _batch_size(args)
        self._config = with_batch(_run_config(args, model), self._batch)

    def _watch(self, model: Any) -> None:
        """Fit-check the state dict the Trainer loads into ``model`` (every rank)."""
        import torch

        if not isinstance(model, torch.nn.Module):
            return

        def on_load(state: Mapping[str, Any]) -> None:
            def decide() -> None:
                if self.guard.checked is not None:
                    judge(self.guard.checked, fit_findings(state, model))

            self._decide(decide, tag="transformers-fit")

        self._loads.arm(model, on_load)

    def _begin(self, args: Any, state: Any, model: Any) -> None:
        # WandbCallback comes before user callbacks (trainer.py:586-595), so its on_train_begin
        # has started the run by now.
        run = _wandb_run()
        if not self._checked:
            self._early(args, model)
        check = self.guard.checked
        if check is not None:  # refused before the run carries this resume
            restart(check, state.global_step)
        if run is None:
            self._warn_once(
                "no-run",
                "resumeguard: no W&B run in this training (report_to=['wandb'], or "
                "resumeguard.init before train()): the checkpoints are not recorded",
            )
        else:
            self.guard.adopt(run, facts=self._config)
        if state.global_step > 0:  # restored from a checkpoint's trainer_state.json
            directory = _resumed_from(args, state.global_step)
            if directory is None:
                self._warn_once(
                    "lost",
                    f"resumeguard: resumed at step {state.global_step} from a checkpoint "
                    "outside output_dir; it cannot be verified (set "
                    "TrainingArguments(resume_from_checkpoint=PATH))",
                )
            elif directory.resolve() != self._verified:
                self._verify(directory, already_read=True)
            if directory is not None:
                # The Trainer restores scheduler, scaler and RNG itself: assert that it did.
                held = directory_components(directory)
                self.guard.expect_complete(checkpoint_name(directory), held, state.global_step)
        if check is not None:  # every check passed: the resume goes ahead
            if run is not None:
                settle(run, "resumed", check=check)
            said = checkpoint_name(self._verified) if self._verified is not None else None
            say(verified_line(check, said, self._batch))

    def _verify(self, directory: Path, *, already_read: bool = False) -> None:
        run = _wandb_run()
        checked = self.guard.checked
        label = (
            run_label(run) if run is not None else checked.run_id if checked is not None else "?"
        )
        # A checkpoint no run check covered (a new run, or none): the run it was saved in.
        origin = self.guard.check_checkpoint(directory, run)
        if origin is not None and self.guard.checked is not None:
            label = self.guard.checked.run_id
        record = origin or self.guard.known_record(run)
        try:
            self.guard.verify_dir(record, directory, run_label=label)
        except CheckpointError as e:
            if not already_read:
                raise
            said = str(e)
            late = "the Trainer read it before any callback could check; training stops here"
            raise CheckpointError(
                said.replace("nothing was loaded", late)
                if "nothing was loaded" in said
                else f"{said} ({late})"
            ) from e
        self._verified = directory.resolve()

    def _record(self, args: Any, state: Any) -> None:
        run = _wandb_run()
        if run is None:
            return
        # _save_checkpoint's folder for a run that is not a hyperparameter-search trial.
        directory = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        if not directory.is_dir():
            self._warn_once("no-dir", f"resumeguard: {directory} not found; not recorded")
            return
        files = [(checkpoint_name(f), f) for f in files_below(directory)]
        record = self.guard.adopt(run)
        prefix = checkpoint_name(directory) + "/"
        names = {name for name, _ in files}
        output = str(Path(args.output_dir).resolve()) + os.sep
        gone = [
            n
            for n, c in record.checkpoints.items()
            # files of an earlier save of this directory, and checkpoints rotated away
            if (n.startswith(prefix) and n not in names)
            or (c.source.startswith(output) and not Path(c.source).exists())
        ]
        try:
            self.guard.forget(run, gone)
            held = {name: file_components(path) for name, path in files}
            self.guard.record(run, files, step=state.global_step, counter=STEP_COUNTER, held=held)
        except OSError as e:  # never lose the training over the record; a resume will say so
            log.error("resumeguard: checkpoint %s was saved but not recorded: %s", directory, e)

    def _decide(self, decide: Callable[[], None], *, tag: str) -> None:
        """Run ``decide`` on rank 0, where WandbCallback keeps the run, and stop every rank
        when it refuses (accelerate has set up the process group before the Trainer's events)."""
        from resumeguard.decide.distributed import agree

        try:
            agree(decide, tag=tag)
        except ResumeGuardError as e:
            self.guard.fail(e, _wandb_run())

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message)


def _wandb_run() -> Any:
    """The live W&B run, None when there is none or W&B is disabled."""
    import wandb

    run = wandb.run
    return None if run is None or is_disabled(run) else run


def _project() -> str:
    """The project WandbCallback's wandb.init uses."""
    return os.environ.get("WANDB_PROJECT", "huggingface")


def _entity() -> str | None:
    return os.environ.get("WANDB_ENTITY") or None


def _resumed_from(args: Any, step: int) -> Path | None:
    """The checkpoint directory a resume at ``step`` was loaded from, where it can be told."""
    candidates = [Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{step}"]
    if args.resume_from_checkpoint:
        candidates.insert(0, Path(args.resume_from_checkpoint))
    for directory in candidates:
        try:
            saved = json.loads((directory / TRAINER_STATE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(saved, dict) and saved.get("global_step") == step:
            return directory
    return None


def _run_config(args: Any, model: Any) -> dict[str, Any]:
    """The config WandbCallback gives the run (integration_utils.py:739-746): the model's
    config with the TrainingArguments over it."""
    combined = dict(args.to_dict())
    config = getattr(model, "config", None)
    if config is not None:
        combined = {**(config if isinstance(config, dict) else config.to_dict()), **combined}
    return combined


def _batch_size(args: Any) -> BatchSize:
    """Per-device batch (times the GPUs of one process under DataParallel) x processes x
    gradient accumulation: what one optimizer step of the Trainer averages over."""
    return BatchSize(
        per_device=args.per_device_train_batch_size * max(1, args.n_gpu),
        world_size=args.world_size,
        accumulation=args.gradient_accumulation_steps,
        factor_keys=("per_device_train_batch_size", "gradient_accumulation_steps"),
    )
