"""Does a checkpoint's optimizer state fit the current model and optimizer? Checked before loading.

``Optimizer.load_state_dict`` checks only the number of groups and of params per group, so a layer
whose shape changed loads silently and fails later at ``step()`` (or never, when two params of
equal shape swap places); AdamW state loads into SGD and ``step()`` then raises
``KeyError: 'momentum'``; and the checkpoint's hyperparameters silently replace the configured ones.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from resumeguard.collect.components import uncompiled_name
from resumeguard.collect.optimizer import (
    IGNORED_GROUP_KEYS,
    IMPL_FLAGS,
    StateSpec,
    class_candidates,
    distinguishing_flags,
    dtype_name,
    expected_shape,
    hyperparameters,
    json_safe,
    param_names,
    qualified_name,
    resolve_class,
    state_dict_parts,
    state_specs,
)
from resumeguard.verdict.paths import require

if TYPE_CHECKING:
    import torch

    from resumeguard.verdict.findings import Finding


@dataclasses.dataclass(frozen=True)
class FitProblem:
    """One way a checkpoint does not fit, at a stable finding path."""

    path: str
    """Finding path, e.g. "optimizer.params.3.shape" or "optimizer.groups.0.lr"."""
    recorded: Any
    """What the checkpoint holds (JSON-safe), or None when it lacks the item."""
    current: Any
    """What the current model or optimizer has (JSON-safe), or None when it lacks the item."""
    message: str
    """One line: what differs and what it would do."""
    hint: str
    """One line: what to do about it."""

    def __post_init__(self) -> None:
        require(self.path)  # the same registry as every finding's


_SHAPE_HINT = (
    "the model changed since the checkpoint: restore the recorded model definition, "
    "or start a fresh run (or load the model weights only and reset the optimizer)"
)


def check_fit(
    saved: Mapping[str, Any],
    optimizer: torch.optim.Optimizer,
    *,
    model: torch.nn.Module | None = None,
    saved_model_state: Mapping[str, Any] | None = None,
    saved_class: str | None = None,
    saved_names: Sequence[str | None] = (),
    saved_order: Sequence[str] = (),
) -> list[FitProblem]:
    """Every way optimizer state dict ``saved`` does not fit ``optimizer`` (and ``model``); no
    tensor is loaded and nothing is stepped. ``saved_class`` is the recorded class name and
    ``saved_names`` the recorded parameter name of each slot, where known; ``saved_order`` the
    checkpoint's model parameter names in registration order, when it holds no model state."""
    saved_groups, saved_state = state_dict_parts(saved)
    groups = optimizer.param_groups
    current_cls = qualified_name(type(optimizer))
    names = param_names(optimizer, model)
    problems = _check_class(saved_groups, groups, type(optimizer), saved_class)
    if saved_model_state is not None and model is not None:
        problems += _check_model(saved_model_state, model)

    if len(saved_groups) != len(groups):
        return [
            *problems,
            FitProblem(
                "optimizer.groups",
                len(saved_groups),
                len(groups),
                f"the checkpoint has {len(saved_groups)} param groups, the optimizer "
                f"{len(groups)}: load_state_dict will raise",
                "build the param groups as the recorded run did (e.g. the same weight-decay split)",
            ),
        ]
    counts_match = True
    for i, (sg, g) in enumerate(zip(saved_groups, groups, strict=True)):
        if len(sg["params"]) != len(g["params"]):
            counts_match = False
            problems.append(
                FitProblem(
                    f"optimizer.groups.{i}.params",
                    len(sg["params"]),
                    len(g["params"]),
                    f"param group {i} has {len(sg['params'])} params in the checkpoint, "
                    f"{len(g['params'])} now: load_state_dict will raise",
                    "the model gained or lost parameters (or frozen ones moved groups): "
                    + _SHAPE_HINT,
                )
            )
        problems += _missing_hyperparameters(i, sg, g)
    if not counts_match:
        # load_state_dict pairs params by position; with other counts the pairing means nothing.
        return one_class_finding(problems)

    state_problems = _Collector()
    saved_slots = _saved_slot_names(
        saved_groups,
        groups,
        names,
        model,
        saved_model_state or dict.fromkeys(saved_order),
        saved_names,
    )
    index = 0
    for sg, g in zip(saved_groups, groups, strict=True):
        # After loading, the checkpoint's hyperparameters are the ones in effect.
        effective = {**g, **sg}
        for pid, param in zip(sg["params"], g["params"], strict=True):
            label = names.get(id(param))
            state = saved_state.get(pid) or {}
            was = saved_slots[index]
            if was is not None and label is not None and _plain(was) != _plain(label):
                problems.append(
                    FitProblem(
                        f"optimizer.params.{index}.name",
                        was,
                        label,
                        f"optimizer slot {index} held {was!r} in the checkpoint, now {label!r}:"
                        " its state would load into another parameter (parameters registered"
                        " in another order?)",
                        "register parameters in the recorded order: " + _SHAPE_HINT,
                    )
                )
            _check_param_state(
                state_problems, index, label, state, param, optimizer, current_cls, effective
            )
            index += 1
    return one_class_finding(problems + state_problems.problems())


SCHEDULED_KEYS = frozenset({"lr", "momentum", "betas"})
"""Hyperparameters LR schedulers (and training code) set at every step: the checkpoint's value is
the schedule's, so it is compared through what was configured, not as it stands."""


def hyper_overrides(
    saved: Mapping[str, Any],
    optimizer: torch.optim.Optimizer,
    *,
    configured: Mapping[str, Any] | None = None,
) -> list[FitProblem]:
    """Hyperparameters whose configuration changed since the checkpoint was saved, which loading
    it silently puts back to the checkpoint's values.

    ``configured`` is what the optimizer was constructed with when the checkpoint was saved
    (``OptimizerRecord.defaults``). A scheduled key (lr, momentum, betas) differs from the
    checkpoint's at every resume of a scheduled run, so it counts only when its configuration
    changed: the constructor's value against ``configured``, or a scheduler's ``initial_lr``
    against the checkpoint's. With neither known, it is not reported. Other keys are compared
    as they stand."""
    saved_groups, _ = state_dict_parts(saved)
    now = hyperparameters(optimizer.defaults)
    problems = []
    for i, (sg, g) in enumerate(zip(saved_groups, optimizer.param_groups, strict=False)):
        for key in g:
            if key in IGNORED_GROUP_KEYS or key not in sg:
                continue
            in_force, current = json_safe(sg[key]), json_safe(g[key])
            then: Any = in_force
            if key in SCHEDULED_KEYS or _cycled(key, sg):
                then, current = _configured(key, sg, g, configured, now)
                if then is _UNKNOWN:
                    continue
            if then == current:
                continue
            problems.append(_override(i, key, then, current, in_force, len(saved_groups) > 1))
    return problems


def _saved_slot_names(
    saved_groups: Sequence[Mapping[str, Any]],
    groups: Sequence[Mapping[str, Any]],
    names: Mapping[int, str],
    model: torch.nn.Module | None,
    saved_model_state: Mapping[str, Any] | None,
    recorded: Sequence[str | None],
) -> list[str | None]:
    """The parameter name each checkpoint slot held, None where unknown: the state dict's own
    ``param_names`` (torch >= 2.6, named optimizers), else the names recorded at save, else, for
    a group built in the model's order (``model.parameters()``, how most scripts build it), the
    order of those names in the checkpoint's model state dict (its keys keep registration order).
    Equal shapes that swapped places pass every shape check; only the names tell them apart."""
    order = {n: k for k, (n, _) in enumerate(model.named_parameters())} if model else {}
    saved_order = [str(k) for k in saved_model_state or {} if str(k) in order]
    out: list[str | None] = []
    for sg, g in zip(saved_groups, groups, strict=True):
        start = len(out)
        given = sg.get("param_names")
        if isinstance(given, Sequence) and len(given) == len(sg["params"]):
            out += [str(n) for n in given]
            continue
        out += [
            recorded[i] if i < len(recorded) else None
            for i in range(start, start + len(g["params"]))
        ]
        current = [names.get(id(p)) for p in g["params"]]
        if any(n is None for n in out[start:]) and all(n in order for n in current):
            positions = [order[str(n)] for n in current]
            if positions == sorted(positions):
                members = set(current)
                inferred = [n for n in saved_order if n in members]
                if len(inferred) == len(current):
                    out[start:] = [
                        o if o is not None else n
                        for o, n in zip(out[start:], inferred, strict=True)
                    ]
    return out


_UNKNOWN: Any = object()


def _cycled(key: str, group: Mapping[str, Any]) -> bool:
    """True for a key OneCycleLR/CyclicLR cycle (they keep base_momentum in the group)."""
    return key in ("momentum", "betas") and "base_momentum" in group


def _configured(
    key: str,
    saved_group: Mapping[str, Any],
    group: Mapping[str, Any],
    configured: Mapping[str, Any] | None,
    now: Mapping[str, Any],
) -> tuple[Any, Any]:
    """(configured then, configured now) for a scheduled key; then is _UNKNOWN when unknown."""
    if key == "lr" and "initial_lr" in saved_group:
        # A torch LR scheduler keeps each group's configured lr as initial_lr.
        return json_safe(saved_group["initial_lr"]), json_safe(group.get("initial_lr", group["lr"]))
    if configured is not None and key in configured and key in now:
        return configured[key], now[key]
    return _UNKNOWN, None


def _override(
    i: int, key: str, then: Any, current: Any, in_force: Any, several: bool
) -> FitProblem:
    group = f" (param group {i})" if several else ""
    extra = ""
    if key == "lr":
        extra = (
            f", param_groups[{i}]['initial_lr'] and your scheduler's base_lrs[{i}] (after"
            " loading its state), if you use a torch LR scheduler"
        )
    return FitProblem(
        f"optimizer.groups.{i}.{key}",
        in_force,
        current,
        f"{key} is configured as {current!r} now, {then!r} when the checkpoint was saved:"
        f" load_state_dict puts the checkpoint's {key} {in_force!r} back{group}, and that value"
        " is in force until your scheduler or code sets it",
        f"to apply {current!r}: after load_state_dict set param_groups[{i}][{key!r}]"
        f"{extra}; to keep the run as it was, configure {then!r} again",
    )


# --- Class and hyperparameter keys ---------------------------------------------------------------

P = TypeVar("P", FitProblem, "Finding")


def one_class_finding(items: Sequence[P]) -> list[P]:
    """With an ``optimizer.class`` finding, the rows that only follow from it are left out: the
    other class's hyperparameters (``optimizer.groups.<i>.<key>``, group sizes kept) and state
    keys. AdamW -> SGD is one finding, not ten."""
    if not any(i.path == "optimizer.class" for i in items):
        return list(items)
    return [i for i in items if not _follows_from_class(i.path)]


def _follows_from_class(path: str) -> bool:
    parts = path.split(".")
    if parts[:2] == ["optimizer", "groups"] and len(parts) == 4:
        return parts[3] != "params"
    return parts[:2] == ["optimizer", "params"] and len(parts) >= 4 and parts[3] == "state"


def _check_class(
    saved_groups: Sequence[Mapping[str, Any]],
    groups: Sequence[Mapping[str, Any]],
    optimizer_cls: type,
    saved_class: str | None,
) -> list[FitProblem]:
    current_cls = qualified_name(optimizer_cls)
    if saved_class is not None:
        recorded: str | None = saved_class
    else:
        recorded = _inferred_mismatch(saved_groups, groups, optimizer_cls)
    if recorded is None or recorded == current_cls:
        return []
    return [
        FitProblem(
            "optimizer.class",
            recorded,
            current_cls,
            f"the checkpoint holds {_short(recorded)} state, the optimizer is "
            f"{_short(current_cls)}: load_state_dict does not check this, replaces the "
            "hyperparameters with the other class's, and step() then raises KeyError or runs "
            "on state it does not expect",
            f"build the optimizer as the recorded run did ({_short(recorded)}), or start it fresh"
            " (load only the model weights)",
        )
    ]


def _inferred_mismatch(
    saved_groups: Sequence[Mapping[str, Any]],
    groups: Sequence[Mapping[str, Any]],
    optimizer_cls: type,
) -> str | None:
    """The class the checkpoint's groups point to, when that is not the current one; else None.

    Classes with the same keys (Adam, AdamW) are told apart by their distinguishing flags; the
    current class fits when the optimizer is configured like the checkpoint on those flags, so
    ``Adam(decoupled_weight_decay=True)`` fits an AdamW checkpoint. A subclass fits its base, and
    a custom class whose keys happen to match a torch class fits a checkpoint with its own keys.
    """
    lineage = [qualified_name(c) for c in optimizer_cls.__mro__]
    for sg, g in zip(saved_groups, groups, strict=False):
        candidates = class_candidates(sg)
        if not candidates:
            continue  # an unknown class: the state-key checks still apply
        ours = next((name for name in lineage if name in candidates), None)
        if ours is not None:
            flags = distinguishing_flags(candidates).get(ours, {})
            if all(sg.get(f) == g.get(f) for f in flags):
                continue
        elif _keys(sg) == _keys(g):
            continue  # keys cannot tell a custom class from a torch one
        resolved = resolve_class(sg)
        return resolved if resolved is not None else " or ".join(candidates)
    return None


def _keys(group: Mapping[str, Any]) -> frozenset[str]:
    return frozenset(str(k) for k in group if k not in IGNORED_GROUP_KEYS)


def _missing_hyperparameters(
    i: int, saved_group: Mapping[str, Any], group: Mapping[str, Any]
) -> list[FitProblem]:
    """Keys the optimizer's group has and the checkpoint's lacks: loading drops them."""
    missing = [
        k
        for k in group
        if k not in saved_group and k not in IGNORED_GROUP_KEYS and k not in IMPL_FLAGS
    ]
    return [
        FitProblem(
            f"optimizer.groups.{i}.{key}",
            None,
            json_safe(group[key]),
            f"the checkpoint's param group {i} has no {key!r}: load_state_dict replaces the group,"
            f" so step() raises KeyError({key!r}) or runs without it",
            "the checkpoint is from another optimizer class or configuration: build the optimizer"
            " as the recorded run did",
        )
        for key in missing
    ]


# --- Per-parameter state -------------------------------------------------------------------------


@dataclasses.dataclass
class _Collector:
    """Per-param problems; identical key and dtype findings across params are reported once."""

    by_path: dict[str, FitProblem] = dataclasses.field(default_factory=dict)
    repeats: dict[tuple[Hashable, ...], tuple[str, list[int]]] = dataclasses.field(
        default_factory=dict
    )

    def add(self, problem: FitProblem) -> None:
        self.by_path[problem.path] = problem

    def add_repeated(
        self, group_key: tuple[Hashable, ...], index: int, problem: FitProblem
    ) -> None:
        # 100 layers moved from AdamW to SGD is one finding, not 300.
        if group_key in self.repeats:
            self.repeats[group_key][1].append(index)
            return
        self.repeats[group_key] = (problem.path, [index])
        self.add(problem)

    def problems(self) -> list[FitProblem]:
        out = dict(self.by_path)
        for path, indices in self.repeats.values():
            if len(indices) > 1:
                p = out[path]
                out[path] = dataclasses.replace(
                    p, message=f"{p.message} (params {_ranges(indices)}: {len(indices)} in all)"
                )
        return list(out.values())


def _check_param_state(
    out: _Collector,
    index: int,
    label: str | None,
    state: Mapping[str, Any],
    param: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    current_cls: str,
    effective: Mapping[str, Any],
) -> None:
    import torch

    spec = state_specs().get(current_cls)
    live = optimizer.state.get(param) or {}
    present = {k for k, v in state.items() if v is not None}
    where = f"param {index}" + (f" ({label})" if label else "")
    expected = _expected_keys(spec, live, effective, param.dim())
    if expected is not None and present:
        for key in sorted(present - expected, key=str):
            out.add_repeated(
                ("unexpected", key),
                index,
                FitProblem(
                    f"optimizer.params.{index}.state.{key}",
                    key,
                    None,
                    f"checkpoint state {key!r} of {where} is not state of {_short(current_cls)}",
                    "the checkpoint is from another optimizer: build the recorded optimizer, or"
                    " start the optimizer fresh",
                ),
            )
        for key in sorted(expected - present, key=str):
            out.add_repeated(
                ("missing", key),
                index,
                FitProblem(
                    f"optimizer.params.{index}.state.{key}",
                    None,
                    key,
                    f"{_short(current_cls)} keeps {key!r} but the checkpoint's state of {where}"
                    " lacks it: step() raises KeyError or restarts it from zero",
                    "the checkpoint is from another optimizer or configuration: build the"
                    " recorded optimizer, or start the optimizer fresh",
                ),
            )

    bad_shapes: list[tuple[str, torch.Tensor]] = []
    bad_dtypes: list[tuple[str, torch.Tensor]] = []
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            continue
        want = _want_shape(str(key), value, spec, live, param)
        if want is None:
            continue
        if tuple(value.shape) != want:
            bad_shapes.append((str(key), value))
        elif param.is_floating_point() and value.is_floating_point() and value.dtype != param.dtype:
            bad_dtypes.append((str(key), value))
    if bad_shapes:
        keys = ", ".join(k for k, _ in bad_shapes)
        recorded = list(bad_shapes[0][1].shape)
        out.add(
            FitProblem(
                f"optimizer.params.{index}.shape",
                recorded,
                list(param.shape),
                f"checkpoint state {keys} of {where} has shape {recorded}, the parameter now"
                f" {list(param.shape)}: load_state_dict accepts it and step() fails (or, for"
                " swapped equal shapes, silently uses another layer's state)",
                _SHAPE_HINT,
            )
        )
    if bad_dtypes:
        recorded_dtype = dtype_name(bad_dtypes[0][1].dtype)
        out.add_repeated(
            ("dtype", recorded_dtype, dtype_name(param.dtype)),
            index,
            FitProblem(
                f"optimizer.params.{index}.dtype",
                recorded_dtype,
                dtype_name(param.dtype),
                f"checkpoint state of {where} is {recorded_dtype}, the parameter"
                f" {dtype_name(param.dtype)}: load_state_dict silently casts the state",
                "load in the recorded precision (e.g. the same mixed-precision setup), or accept"
                " the cast knowingly",
            ),
        )


def _expected_keys(
    spec: StateSpec | None,
    live: Mapping[str, Any],
    effective: Mapping[str, Any],
    ndim: int,
) -> frozenset[str] | None:
    """The state keys the current optimizer keeps for a param, or None when unknown.

    A known class's table uses the hyperparameters in effect after loading (the checkpoint's),
    so an ``amsgrad`` that the checkpoint turns off expects no ``max_exp_avg_sq``. A custom class
    falls back to its live state, if it has any.
    """
    if spec is not None:
        return spec.keys(effective, ndim)
    keys = frozenset(k for k, v in live.items() if v is not None)
    return keys or None


def _want_shape(
    key: str,
    value: torch.Tensor,
    spec: StateSpec | None,
    live: Mapping[str, Any],
    param: torch.Tensor,
) -> tuple[int, ...] | None:
    """The shape a saved state tensor must have, or None when its shape is not tied to the param."""
    import torch

    want = expected_shape(key, tuple(param.shape), spec)
    if want is not None:
        return want
    if spec is None:
        mirror = live.get(key)
        if isinstance(mirror, torch.Tensor) and mirror.dim() > 0:
            return tuple(mirror.shape)
    return None


# --- Model ---------------------------------------------------------------------------------------

_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
"""Prefixes DDP/DataParallel and torch.compile add to every state-dict key."""


def check_model_fit(saved: Mapping[str, Any], model: torch.nn.Module) -> list[FitProblem]:
    """Every way model state dict ``saved`` does not fit ``model`` (names, shapes); the
    ``_orig_mod.`` names of a ``torch.compile``d model match the plain ones."""
    return _check_model(saved, model)


def _check_model(saved: Mapping[str, Any], model: torch.nn.Module) -> list[FitProblem]:
    import torch

    plain = uncompiled_name
    params = {plain(n): p for n, p in model.named_parameters()}
    current = {
        uncompiled_name(str(k)): v
        for k, v in model.state_dict().items()
        if isinstance(v, torch.Tensor)
    }
    saved_shapes = {
        plain(str(k)): tuple(v.shape) for k, v in saved.items() if isinstance(v, torch.Tensor)
    }
    prefix_hint = _prefix_hint(set(saved_shapes), set(current))
    problems = []
    for name, value in current.items():
        kind = "params" if name in params else "buffers"
        shape = tuple(value.shape)
        if name not in saved_shapes:
            problems.append(
                FitProblem(
                    f"model.{kind}.{name}",
                    None,
                    list(shape),
                    f"{name} is in the model but not in the checkpoint",
                    prefix_hint or _SHAPE_HINT,
                )
            )
        elif saved_shapes[name] != shape:
            problems.append(
                FitProblem(
                    f"model.{kind}.{name}",
                    list(saved_shapes[name]),
                    list(shape),
                    f"{name} has shape {list(saved_shapes[name])} in the checkpoint,"
                    f" {list(shape)} now",
                    _SHAPE_HINT,
                )
            )
    for name, shape in saved_shapes.items():
        if name not in current:
            problems.append(
                FitProblem(
                    f"model.params.{name}",
                    list(shape),
                    None,
                    f"{name} is in the checkpoint but not in the model",
                    prefix_hint or _SHAPE_HINT,
                )
            )
    return problems


def _prefix_hint(saved: set[str], current: set[str]) -> str | None:
    """Advice when the names differ only by a wrapper's prefix."""
    if not saved or not current or saved == current:
        return None
    for prefix in _WRAPPER_PREFIXES:
        if {prefix + n for n in current} == saved:
            return f"the checkpoint's names carry a {prefix!r} prefix: strip it before loading"
        if {prefix + n for n in saved} == current:
            return f"the model's names carry a {prefix!r} prefix: load into the unwrapped model"
    return None


# --- Helpers -------------------------------------------------------------------------------------


def _plain(name: Any) -> Any:
    """A parameter name without torch.compile's ``_orig_mod.`` parts."""
    return uncompiled_name(name) if isinstance(name, str) else name


def _short(cls: str) -> str:
    """ "AdamW" for "torch.optim.adamw.AdamW"; alternatives joined by " or " stay readable."""
    return " or ".join(part.rsplit(".", 1)[-1] for part in cls.split(" or "))


def _ranges(indices: Sequence[int]) -> str:
    """ "0-3, 7" for [0, 1, 2, 3, 7]."""
    spans: list[str] = []
    start = prev = indices[0]
    for i in [*indices[1:], None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        spans.append(str(start) if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return ", ".join(spans)
