"""What a training framework knows about a run, compared on resume: its hyper-parameters, the
effective batch size, the step training starts at, and whether a checkpoint fits the model.

The Lightning and Transformers callbacks gather these from their framework; this module turns
them into config keys, policy rules and findings, judged like every other finding. torch is
imported only to read a state dict.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from resumeguard.decide.intent import ResumeCheck
from resumeguard.decide.pipeline import raise_for
from resumeguard.decide.verified import say as say  # the one INFO line of each front door
from resumeguard.verdict.findings import Finding, Severity
from resumeguard.verdict.hints import explain
from resumeguard.verdict.judge import judge as verdict
from resumeguard.verdict.policy import Rule
from resumeguard.verdict.step import unknown_step

if TYPE_CHECKING:
    import torch

log = logging.getLogger("resumeguard")

EFFECTIVE_BATCH_KEY = "effective_batch_size"
"""The config key of the effective batch size (per-device batch x world size x accumulation)."""

FACTOR_RULE = "a factor of the effective batch size, which is compared on its own"


@dataclasses.dataclass(frozen=True)
class BatchSize:
    """The effective batch size and where its factors live in the config."""

    per_device: int
    """Samples per device per forward pass (the data loader's batch size)."""
    world_size: int
    """Processes training together."""
    accumulation: int
    """Forward passes per optimizer step."""
    factor_keys: tuple[str, ...] = ()
    """Config keys that hold a factor (e.g. ``per_device_train_batch_size``)."""

    @property
    def effective(self) -> int:
        """Samples per optimizer step."""
        return self.per_device * self.world_size * self.accumulation

    def rules(self) -> list[Rule]:
        """Preset-level warn rules for the factors: a change of factors that keeps the product
        goes ahead (reported), a change of the product blocks through its own finding. A user
        rule still beats them; a record without the product leaves factors to the preset."""
        paths = [*(f"config.{k}" for k in self.factor_keys), "env.world_size", "env.device_count"]
        product = f"config.{EFFECTIVE_BATCH_KEY}"
        return [Rule(p, Severity.WARN, FACTOR_RULE, needs=product) for p in paths]


def batch_rules(batch: BatchSize | None) -> list[Rule]:
    """The callback's preset-level rules: the batch-size factor rules when the batch size is
    known (added to the user's policy once resolved, never a policy of its own)."""
    return batch.rules() if batch is not None else []


def with_batch(config: Mapping[str, Any], batch: BatchSize | None) -> dict[str, Any]:
    """``config`` plus the effective batch size, when known."""
    return {**config, EFFECTIVE_BATCH_KEY: batch.effective} if batch else dict(config)


RESTART_RULE = "a resumed run restarting from step 0 loses its training, not only metrics"


def restart(check: ResumeCheck, start_step: int) -> None:
    """Judge a silent restart (see :func:`restart_finding`): it blocks under either preset,
    unlike a checkpoint a little older than the last logged step; a user rule still decides."""
    found = restart_finding(check, start_step)
    if found is None:
        return
    if found.unknown:  # whether the run trained before cannot be told: unverifiable
        judge(check, [found])
        return
    policy = check.policy
    rule = Rule("run.step", Severity.BLOCK, RESTART_RULE)
    judge(
        dataclasses.replace(
            check, policy=dataclasses.replace(policy, preset=(*policy.preset, rule))
        ),
        [found],
    )


def restart_finding(check: ResumeCheck, start_step: int) -> Finding | None:
    """``run.step`` when a resumed run with training behind it restarts from step 0: no
    checkpoint was loaded, and its curves would begin again inside the same run."""
    if start_step != 0 or check.stored is None:
        return None
    saved = [c.step for c in check.stored.checkpoints.values() if c.step]
    if check.step_unknown and not saved:
        return unknown_step(0, check.step_unknown)  # logged before? cannot be told
    if check.last_step is None and not saved:
        return None  # nothing was trained or logged before: starting at 0 is the resume
    done = f"logged up to W&B step {check.last_step}" if check.last_step is not None else ""
    if saved:
        done += f"{' and ' if done else ''}saved checkpoints up to step {max(saved)}"
    return Finding(
        path="run.step",
        recorded=check.last_step if check.last_step is not None else max(saved),
        current=0,
        message=f"the run already {done}, but training starts from step 0: no checkpoint was "
        "loaded, so its curves would start again inside the same run",
        hint="resume from the run's checkpoint (Lightning: fit(ckpt_path=...), Transformers: "
        "train(resume_from_checkpoint=...)), or start a new run (another run id)",
    )


def fit_findings(saved: Mapping[str, Any], module: torch.nn.Module) -> list[Finding]:
    """``model.params.<name>`` for each tensor whose shape in the state dict ``saved`` differs
    from the module's: ``load_state_dict`` would refuse it (missing and unexpected keys are the
    framework's own strict-loading choice)."""
    import torch

    current = module.state_dict()
    params = {name for name, _ in module.named_parameters()}
    findings = []
    for name, value in saved.items():
        now = current.get(name)
        if (
            isinstance(value, torch.Tensor)
            and isinstance(now, torch.Tensor)
            and tuple(value.shape) != tuple(now.shape)
        ):
            kind = "params" if name in params else "buffers"
            findings.append(explain(f"model.{kind}.{name}", list(value.shape), list(now.shape)))
    return findings


def judge(check: ResumeCheck, findings: Sequence[Finding]) -> None:
    """Judge findings made after the resume check (at a later hook) with the check's policy:
    ResumeBlocked with the report when one blocks, Unverifiable when one could not be read,
    else log the warnings."""
    if not findings:
        return
    raise_for(verdict(check.report.run, findings, check.policy))


def verified_line(check: ResumeCheck, checkpoint: str | None, batch: BatchSize | None) -> str:
    """The line of :func:`resumeguard.decide.verified.verified_line` for a framework resume: the
    checkpoint the framework loaded, and the effective batch size."""
    from resumeguard.decide.verified import verified_line as line

    extra = [f"effective batch size {batch.effective}"] if batch is not None else []
    return line(check, checkpoint=checkpoint, extra=extra)


class LoadWatch:
    """A ``load_state_dict`` pre-hook on the model while a resume loads its checkpoint: the
    state dict is fit-checked before torch copies a tensor (and before the framework's own
    size-mismatch error). The callback arms it before the framework loads and removes it
    once training starts."""

    def __init__(self) -> None:
        self._handle: Any = None

    def arm(self, module: torch.nn.Module, on_load: Callable[[Mapping[str, Any]], None]) -> None:
        """Call ``on_load(state_dict)`` before the next ``module.load_state_dict``."""
        self.disarm()

        def hook(_module: Any, state_dict: Mapping[str, Any], prefix: str, *_: Any) -> None:
            if prefix == "":  # the module's own load, not a submodule's part of it
                on_load(state_dict)

        self._handle = module.register_load_state_dict_pre_hook(hook)

    def disarm(self) -> None:
        """Remove the hook, if armed."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
