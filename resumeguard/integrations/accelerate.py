"""Hugging Face Accelerate: one line after ``Accelerator(...)``.

    accelerator = Accelerator(log_with="wandb")
    resumeguard.integrations.accelerate.attach(accelerator)

- ``init_trackers(project, config=...)`` checks a resume of the W&B run (the id from
  ``init_kwargs={"wandb": {"id": ..., "resume": ...}}`` or ``WANDB_RUN_ID``/``WANDB_RESUME``)
  before the tracker starts it, comparing the config given to it; a fresh run is recorded. It
  runs on the main process only: its verdict reaches every rank (call it on every rank, as
  Accelerate's own scripts do).
- ``save_state`` folders are recorded (every file digested, the step, the record beside each
  file) once every process has written its part; folders Accelerate rotated away are dropped.
- ``load_state`` verifies every file of the folder before Accelerate reads one, checks that the
  model weights fit the prepared models (shapes from ``model.safetensors``' header), and reports
  a folder older than the run's last logged step (``run.step``). A folder saved by another run
  than the one this process started (a stock script passes no run id, so ``init_trackers``
  started a new run) stops here, naming that run and how to resume it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from resumeguard.decide.pipeline import resolve_intent
from resumeguard.decide.runfiles import settle
from resumeguard.errors import CheckpointError, ResumeGuardError
from resumeguard.integrations import (
    FrameworkGuard,
    checkpoint_name,
    files_below,
    find_group,
    run_label,
)
from resumeguard.options import Options, disabled
from resumeguard.records.run import WANDB_STEP
from resumeguard.verdict.policy import Policy

log = logging.getLogger("resumeguard")

ACCELERATE_STEP = "accelerate/step"
"""What a folder's step counts when no W&B run gives one: the Accelerator's own step."""


def attach(
    accelerator: Any,
    *,
    policy: Policy | str | None = None,
    repo: str | Path = ".",
    requirements: tuple[str, ...] = (),
    storage: Any = None,
    raise_on_block: bool = True,
) -> AccelerateGuard | None:
    """Guard ``accelerator``'s W&B run and ``save_state``/``load_state`` folders (see the
    module's docstring); None when resumeguard is switched off."""
    if disabled():
        return None
    existing = getattr(accelerator, "_resumeguard", None)
    if isinstance(existing, AccelerateGuard):
        return existing
    options = Options(policy=policy, repo=repo, requirements=tuple(requirements), storage=storage)
    guard = FrameworkGuard(options, raise_on_block=raise_on_block)
    attached = AccelerateGuard(accelerator, guard)
    accelerator._resumeguard = attached
    return attached


class AccelerateGuard:
    """The wrappers and hook :func:`attach` puts on one Accelerator."""

    def __init__(self, accelerator: Any, guard: FrameworkGuard) -> None:
        self.accelerator = accelerator
        self.guard = guard
        self.run: Any = None
        self.config: dict[str, Any] = {}
        accelerator.init_trackers = self._wrap(accelerator.init_trackers, self._init_trackers)
        accelerator.save_state = self._wrap(accelerator.save_state, self._save_state)
        accelerator.register_load_state_pre_hook(self._before_load)

    @staticmethod
    def _wrap(original: Callable[..., Any], around: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return around(original, *args, **kwargs)

        return wrapper

    # --- the run ------------------------------------------------------------------------------

    def _init_trackers(
        self,
        original: Callable[..., Any],
        project_name: str,
        config: Mapping[str, Any] | None = None,
        init_kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        """Check the resume before the W&B tracker starts the run, then record the run."""
        options = dict((init_kwargs or {}).get("wandb") or {})
        self.config = _plain(config)
        intent = resolve_intent(options.get("id"), options.get("resume"))

        def check() -> None:
            self.guard.check(
                intent, project=project_name, entity=options.get("entity"), facts=self.config
            )

        self._decide(check, tag="accelerate-init")
        result = original(project_name, config, init_kwargs)
        if self.accelerator.is_main_process:
            self.run = _wandb_run()
            if self.run is not None:
                self.guard.adopt(self.run, facts=self.config)
            checked = self.guard.checked
            if checked is not None:
                from resumeguard.decide.verified import say
                from resumeguard.integrations.training import verified_line

                say(verified_line(checked, None, None))
        return result

    # --- saves --------------------------------------------------------------------------------

    def _save_state(self, original: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Save, wait for every process's files, then record the folder (main process)."""
        location = original(*args, **kwargs)
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process and location:
            try:
                self._record(Path(location))
            except OSError as e:  # never lose the training over the record; a resume says so
                log.error("resumeguard: %s was saved but not recorded: %s", location, e)
        return location

    def _record(self, folder: Path) -> None:
        from resumeguard.api.complete import file_components

        run = self.run or _wandb_run()
        if run is None:
            log.warning(
                "resumeguard: %s is not recorded: no W&B run (init_trackers with log_with="
                '"wandb"), nothing to record it in',
                folder,
            )
            return
        files = [(checkpoint_name(f), f) for f in files_below(folder)]
        record = self.guard.adopt(run)
        prefix = checkpoint_name(folder) + "/"
        names = {name for name, _ in files}
        base = checkpoint_name(folder.parent) + "/"
        gone = [
            n
            for n, c in record.checkpoints.items()
            # an earlier save of this folder, and folders Accelerate rotated away (total_limit)
            if (n.startswith(prefix) and n not in names)
            or (n.startswith(base) and c.source and not Path(c.source).exists())
        ]
        self.guard.forget(run, gone)
        step = getattr(run, "step", None)
        counter = WANDB_STEP if isinstance(step, int) else ACCELERATE_STEP
        if not isinstance(step, int):
            step = int(getattr(self.accelerator, "step", 0) or 0)
        held = {name: file_components(path) for name, path in files}
        self.guard.record(run, files, step=step, counter=counter, held=held)

    # --- loads --------------------------------------------------------------------------------

    def _before_load(self, models: list[Any], input_dir: str) -> None:
        """Before Accelerate reads a file of ``input_dir`` (every process): the main process
        verifies the folder and the fit, and every process stops when it refuses."""
        folder = Path(input_dir)
        self._decide(lambda: self._verify(folder, models), tag="accelerate-load")

    def _verify(self, folder: Path, models: list[Any]) -> None:
        from resumeguard.decide.pipeline import step_check

        run = self.run or _wandb_run()
        files = files_below(folder)
        origin = self.guard.check_checkpoint(files[0], run) if files else None
        record = origin or self.guard.known_record(run)
        label = run_label(run) if run is not None else "?"
        checked = self.guard.checked
        saved_in = checked.run_id.rsplit("/", 1)[-1] if checked is not None else None
        if run is not None and saved_in is not None and saved_in != str(run.id):
            raise CheckpointError(
                f"checkpoint {checkpoint_name(folder)} was saved by run {saved_in}, but this "
                f"process started a new run {label}: resume {saved_in} itself (WANDB_RUN_ID="
                f'{saved_in} WANDB_RESUME=must, or init_kwargs={{"wandb": {{"id": "{saved_in}", '
                '"resume": "must"}}}), so that its curves and record go on'
            )
        self.guard.verify_dir(record, folder, run_label=label)
        group = find_group(record, folder) if record is not None else []
        if run is not None and record is not None and group:
            checkpoint = group[0][2]
            step_check(run, record, checkpoint, checkpoint_name(folder), self.guard.options.policy)
        _check_weights(folder, [self.accelerator.unwrap_model(m) for m in models])
        if group:
            from resumeguard.decide.verified import say

            say(
                f"resumeguard: checkpoint {checkpoint_name(folder)} ({len(group)} files) matches "
                "its record; Accelerate loads it"
            )
            if run is not None:
                settle(run, "resumed", check=self.guard.checked)

    def _decide(self, decide: Callable[[], None], *, tag: str) -> None:
        from resumeguard.decide.distributed import agree

        try:
            agree(decide, tag=tag)
        except ResumeGuardError as e:
            self.guard.fail(e, self.run)


def _check_weights(folder: Path, models: list[Any]) -> None:
    """CheckpointError when a ``model*.safetensors`` of ``folder`` does not fit its model:
    names, shapes and dtypes from the file's header, before a tensor is read."""
    from resumeguard.api.restore import misfit_report
    from resumeguard.verdict.fit import check_model_fit

    for i, model in enumerate(models):
        path = folder / ("model.safetensors" if i == 0 else f"model_{i}.safetensors")
        if not path.is_file():
            continue
        problems = check_model_fit(_header_state(path), model)
        if problems:
            name = checkpoint_name(path)
            raise CheckpointError(
                f"checkpoint {name} does not fit the current model; nothing was loaded",
                misfit_report(name, problems),
            )


def _header_state(path: Path) -> dict[str, Any]:
    """The tensors a safetensors file holds, as empty meta tensors of their shape and dtype."""
    import torch
    from safetensors import safe_open

    state: dict[str, Any] = {}
    with safe_open(str(path), framework="pt", device="cpu") as f:
        for key in f.keys():  # noqa: SIM118 - safe_open has keys(), not iteration
            part = f.get_slice(key)
            shape = part.get_shape()
            state[key] = torch.empty(shape, dtype=_dtype(part.get_dtype()), device="meta")
    return state


def _dtype(name: str) -> Any:
    """The torch dtype of a safetensors dtype name (float32 for one torch lacks)."""
    import torch

    names = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16"}
    names |= {"I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8"}
    return getattr(torch, names.get(name, "bool" if name == "BOOL" else "float32"))


def _plain(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The config given to ``init_trackers`` as the run config W&B keeps (an argparse
    Namespace's values too)."""
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        config = vars(config) if hasattr(config, "__dict__") else {}
    with contextlib.suppress(TypeError, ValueError):
        return dict(json.loads(json.dumps(dict(config), default=str)))
    return {}


def _wandb_run() -> Any:
    wandb = sys.modules.get("wandb")
    return getattr(wandb, "run", None) if wandb is not None else None
