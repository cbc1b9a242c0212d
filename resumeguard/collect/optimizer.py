"""Fingerprint optimizer state and the model's parameters (torch is imported lazily)."""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from resumeguard.collect.record import Record
from resumeguard.errors import BadInput
from resumeguard.io.hashing import digest_json, digest_tensors

if TYPE_CHECKING:
    import torch


@dataclasses.dataclass(frozen=True)
class ParamRecord(Record):
    """One parameter as the optimizer sees it, in group order."""

    kind = "param"

    shape: tuple[int, ...] | None
    """The parameter's shape; None when known only from a state dict with no state for it."""
    dtype: str | None
    """The parameter's dtype name (e.g. "float32"), or None when unknown."""
    state: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    """Per-state-key {"shape": [...], "dtype": "..."} for tensors, {"value": x} for scalars."""
    name: str | None = None
    """The model's name for the parameter in this slot (the optimizer keys its state by slot);
    None when unknown (no model given, or a record from before names were kept)."""


@dataclasses.dataclass(frozen=True)
class OptimizerRecord(Record):
    """An optimizer's structure, hyperparameters and a digest of its state tensors."""

    kind = "optimizer"

    cls: str | None
    """Qualified class name (e.g. "torch.optim.adamw.AdamW"); inferred or None from a state dict."""
    groups: list[dict[str, Any]]
    """Per param group: its hyperparameters (JSON-safe) and "params": the count of its params."""
    params: list[ParamRecord]
    """Every parameter in group order."""
    state_digest: str
    """blake3 over every state tensor's bytes, dtype and shape, in param order."""
    defaults: dict[str, Any] | None = None
    """The hyperparameters the optimizer was constructed with (``optimizer.defaults``): what the
    user configured, which LR schedulers and training code leave alone. None when recorded from
    a state dict alone."""


@dataclasses.dataclass(frozen=True)
class ModelRecord(Record):
    """A model's named parameters: what a checkpoint's optimizer state must fit."""

    kind = "model"

    params: dict[str, dict[str, Any]]
    """Parameter name -> {"shape": [...], "dtype": "..."} in ``named_parameters()`` order."""
    digest: str
    """blake3 over the names, shapes and dtypes (not the values)."""


# --- Known optimizer classes ---------------------------------------------------------------------

NON_HYPER_KEYS = frozenset({"params", "param_names"})
"""Param-group keys that list parameters rather than configure the optimizer."""

SCHEDULER_KEYS = frozenset({"initial_lr", "max_lr", "min_lr", "base_momentum", "max_momentum"})
"""Keys LR schedulers add to param groups; they say nothing about the optimizer's class."""

IGNORED_GROUP_KEYS = NON_HYPER_KEYS | SCHEDULER_KEYS | {"name"}
"""Keys left out when inferring the class ("name" is a common user label, e.g. for LR monitors)."""

IMPL_FLAGS = frozenset(
    {"foreach", "fused", "capturable", "differentiable", "maximize", "decoupled_weight_decay"}
)
"""Flags torch added over versions and fills in on load (``__setstate__``); checkpoints from an
older torch lack some of them."""


def _no_derived(key: str, param_shape: tuple[int, ...]) -> tuple[int, ...] | None:
    return None


@dataclasses.dataclass(frozen=True)
class StateSpec:
    """The per-parameter state a torch optimizer class keeps."""

    keys: Callable[[Mapping[str, Any], int], frozenset[str]]
    """State keys given the group's hyperparameters and the parameter's number of dimensions."""
    param_shaped: frozenset[str]
    """Keys whose tensors have exactly the parameter's shape (and dtype)."""
    derived: Callable[[str, tuple[int, ...]], tuple[int, ...] | None] = _no_derived
    """The shape of other per-element keys given the parameter's shape (None: not per-element)."""


def _fixed(*keys: str) -> Callable[[Mapping[str, Any], int], frozenset[str]]:
    return lambda group, ndim: frozenset(keys)


def _sgd_keys(group: Mapping[str, Any], ndim: int) -> frozenset[str]:
    return frozenset({"momentum_buffer"} if group.get("momentum") else ())


def _adam_keys(group: Mapping[str, Any], ndim: int) -> frozenset[str]:
    extra = {"max_exp_avg_sq"} if group.get("amsgrad") else set()
    return frozenset({"step", "exp_avg", "exp_avg_sq", *extra})


def _rmsprop_keys(group: Mapping[str, Any], ndim: int) -> frozenset[str]:
    keys = {"step", "square_avg"}
    if group.get("momentum"):
        keys.add("momentum_buffer")
    if group.get("centered"):
        keys.add("grad_avg")
    return frozenset(keys)


def _adafactor_keys(group: Mapping[str, Any], ndim: int) -> frozenset[str]:
    # Adafactor factors the second moment of matrices into a row and a column vector.
    return frozenset({"step", "row_var", "col_var"} if ndim >= 2 else {"step", "variance"})


def _adafactor_shape(key: str, shape: tuple[int, ...]) -> tuple[int, ...] | None:
    if len(shape) >= 2 and key == "row_var":
        return (*shape[:-1], 1)
    if len(shape) >= 2 and key == "col_var":
        return (*shape[:-2], 1, shape[-1])
    return None


_ADAM_SHAPED = frozenset({"exp_avg", "exp_avg_sq", "max_exp_avg_sq"})
_SPECS_BY_NAME: dict[str, StateSpec] = {
    "SGD": StateSpec(_sgd_keys, frozenset({"momentum_buffer"})),
    "Adam": StateSpec(_adam_keys, _ADAM_SHAPED),
    "AdamW": StateSpec(_adam_keys, _ADAM_SHAPED),
    "RMSprop": StateSpec(_rmsprop_keys, frozenset({"square_avg", "momentum_buffer", "grad_avg"})),
    "Adagrad": StateSpec(_fixed("step", "sum"), frozenset({"sum"})),
    "Adamax": StateSpec(_fixed("step", "exp_avg", "exp_inf"), frozenset({"exp_avg", "exp_inf"})),
    "NAdam": StateSpec(
        _fixed("step", "mu_product", "exp_avg", "exp_avg_sq"), frozenset({"exp_avg", "exp_avg_sq"})
    ),
    "RAdam": StateSpec(
        _fixed("step", "exp_avg", "exp_avg_sq"), frozenset({"exp_avg", "exp_avg_sq"})
    ),
    "SparseAdam": StateSpec(
        _fixed("step", "exp_avg", "exp_avg_sq"), frozenset({"exp_avg", "exp_avg_sq"})
    ),
    "Adadelta": StateSpec(
        _fixed("step", "square_avg", "acc_delta"), frozenset({"square_avg", "acc_delta"})
    ),
    "ASGD": StateSpec(_fixed("step", "eta", "mu", "ax"), frozenset({"ax"})),
    "Rprop": StateSpec(_fixed("step", "prev", "step_size"), frozenset({"prev", "step_size"})),
    "Adafactor": StateSpec(_adafactor_keys, frozenset({"variance"}), _adafactor_shape),
    "Muon": StateSpec(_fixed("momentum_buffer"), frozenset({"momentum_buffer"})),
}

PARAM_SHAPED_KEYS = frozenset().union(*(s.param_shaped for s in _SPECS_BY_NAME.values()))
"""Every state key known to mirror its parameter's shape; custom optimizers reuse these names."""


def qualified_name(cls: type) -> str:
    """``module.QualName`` of a class, e.g. "torch.optim.adamw.AdamW"."""
    return f"{cls.__module__}.{cls.__qualname__}"


@functools.cache
def state_specs() -> Mapping[str, StateSpec]:
    """Qualified class name -> :class:`StateSpec` for the torch.optim classes this torch has."""
    import torch

    specs: dict[str, StateSpec] = {}
    for name, spec in _SPECS_BY_NAME.items():
        cls = getattr(torch.optim, name, None)
        if isinstance(cls, type):
            specs[qualified_name(cls)] = spec
    return specs


def expected_shape(
    key: str, param_shape: Sequence[int], spec: StateSpec | None
) -> tuple[int, ...] | None:
    """The shape state ``key`` must have for a ``param_shape`` parameter; None if not per-element.

    Without a spec (a custom optimizer) the conventional names in :data:`PARAM_SHAPED_KEYS` count.
    """
    shape = tuple(param_shape)
    if spec is None:
        return shape if key in PARAM_SHAPED_KEYS else None
    if key in spec.param_shaped:
        return shape
    return spec.derived(key, shape)


@dataclasses.dataclass(frozen=True)
class _KnownClass:
    name: str
    keys: frozenset[str]
    defaults: Mapping[str, Any]


@functools.cache
def _known_classes() -> tuple[_KnownClass, ...]:
    """Every torch.optim class's default param-group keys, from one construction on a dummy."""
    import torch

    known = []
    for attr in sorted(dir(torch.optim)):
        cls = getattr(torch.optim, attr)
        if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
            continue
        if cls is torch.optim.Optimizer:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                # 2-D, because some optimizers (Muon) accept only matrices.
                opt = cls([torch.zeros(2, 2, requires_grad=True)])  # type: ignore[call-arg]
        except Exception:  # a class that cannot be built from defaults is not inferable
            continue
        group = {k: v for k, v in opt.param_groups[0].items() if k not in IGNORED_GROUP_KEYS}
        known.append(_KnownClass(qualified_name(cls), frozenset(group), group))
    return tuple(known)


def class_candidates(group: Mapping[str, Any]) -> list[str]:
    """The torch.optim classes whose param groups have exactly this group's hyperparameter keys.

    Flags added over torch versions (:data:`IMPL_FLAGS`) are ignored when no class matches the
    full key set, so a checkpoint from an older torch still matches.
    """
    keys = frozenset(group) - IGNORED_GROUP_KEYS
    exact = [k.name for k in _known_classes() if k.keys == keys]
    if exact:
        return exact
    return [k.name for k in _known_classes() if k.keys - IMPL_FLAGS == keys - IMPL_FLAGS]


def distinguishing_flags(names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """For classes sharing a key set: the boolean defaults that tell them apart, per class.

    E.g. Adam and AdamW have the same keys but default ``decoupled_weight_decay`` False and True.
    """
    known = {k.name: k for k in _known_classes() if k.name in names}
    if len(known) < 2:
        return {name: {} for name in known}
    shared = frozenset.intersection(*(k.keys for k in known.values()))
    flags = [
        key
        for key in sorted(shared)
        if all(isinstance(k.defaults[key], bool) for k in known.values())
        and len({k.defaults[key] for k in known.values()}) > 1
    ]
    return {name: {f: k.defaults[f] for f in flags} for name, k in known.items()}


def resolve_class(group: Mapping[str, Any]) -> str | None:
    """The one torch.optim class this param group fits, or None when unknown or ambiguous."""
    candidates = class_candidates(group)
    if len(candidates) == 1:
        return candidates[0]
    flags = distinguishing_flags(candidates)
    fitting = [
        name
        for name, defaults in flags.items()
        if defaults and all(group.get(f) == v for f, v in defaults.items())
    ]
    return fitting[0] if len(fitting) == 1 else None


def infer_class(param_groups: Sequence[Mapping[str, Any]]) -> str | None:
    """The optimizer class of a state dict's param groups, when all groups agree on exactly one."""
    names = {resolve_class(g) for g in param_groups}
    if len(names) != 1:
        return None
    return names.pop()


# --- Collecting ----------------------------------------------------------------------------------


def dtype_name(dtype: torch.dtype) -> str:
    """ "float32" for ``torch.float32``."""
    return str(dtype).removeprefix("torch.")


def json_safe(value: Any) -> Any:
    """A JSON-serialisable form: tuples as lists, one-element tensors as Python scalars, larger
    tensors as ``{"shape", "dtype"}``, and anything else unknown as its ``repr``."""
    import torch

    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.Tensor):
        if value.numel() == 1 and not value.is_meta:
            return value.item()
        return tensor_summary(value)
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    return repr(value)


def tensor_summary(t: torch.Tensor) -> dict[str, Any]:
    """``{"shape": [...], "dtype": "..."}`` of a tensor."""
    return {"shape": list(t.shape), "dtype": dtype_name(t.dtype)}


def state_entry(value: Any) -> dict[str, Any]:
    """How one state value is recorded: a tensor's shape and dtype, or a scalar's value."""
    import torch

    if isinstance(value, torch.Tensor):
        return tensor_summary(value)
    return {"value": json_safe(value)}


def hyperparameters(group: Mapping[str, Any]) -> dict[str, Any]:
    """A param group's hyperparameters, JSON-safe, without the parameter lists."""
    return {str(k): json_safe(v) for k, v in group.items() if k not in NON_HYPER_KEYS}


@dataclasses.dataclass(frozen=True)
class _Param:
    """One parameter, from a live optimizer (``tensor`` set) or a state dict (``tensor`` None)."""

    tensor: torch.Tensor | None
    state: Mapping[str, Any]


def state_dict_parts(
    sd: Mapping[str, Any],
) -> tuple[list[Mapping[str, Any]], Mapping[Hashable, Mapping[str, Any]]]:
    """The param groups and state of an optimizer state dict, checked for the expected form."""
    groups = sd.get("param_groups") if isinstance(sd, Mapping) else None
    state = sd.get("state", {}) if isinstance(sd, Mapping) else None
    if not isinstance(groups, Sequence) or not isinstance(state, Mapping):
        raise BadInput(
            "not an optimizer state dict: expected a mapping with 'state' and 'param_groups'"
            " (pass optimizer.state_dict(), not the whole checkpoint)"
        )
    for i, group in enumerate(groups):
        if not isinstance(group, Mapping) or not isinstance(group.get("params"), Sequence):
            raise BadInput(f"optimizer state dict: param group {i} has no 'params' list")
    return list(groups), state


def _params(
    source: torch.optim.Optimizer | Mapping[str, Any],
) -> tuple[list[Mapping[str, Any]], list[list[_Param]]]:
    """Param groups and their parameters; missing state (e.g. a shard's) is an empty mapping."""
    import torch

    if isinstance(source, torch.optim.Optimizer):
        live_groups: list[Mapping[str, Any]] = list(source.param_groups)
        return live_groups, [
            [_Param(p, source.state.get(p, {})) for p in g["params"]] for g in live_groups
        ]
    groups, state = state_dict_parts(source)
    return groups, [[_Param(None, state.get(pid) or {}) for pid in g["params"]] for g in groups]


def _shape_from_state(
    state: Mapping[str, Any], spec: StateSpec | None
) -> tuple[tuple[int, ...], str] | None:
    """The parameter's shape and dtype as its state tensors tell them, when they agree."""
    import torch

    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    exact = spec.param_shaped if spec is not None else PARAM_SHAPED_KEYS
    known = [v for k, v in tensors.items() if k in exact]
    # Unknown optimizers: any non-scalar tensor state, if all of it agrees on one shape.
    shaped = known or [v for v in tensors.values() if v.dim() > 0]
    found = {(tuple(v.shape), dtype_name(v.dtype)) for v in shaped}
    return found.pop() if len(found) == 1 else None


def _state_tensors(params: Sequence[_Param]) -> Iterator[tuple[str, torch.Tensor]]:
    """Every state tensor named "<param index>.<key>" (lists: ".<j>"), in param then key order."""
    import torch

    for i, param in enumerate(params):
        for key in sorted(param.state, key=str):
            value = param.state[key]
            if isinstance(value, torch.Tensor):
                yield f"{i}.{key}", value
            elif isinstance(value, (list, tuple)):
                # LBFGS keeps lists of history tensors.
                for j, item in enumerate(value):
                    if isinstance(item, torch.Tensor):
                        yield f"{i}.{key}.{j}", item


def param_names(
    optimizer: torch.optim.Optimizer, model: torch.nn.Module | None = None
) -> dict[int, str]:
    """id(param) -> its name, from the model or the optimizer's own ``param_names``."""
    names: dict[int, str] = {}
    for group in optimizer.param_groups:
        group_names = group.get("param_names")
        if isinstance(group_names, Sequence):
            names.update(
                {id(p): str(n) for p, n in zip(group["params"], group_names, strict=False)}
            )
    if model is not None:
        names.update({id(p): n for n, p in model.named_parameters()})
    return names


def slot_names(source: torch.optim.Optimizer | Mapping[str, Any], model: Any = None) -> list[Any]:
    """The parameter name in each optimizer slot (group order), None where unknown."""
    import torch

    if isinstance(source, torch.optim.Optimizer):
        names = param_names(source, model)
        return [names.get(id(p)) for g in source.param_groups for p in g["params"]]
    groups, _ = state_dict_parts(source)
    out: list[Any] = []
    for g in groups:
        given = g.get("param_names")
        if isinstance(given, Sequence) and len(given) == len(g["params"]):
            out += [str(n) for n in given]
        else:
            out += [None] * len(g["params"])
    return out


def collect_optimizer(
    source: torch.optim.Optimizer | Mapping[str, Any],
    *,
    cls: str | None = None,
    model: torch.nn.Module | None = None,
    state_digest: bool = True,
) -> OptimizerRecord:
    """Record a live optimizer or its ``state_dict()``; ``cls`` overrides the class name;
    ``model`` names the parameter in each slot.

    Parameters without state (not stepped yet, or held by another shard) are recorded too.
    ``state_digest=False`` leaves the state's digest empty (a checkpoint's file digest
    identifies its state already, and hashing it again would cost a pass over the tensors).
    """
    import torch

    groups, grouped = _params(source)
    if cls is None:
        if isinstance(source, torch.optim.Optimizer):
            cls = qualified_name(type(source))
        else:
            cls = infer_class(groups)
    spec = state_specs().get(cls) if cls else None
    flat = [p for params in grouped for p in params]
    names = slot_names(source, model)
    records = []
    for param, name in zip(flat, names, strict=True):
        state = {str(k): state_entry(v) for k, v in param.state.items()}
        if param.tensor is not None:
            shape: tuple[int, ...] | None = tuple(param.tensor.shape)
            dtype: str | None = dtype_name(param.tensor.dtype)
        else:
            found = _shape_from_state(param.state, spec)
            shape, dtype = found if found else (None, None)
        records.append(ParamRecord(shape=shape, dtype=dtype, state=state, name=name))
    return OptimizerRecord(
        cls=cls,
        groups=[
            {**hyperparameters(g), "params": len(params)}
            for g, params in zip(groups, grouped, strict=True)
        ],
        params=records,
        state_digest=digest_tensors(_state_tensors(flat)) if state_digest else "",
        defaults=(
            hyperparameters(source.defaults) if isinstance(source, torch.optim.Optimizer) else None
        ),
    )


def collect_model(model: torch.nn.Module) -> ModelRecord:
    """Record a model's parameter names, shapes and dtypes (not values), in registration order."""
    params = {
        name: {"shape": list(p.shape), "dtype": dtype_name(p.dtype)}
        for name, p in model.named_parameters()
    }
    # A list, not the dict: the order decides which optimizer slot each parameter takes.
    structure = [[name, info["shape"], info["dtype"]] for name, info in params.items()]
    return ModelRecord(params=params, digest=digest_json(structure))
