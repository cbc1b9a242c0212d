"""What the user configured an optimizer with, for checkpoints saved from its state dict alone.

A state dict holds the hyperparameters as they stand (the schedule's lr), not the constructor's.
resumeguard remembers the optimizers that step (a global torch step hook, installed by ``init``,
``save_checkpoint`` and ``restore_checkpoint``), and finds the one a state dict came from by its
state tensors, which ``state_dict()`` shares rather than copies.
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Mapping
from typing import Any

_seen: weakref.WeakSet[Any] = weakref.WeakSet()
_watching = False


def watch_optimizers() -> None:
    """Remember every optimizer that steps from now on; a no-op until torch is imported."""
    global _watching
    if _watching or "torch" not in sys.modules:
        return
    from torch.optim.optimizer import register_optimizer_step_post_hook

    register_optimizer_step_post_hook(lambda optimizer, args, kwargs: _seen.add(optimizer))
    _watching = True


def configured_for(state_dict: Mapping[str, Any]) -> dict[str, Any] | None:
    """The constructor's hyperparameters of the optimizer ``state_dict`` came from; None when no
    optimizer seen stepping holds its state tensors (a copied state dict, or no step seen)."""
    from resumeguard.collect.optimizer import hyperparameters

    saved = _tensor_ids(state_dict.get("state"))
    if not saved:
        return None
    for optimizer in list(_seen):
        if saved & _tensor_ids(dict(enumerate(optimizer.state.values()))):
            return hyperparameters(optimizer.defaults)
    return None


def _tensor_ids(state: Any) -> set[int]:
    """ids of the tensors in an optimizer's per-parameter state."""
    import torch

    if not isinstance(state, Mapping):
        return set()
    return {
        id(value)
        for entry in state.values()
        if isinstance(entry, Mapping)
        for value in entry.values()
        if isinstance(value, torch.Tensor)
    }
