"""Where things are inside a checkpoint's state: the optimizer and model state dicts, the step,
and the ``_orig_mod.`` prefix ``torch.compile`` puts on every name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from resumeguard.collect.components import uncompiled_name
from resumeguard.records.run import WANDB_STEP


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


def step_of(state: Any, step: int | None, run: Any, counter: str) -> tuple[int | None, str]:
    """The step a checkpoint was taken at and what it counts: given, else the state's own (both
    ``counter``, the script's word for its step), else the run's, which is W&B's."""
    if step is not None:
        return step, counter
    if isinstance(state, Mapping):
        for key in ("step", "global_step", "iteration"):
            value = state.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                return value, counter
    run_step = getattr(run, "step", None)
    return (run_step if isinstance(run_step, int) else None), WANDB_STEP


def keys_for(saved: Mapping[str, Any], model: Any) -> dict[str, Any]:
    """``saved`` (a model state dict) with its keys spelled as ``model`` spells them, so the
    state of a compiled model loads into the plain one and the other way round."""
    wanted = {uncompiled_name(k): k for k in model.state_dict()}
    if set(saved) <= set(wanted.values()):
        return dict(saved)
    return {wanted.get(uncompiled_name(k), k): v for k, v in saved.items()}
