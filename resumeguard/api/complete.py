"""Did the resume put everything back? LR schedulers, GradScalers, RNG states and the data
position (``state.*`` findings).

A scheduler or scaler that was never saved, or saved and never loaded, makes a resumed run warm up
again from step 0 or restart its loss scale, and the curve still looks plausible. What the
checkpoint holds is recorded at save (:class:`~resumeguard.collect.components.Components`);
after a restore, one optimizer step pre-hook compares that with the live objects at the first
step, then removes itself: nothing runs on later steps. RNG states move on as soon as they are
used, so "restored" is seen where they are set (torch's, numpy's and Python's setters, watched
only between the restore and the first step), not by comparing states.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import random
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from resumeguard.collect.components import Components, at, components_of
from resumeguard.errors import ResumeGuardError
from resumeguard.verdict.findings import Finding, Severity
from resumeguard.verdict.policy import Policy

log = logging.getLogger("resumeguard")


@dataclasses.dataclass
class Expectation:
    """What the first optimizer step after a restore checks."""

    name: str
    """The checkpoint restored."""
    held: Components
    """What its state holds."""
    step: int | None
    """The step it was saved at (for messages)."""
    schedulers: list[Any] = dataclasses.field(default_factory=list)
    """Schedulers given to the restore (else those found driving the stepping optimizer)."""
    scalers: list[Any] = dataclasses.field(default_factory=list)
    """GradScalers given to the restore (else the one stepping the optimizer)."""
    dataloader: Any = None
    """The data loader given to the restore."""
    restored: set[str] = dataclasses.field(default_factory=set)
    """Component kinds put back so far ("rng", "data"), by the restore or a watched setter."""


def restore_components(
    state: Any,
    expectation: Expectation,
    *,
    scheduler: Any = None,
    scaler: Any = None,
    dataloader: Any = None,
    rng: bool = False,
) -> list[str]:
    """Load each component given from the key its state uses in ``state`` (schedulers and
    scalers in order, one per recorded state), and the RNG states with ``rng``; returns what
    was restored, in words."""
    held = expectation.held
    restored: list[str] = []
    for live, path in zip(expectation.schedulers, held.schedulers, strict=False):
        live.load_state_dict(at(state, path))
        restored.append(f"scheduler ({path}, step {held.schedulers[path]})")
    for live, path in zip(expectation.scalers, held.scalers, strict=False):
        live.load_state_dict(at(state, path))
        restored.append(f"scaler ({path}, scale {held.scalers[path]:g})")
    if dataloader is not None and held.data:
        dataloader.load_state_dict(at(state, held.data[0]))
        expectation.restored.add("data")
        restored.append(f"data position ({held.data[0]})")
    if rng and held.rng:
        restored += list(restore_rng(state, held))
        expectation.restored.add("rng")
    return restored


def expect_at_first_step(expectation: Expectation, judge: Callable[[list[Finding]], None]) -> None:
    """Check ``expectation`` at the next optimizer step (once, then the hook is removed),
    watching the RNG setters until then; ``judge`` reports the findings (and may raise)."""
    import torch.optim.optimizer as optim

    while _pending:  # one expectation at a time: the latest restore is the resume
        _pending[-1]()
    unwatch = _watch_rng(expectation)
    handle: Any = None

    def stop() -> None:
        handle.remove()
        unwatch()
        if stop in _pending:
            _pending.remove(stop)

    def first_step(optimizer: Any, args: Any, kwargs: Any) -> None:
        stop()
        findings = missing_at_first_step(expectation, optimizer)
        if findings:
            judge(findings)

    handle = optim.register_optimizer_step_pre_hook(first_step)
    _pending.append(stop)


_pending: list[Callable[[], None]] = []
"""How to stop the expectation still waiting for its first step (a new restore replaces it)."""


def judging_with(label: str, policy: Policy) -> Callable[[list[Finding]], None]:
    """Judge ``state.*`` findings under ``policy``: ResumeBlocked where a rule blocks, else the
    warnings logged and the info findings said."""

    def judge(findings: list[Finding]) -> None:
        from resumeguard.decide.pipeline import raise_for
        from resumeguard.decide.verified import say
        from resumeguard.verdict.judge import judge as verdict

        report = verdict(label, findings, policy)
        try:
            raise_for(report)
        except ResumeGuardError as e:
            from resumeguard.api.entry import end_if_launched

            end_if_launched(e)
            raise
        for judged in report.findings:
            if judged.severity is Severity.INFO:
                say(f"resumeguard: {judged.finding.message} ({judged.finding.path})")

    return judge


def directory_components(directory: Path) -> Components:
    """What a Trainer-style checkpoint folder holds: its files' components together."""
    held = Components()
    for path in sorted(directory.iterdir()):
        part = file_components(path)
        held = Components(
            model=held.model + part.model,
            optimizer=held.optimizer + part.optimizer,
            schedulers={**held.schedulers, **part.schedulers},
            scalers={**held.scalers, **part.scalers},
            rng={**held.rng, **part.rng},
            data=held.data + part.data,
        )
    return held


def file_components(path: Path) -> Components:
    """What one file of a Trainer-style checkpoint folder holds, from its name and, for the
    small state files (``scheduler.pt``, ``scaler.pt``), its state read with
    ``weights_only=True``."""
    import torch

    name = path.name
    if name in ("scheduler.pt", "scaler.pt") and path.is_file():
        try:
            part = components_of(torch.load(path, weights_only=True))
        except Exception:  # an unreadable state says nothing about what it holds
            return Components()
        return Components(
            schedulers=_in_file(name, part.schedulers), scalers=_in_file(name, part.scalers)
        )
    if name.startswith("rng_state") and name.endswith(".pth"):
        return Components(rng={name: "torch"})
    if name.startswith("optimizer"):
        return Components(optimizer=(name,))
    if name.startswith(("model", "pytorch_model")):
        return Components(model=(name,))
    return Components()


def _in_file(name: str, found: dict[str, Any]) -> dict[str, Any]:
    """Paths into a state file, named by the file (the state itself is the file's name)."""
    return {f"{name}:{k}" if k else name: v for k, v in found.items()}


def missing_at_first_step(expectation: Expectation, optimizer: Any) -> list[Finding]:
    """The ``state.*`` findings for the first step of ``optimizer`` after the restore."""
    from resumeguard.verdict.hints import explain

    e, held = expectation, expectation.held
    findings: list[Finding] = []
    schedulers = e.schedulers or _schedulers_of(optimizer)
    if schedulers and not held.schedulers:
        findings.append(explain("state.scheduler", None, _step_of(schedulers[0])))
    for live, path in zip(schedulers, held.schedulers, strict=False):
        if _step_of(live) != held.schedulers[path]:
            recorded = {"key": path, "step": held.schedulers[path]}
            findings.append(explain("state.scheduler", recorded, _step_of(live)))
    scalers = e.scalers or _stepping_scalers()
    if scalers and not held.scalers:
        findings.append(explain("state.scaler", None, float(scalers[0].get_scale())))
    for live, path in zip(scalers, held.scalers, strict=False):
        # Before the first step's update() the scale is the one loaded, exactly.
        scale = float(live.get_scale())
        if scale != held.scalers[path]:
            findings.append(
                explain("state.scaler", {"key": path, "scale": held.scalers[path]}, scale)
            )
    if held.rng and "rng" not in e.restored:
        owners = sorted(set(held.rng.values()))
        findings.append(explain("state.rng", {"key": next(iter(held.rng)), "owners": owners}, None))
    if held.data and "data" not in e.restored:
        findings.append(explain("state.data", {"key": held.data[0]}, None))
    if not held.data and _mid_epoch(e):
        findings.append(explain("state.data", None, e.step))
    return findings


def _mid_epoch(e: Expectation) -> bool:
    """The checkpoint's step is inside an epoch of the data loader given to the restore."""
    try:
        length = len(e.dataloader) if e.dataloader is not None else 0
    except TypeError:
        return False
    return bool(length) and e.step is not None and e.step % length != 0


def many(value: Any) -> list[Any]:
    """A component argument as a list: None, one object, or a list of them."""
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _step_of(scheduler: Any) -> int | None:
    step = getattr(scheduler, "last_epoch", None)
    return step if isinstance(step, int) else None


def _schedulers_of(optimizer: Any) -> list[Any]:
    """The LR schedulers driving ``optimizer``, directly or through a wrapper of it (Accelerate's
    ``AcceleratedOptimizer``), found among the live objects once."""
    from torch.optim.lr_scheduler import LRScheduler

    def drives(scheduler: Any) -> bool:
        bound = getattr(scheduler, "optimizer", None)
        return bound is optimizer or getattr(bound, "optimizer", None) is optimizer

    # type(), not isinstance(): a lazy module's proxy answers __class__ with a deprecation.
    return [o for o in gc.get_objects() if issubclass(type(o), LRScheduler) and drives(o)]


def _stepping_scalers() -> list[Any]:
    """The enabled GradScaler whose ``step`` is stepping the optimizer now (found on the call
    stack, so only a scaler in use for this step counts), else none."""
    amp = sys.modules.get("torch.amp.grad_scaler")
    if amp is None:
        return []
    frame = sys._getframe(1)
    while frame is not None:
        owner = frame.f_locals.get("self") if frame.f_code.co_name == "step" else None
        if owner is not None and issubclass(type(owner), amp.GradScaler):
            return [owner] if owner.is_enabled() else []
        frame = frame.f_back  # type: ignore[assignment]
    return []


_RNG_SETTERS: tuple[tuple[str, str], ...] = (
    ("torch", "set_rng_state"),
    ("torch.random", "set_rng_state"),
    ("torch.cuda", "set_rng_state"),
    ("torch.cuda", "set_rng_state_all"),
    ("numpy.random", "set_state"),
    ("random", "setstate"),
)


def _watch_rng(expectation: Expectation) -> Callable[[], None]:
    """Until the returned function is called, a call of any RNG setter marks "rng" restored."""
    patched: list[tuple[Any, str, Any]] = []
    for module_name, attr in _RNG_SETTERS:
        module = sys.modules.get(module_name) if module_name != "random" else random
        original = getattr(module, attr, None) if module is not None else None
        if original is None or getattr(original, "_resumeguard_watch", False):
            continue
        setattr(module, attr, _marking(original, expectation))
        patched.append((module, attr, original))

    def unwatch() -> None:
        for module, attr, original in patched:
            with contextlib.suppress(Exception):
                setattr(module, attr, original)

    return unwatch


def _marking(original: Any, expectation: Expectation) -> Any:
    def setter(*args: Any, **kwargs: Any) -> Any:
        expectation.restored.add("rng")
        return original(*args, **kwargs)

    setter._resumeguard_watch = True  # type: ignore[attr-defined]
    return setter


def restore_rng(state: Any, held: Components) -> Iterator[str]:
    """Put back the RNG states ``state`` holds (torch, CUDA when present, Python, numpy)."""
    import torch

    for path, owner in held.rng.items():
        value = at(state, path)
        if owner == "torch":
            torch.set_rng_state(value)
        elif owner == "cuda" and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(list(value) if isinstance(value, Sequence) else [value])
        elif owner == "python":
            random.setstate((value[0], tuple(value[1]), value[2]))
        elif owner == "numpy" and "numpy" in sys.modules:
            import numpy

            if isinstance(value, Mapping):
                continue  # a Generator's state: the script's own generator restores it
            numpy.random.set_state(tuple(value))
        else:
            continue
        yield f"rng ({path}, {owner})"
