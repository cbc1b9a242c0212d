"""What a checkpoint's state holds besides model and optimizer: LR schedulers, a GradScaler, RNG
states and the data position, recognised from their state-dict shapes (not from key names
alone, which every script spells its own way), and where each lies in the state."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

from resumeguard.collect.record import Record

_MAX_DEPTH = 4
"""How deep into nested dicts and lists components are looked for (``state["train"]["sched"]``)."""

_DATA_KEYS = frozenset(
    {"dataloader", "data_loader", "train_dataloader", "train_loader", "sampler", "data_state"}
)
"""Key names under which scripts keep a data position of their own shape."""

_STATEFUL_LOADER = frozenset(
    {"_num_yielded", "_sampler_iter_yielded", "_snapshot", "_iterator_finished"}
)
"""Keys of torchdata's ``StatefulDataLoader.state_dict()``."""

TORCH_RNG_BYTES = 5056
"""Size of a CPU generator's state (``torch.get_rng_state()``)."""
CUDA_RNG_BYTES = 16
"""Size of a CUDA generator's state (seed and offset)."""


@dataclasses.dataclass(frozen=True)
class Components(Record):
    """Where each recognised part of a training state lies: dotted key paths into the state
    (``""`` for the state itself), with the numbers a resume must put back."""

    kind = "components"

    model: tuple[str, ...] = ()
    """Model state dicts (parameter name -> tensor)."""
    optimizer: tuple[str, ...] = ()
    """Optimizer state dicts ("state" and "param_groups")."""
    schedulers: dict[str, int] = dataclasses.field(default_factory=dict)
    """LR scheduler state dicts -> the step they were at (``last_epoch``)."""
    scalers: dict[str, float] = dataclasses.field(default_factory=dict)
    """GradScaler state dicts -> their loss scale."""
    rng: dict[str, str] = dataclasses.field(default_factory=dict)
    """RNG states -> whose: "torch", "cuda", "numpy" or "python"."""
    data: tuple[str, ...] = ()
    """Data-loader or sampler states (the position in the data)."""

    def names(self) -> list[str]:
        """The kinds held, in words, for a log line (e.g. ["model", "optimizer", "scheduler"])."""
        held = [
            ("model", self.model),
            ("optimizer", self.optimizer),
            ("scheduler", self.schedulers),
            ("scaler", self.scalers),
            ("rng", self.rng),
            ("data", self.data),
        ]
        return [name for name, where in held if where]


def components_of(state: Any) -> Components:
    """Recognise the components of a checkpoint's state (see :class:`Components`)."""
    found: dict[str, Any] = {
        "model": [],
        "optimizer": [],
        "schedulers": {},
        "scalers": {},
        "rng": {},
        "data": [],
    }
    for path, value in _walk(state, "", 0):
        kind = _kind(path, value)
        if kind is None:
            continue
        what, detail = kind
        if isinstance(found[what], list):
            found[what].append(path)
        else:
            found[what][path] = detail
    return Components(
        model=tuple(found["model"]),
        optimizer=tuple(found["optimizer"]),
        schedulers=found["schedulers"],
        scalers=found["scalers"],
        rng=found["rng"],
        data=tuple(found["data"]),
    )


def at(state: Any, path: str) -> Any:
    """The value at a dotted key path of :class:`Components` (None when absent)."""
    value = state
    for part in path.split(".") if path else ():
        if isinstance(value, Mapping):
            value = value.get(part)
        elif isinstance(value, (list, tuple)) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def _walk(value: Any, path: str, depth: int) -> Iterator[tuple[str, Any]]:
    """Every value of the state with its path; a recognised component is not looked into."""
    yield path, value
    if depth >= _MAX_DEPTH or _kind(path, value) is not None:
        return
    if isinstance(value, Mapping):
        items: Any = ((str(k), v) for k, v in value.items() if isinstance(k, (str, int)))
    elif isinstance(value, (list, tuple)) and len(value) <= 64:
        items = ((str(i), v) for i, v in enumerate(value))
    else:
        return
    for key, child in items:
        if "." in key:
            continue  # a parameter name, inside a model state dict already recognised
        yield from _walk(child, f"{path}.{key}" if path else key, depth + 1)


def _kind(path: str, value: Any) -> tuple[str, Any] | None:
    """Which component ``value`` is, with its detail (a step, a scale, an RNG's owner)."""
    if isinstance(value, Mapping):
        return _mapping_kind(path, value)
    rng = _rng_kind(path, value)
    return ("rng", rng) if rng is not None else None


def _mapping_kind(path: str, value: Mapping[str, Any]) -> tuple[str, Any] | None:
    keys = set(value)
    if {"state", "param_groups"} <= keys:
        return "optimizer", None
    if "last_epoch" in keys and keys & {"base_lrs", "_schedulers", "num_bad_epochs"}:
        step = value.get("last_epoch")
        return "schedulers", step if isinstance(step, int) and not isinstance(step, bool) else -1
    if {"scale", "growth_factor"} <= keys:
        scale = value.get("scale")
        return "scalers", float(scale) if isinstance(scale, (int, float)) else 0.0
    if keys & _STATEFUL_LOADER or path.rsplit(".", 1)[-1].lower() in _DATA_KEYS:
        return "data", None
    if "bit_generator" in keys and "state" in keys:
        return "rng", "numpy"  # numpy.random.Generator().bit_generator.state
    if value and _is_tensor_map(value):
        return "model", None
    return None


def _is_tensor_map(value: Mapping[str, Any]) -> bool:
    """A model state dict: parameter names (dotted, or a single layer's weight/bias) -> tensors."""
    import torch

    if not all(isinstance(v, torch.Tensor) for v in value.values()):
        return False
    return any("." in str(k) or k in ("weight", "bias") for k in value)


def _rng_kind(path: str, value: Any) -> str | None:
    import torch

    if isinstance(value, torch.Tensor):
        if value.dtype == torch.uint8 and value.dim() == 1:
            if value.numel() == TORCH_RNG_BYTES:
                return "torch"
            if value.numel() == CUDA_RNG_BYTES and "cuda" in path.lower():
                return "cuda"
        return None
    if isinstance(value, (list, tuple)) and value:
        first = value[0]
        if all(
            isinstance(v, torch.Tensor) and v.dtype == torch.uint8 and v.numel() == CUDA_RNG_BYTES
            for v in value
        ):
            return "cuda"  # torch.cuda.get_rng_state_all()
        if isinstance(first, str) and first == "MT19937":
            return "numpy"  # numpy.random.get_state()
        seq = value[1] if len(value) == 3 else None
        if first == 3 and isinstance(seq, (list, tuple)) and len(seq) == 625:
            return "python"  # random.getstate()
    return None


COMPILE_PREFIX = "_orig_mod."
"""What ``torch.compile``'s wrapper adds to every state-dict key of the module it wraps."""


def uncompiled_name(name: str) -> str:
    """``name`` without the ``_orig_mod.`` parts a compiled module (or submodule) adds."""
    return name.replace("." + COMPILE_PREFIX, ".").removeprefix(COMPILE_PREFIX)
