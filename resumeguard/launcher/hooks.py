"""What ``resumeguard run`` changes in each Python process it starts, as libraries are imported
(wrapt's post-import hooks): the script itself is never edited.

- ``wandb.init`` is :func:`resumeguard.init`: a resume is checked before W&B resumes the run, a
  fresh run is recorded, and ``config=`` is compared.
- ``torch.save`` of a state holding a model or optimizer state dict, to a path, is
  :func:`resumeguard.save_checkpoint` (atomic, digested, recorded); anything else is saved as is.
- ``torch.load`` of a recorded checkpoint reads bytes that match their record (verified before
  an unrestricted unpickling runs), and the fit check runs when its state reaches
  ``load_state_dict``, before a tensor is copied.
- A Lightning or Transformers ``Trainer`` gets resumeguard's callback; its checkpoints and W&B
  run are then the callback's to guard.

A blocked resume ends the process (:func:`resumeguard.api.entry.exit_now`): the script cannot
catch it and start fresh.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO, NoReturn

from resumeguard.errors import BadInput, ResumeGuardError
from resumeguard.options import REPORT_ENV, disabled

log = logging.getLogger("resumeguard")

_inside: contextvars.ContextVar[bool] = contextvars.ContextVar("resumeguard_inside", default=False)
_framework = threading.Event()
"""Set once a framework trainer got resumeguard's callback: its run and checkpoints are guarded
there, and the plain wandb/torch patches step aside."""
_said: set[str] = set()
_loaded: dict[int, tuple[int, str]] = {}
"""id -> (length, checkpoint name) of the state dicts a verified load returned, until they reach
``load_state_dict`` (ids, not the dicts: the script may free a large state at once)."""


def install() -> None:
    """Register the post-import hooks (once; nothing when resumeguard is switched off)."""
    if disabled() or getattr(install, "done", False):
        return
    import wrapt

    install.done = True  # type: ignore[attr-defined]
    if os.environ.get("RESUMEGUARD_QUIET"):
        log.setLevel(logging.WARNING)
    wrapt.register_post_import_hook(_patch_wandb, "wandb")
    wrapt.register_post_import_hook(_patch_torch, "torch")
    for module in ("lightning.pytorch.trainer.trainer", "pytorch_lightning.trainer.trainer"):
        wrapt.register_post_import_hook(_patch_lightning, module)
    wrapt.register_post_import_hook(_patch_transformers, "transformers.trainer")
    wrapt.register_post_import_hook(_patch_accelerate, "accelerate.accelerator")


def end(error: ResumeGuardError) -> NoReturn:
    """End this process with ``error``'s report (see :func:`resumeguard.api.entry.exit_now`)."""
    from resumeguard.api.entry import exit_now

    exit_now(error)


@contextlib.contextmanager
def ours() -> Iterator[None]:
    """While resumeguard itself calls wandb and torch: the patches pass those calls through."""
    token = _inside.set(True)
    try:
        yield
    finally:
        _inside.reset(token)


def say_once(key: str, line: str) -> None:
    """Log ``line`` at INFO the first time ``key`` comes up in this process."""
    if key not in _said:
        _said.add(key)
        from resumeguard.decide.verified import say

        say(line)


# --- wandb --------------------------------------------------------------------------------------


def _patch_wandb(module: Any) -> None:
    import wrapt

    wrapt.wrap_function_wrapper(module, "init", _init)


def _init(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
    if _inside.get() or _framework.is_set() or args:
        return wrapped(*args, **kwargs)
    import resumeguard

    with ours():
        try:
            run = resumeguard.init(**kwargs)
        except ResumeGuardError as e:
            end(e)
    if run is not None:
        _went_ahead({"run": str(run.id)})
    return run


def _went_ahead(checked: dict[str, str]) -> None:
    """Say in the verdict file what was checked and let go ahead, unless a process of the same
    command refused its resume already."""
    target = os.environ.get(REPORT_ENV)
    if not target or Path(target).exists():
        return
    from resumeguard.io import atomic

    with contextlib.suppress(OSError):
        atomic.write_json(Path(target), {"verdict": "went-ahead", **checked})


# --- torch --------------------------------------------------------------------------------------


def _patch_torch(module: Any) -> None:
    import wrapt

    wrapt.wrap_function_wrapper(module, "save", _save)
    wrapt.wrap_function_wrapper(module, "load", _load)
    wrapt.wrap_function_wrapper(module.nn.Module, "load_state_dict", _load_state_dict)
    wrapt.wrap_function_wrapper(module.optim.Optimizer, "load_state_dict", _load_state_dict)


def _run() -> Any:
    wandb = sys.modules.get("wandb")
    return getattr(wandb, "run", None) if wandb is not None else None


def _save(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
    if _inside.get() or _framework.is_set():
        return wrapped(*args, **kwargs)
    obj = args[0] if args else kwargs.get("obj")
    f = args[1] if len(args) > 1 else kwargs.get("f")
    extra = len(args) > 2 or set(kwargs) - {"obj", "f"}
    if extra or not isinstance(f, (str, os.PathLike)) or not _is_checkpoint(obj):
        kind = "a file object" if not isinstance(f, (str, os.PathLike)) else type(obj).__name__
        say_once(
            f"save:{kind}",
            f"resumeguard: torch.save of {kind} is not a checkpoint it recognises (a state "
            "with a model or optimizer state dict, saved to a path); saved as is, not guarded",
        )
        return wrapped(*args, **kwargs)
    from resumeguard.api.save import save_checkpoint

    with ours():
        try:
            save_checkpoint(_run(), obj, f)
            return None
        except Exception as e:  # never lose the script's checkpoint over resumeguard
            log.error("resumeguard: %s was not recorded (%s); saved by torch.save alone", f, e)
    return wrapped(*args, **kwargs)


def _is_checkpoint(obj: Any) -> bool:
    if not isinstance(obj, Mapping):
        return False
    from resumeguard.collect.components import components_of

    held = components_of(obj)
    return bool(held.model or held.optimizer)


def _load(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
    f = args[0] if args else kwargs.get("f")
    if _inside.get() or _framework.is_set() or not isinstance(f, (str, os.PathLike)):
        return wrapped(*args, **kwargs)
    run = _run()
    name = _recorded_name(run, Path(f))
    if name is None:
        say_once(
            f"load:{f}",
            f"resumeguard: {f} is not a checkpoint resumeguard recorded; loaded unverified",
        )
        return wrapped(*args, **kwargs)
    rest = {k: v for k, v in kwargs.items() if k != "f"}
    positional = args[1:]

    def read(opened: BinaryIO) -> Any:
        if rest.get("weights_only") is False:
            return _After(opened.name)  # unrestricted unpickling runs only on verified bytes
        return wrapped(opened, *positional, **rest)

    with ours():
        try:
            from resumeguard.api.restore import load_for_script

            state = load_for_script(run if name[1] else None, name[0], read)
            if isinstance(state, _After):
                state = wrapped(state.path, *positional, **rest)
        except ResumeGuardError as e:
            end(e)
    _track(state, name[0])
    _went_ahead({"checkpoint": name[0]})
    return state


class _After:
    """A load deferred until the bytes it would read are verified."""

    def __init__(self, path: str) -> None:
        self.path = path


def _recorded_name(run: Any, path: Path) -> tuple[str, bool] | None:
    """The name ``path`` is recorded under, and whether the live run's record holds it (else the
    record beside the file does); None for a file resumeguard never recorded."""
    from resumeguard.checkpoint.beside import read_beside

    resolved = str(path.resolve())
    if run is not None:
        from resumeguard.decide import runfiles

        record = runfiles.current_record(run)
        for name, checkpoint in (record.checkpoints if record is not None else {}).items():
            if checkpoint.source == resolved:
                return name, True
    try:
        origin = read_beside(path)
    except BadInput:
        origin = None
    return (str(path), False) if origin is not None else None


def _track(state: Any, name: str) -> None:
    from resumeguard.checkpoint.state import find_model_state, find_optimizer_state

    for part in (find_model_state(state), find_optimizer_state(state)):
        if isinstance(part, Mapping):
            _loaded[id(part)] = (len(part), name)


def _load_state_dict(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
    state = args[0] if args else kwargs.get("state_dict")
    known = _loaded.get(id(state)) if isinstance(state, Mapping) else None
    if known is not None and known[0] == len(state) and not _inside.get():
        del _loaded[id(state)]
        _fit_check(instance, state, known[1])
    return wrapped(*args, **kwargs)


def _fit_check(target: Any, state: Mapping[str, Any], name: str) -> None:
    """The fit of a verified checkpoint's state dict with what it is loaded into."""
    import torch

    from resumeguard.api.restore import misfit_report
    from resumeguard.errors import CheckpointError
    from resumeguard.verdict.fit import check_fit, check_model_fit

    with ours():
        if isinstance(target, torch.optim.Optimizer):
            problems = check_fit(state, target)
        else:
            from resumeguard.checkpoint.state import keys_for

            problems = check_model_fit(keys_for(state, target), target)
        if problems:
            end(
                CheckpointError(
                    f"checkpoint {name} does not fit the current model/optimizer; nothing was "
                    "loaded",
                    misfit_report(name, problems),
                )
            )


# --- frameworks ---------------------------------------------------------------------------------


def _patch_lightning(module: Any) -> None:
    import wrapt

    wrapt.wrap_function_wrapper(module, "Trainer.__init__", _lightning_trainer)


def _lightning_trainer(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
    from resumeguard.integrations.lightning import ResumeGuardCallback

    callbacks = list(kwargs.get("callbacks") or [])
    if not any(isinstance(c, ResumeGuardCallback) for c in callbacks):
        kwargs["callbacks"] = [*callbacks, ResumeGuardCallback()]
    _framework.set()
    return wrapped(*args, **kwargs)


def _patch_transformers(module: Any) -> None:
    import wrapt

    wrapt.wrap_function_wrapper(module, "Trainer.__init__", _transformers_trainer)


def _patch_accelerate(module: Any) -> None:
    import wrapt

    wrapt.wrap_function_wrapper(module, "Accelerator.__init__", _accelerator)


def _accelerator(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
    result = wrapped(*args, **kwargs)
    if not _in_trainer.get():  # a Transformers Trainer's own Accelerator: its callback guards
        from resumeguard.integrations.accelerate import attach

        attach(instance)
        _framework.set()
    return result


_in_trainer: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "resumeguard_in_trainer", default=False
)


def _transformers_trainer(
    wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any
) -> Any:
    from resumeguard.integrations.transformers import ResumeGuardTrainerCallback

    token = _in_trainer.set(True)
    try:
        return _with_callback(wrapped, instance, args, kwargs, ResumeGuardTrainerCallback)
    finally:
        _in_trainer.reset(token)


def _with_callback(
    wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any, kind: type
) -> Any:
    """Build the Trainer with a ``kind`` callback among its own: given with the others, its
    on_init_end checks the resume before WandbCallback resumes the run."""
    callbacks = kwargs.get("callbacks")
    if callbacks is not None or len(args) <= _CALLBACKS_AT:
        callbacks = list(callbacks or [])
        if not any(isinstance(c, kind) for c in callbacks):
            kwargs["callbacks"] = [*callbacks, kind()]
        result = wrapped(*args, **kwargs)
    else:  # callbacks given by position
        result = wrapped(*args, **kwargs)
        if not any(isinstance(c, kind) for c in args[_CALLBACKS_AT] or ()):
            instance.add_callback(kind())
    _framework.set()
    return result


_CALLBACKS_AT = 9
"""The position of ``callbacks`` among ``transformers.Trainer``'s arguments."""
