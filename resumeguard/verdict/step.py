"""The step check: a resume from a checkpoint older than the run's last logged step loses every
log call W&B drops below it (``run.step``), and a last step that cannot be read makes that
unknown (unverifiable, never "nothing logged")."""

from __future__ import annotations

import dataclasses

from resumeguard.records.run import WANDB_STEP, CheckpointRecord, RunRecord
from resumeguard.verdict.findings import Finding
from resumeguard.verdict.hints import explain


def step_finding(
    checkpoint: CheckpointRecord,
    last_step: int | None,
    *,
    run_id: str,
    newer: str = "",
    unknown: str = "",
) -> Finding | None:
    """``run.step`` when a checkpoint is older than the run's last logged step (W&B drops every
    log call below the step it is at); a checkpoint at the last logged step resumes cleanly,
    and one whose step is not W&B's own (a framework's global step) is not compared. The hint
    offers W&B's rewind to the checkpoint's step. ``unknown`` says why the last logged step
    cannot be known: then the step is unverifiable (see :func:`unknown_step`)."""
    checkpoint_step = checkpoint.step if counts_wandb_steps(checkpoint) else None
    if checkpoint_step is not None and unknown:
        return unknown_step(checkpoint_step, unknown)
    if checkpoint_step is None or last_step is None or checkpoint_step >= last_step:
        return None
    finding = explain("run.step", last_step, checkpoint_step)
    rewind = (
        f'rewind the run to the checkpoint: wandb.init(resume_from="{run_id}?_step='
        f'{checkpoint_step}") (resumeguard.init(..., rewind=True) does it)'
    )
    return dataclasses.replace(finding, hint=f"{newer}{rewind}; or {finding.hint}")


def unknown_step(start: int, reason: str) -> Finding:
    """``run.step`` when the run's last logged step cannot be read: unverifiable, since steps
    logged after ``start`` would be dropped unseen."""
    return Finding(
        path="run.step",
        recorded=None,
        current=start,
        message=f"the run's last logged step cannot be read ({reason}), so whether a resume at "
        f"step {start} loses logged steps is unknown",
        hint="restore the run's .wandb file from a backup, or rewind the run explicitly "
        "(resumeguard.init(..., rewind=True)), or ignore run.step with --policy",
        unknown=reason,
    )


def step_findings(
    record: RunRecord, last_step: int | None, *, run_id: str, unknown: str = ""
) -> list[Finding]:
    """``run.step`` for the newest recorded checkpoint, the one a resume restores."""
    newest = newest_checkpoint(record)
    if newest is None:
        return []
    found = step_finding(newest[1], last_step, run_id=run_id, unknown=unknown)
    return [found] if found is not None else []


def counts_wandb_steps(checkpoint: CheckpointRecord) -> bool:
    """True when the checkpoint's step is W&B's own, comparable with the last logged step."""
    return checkpoint.step is not None and checkpoint.step_counter == WANDB_STEP


def newest_checkpoint(record: RunRecord) -> tuple[str, CheckpointRecord] | None:
    """The recorded checkpoint with the highest step, if any has a step."""
    stepped = [(c.step, n, c) for n, c in record.checkpoints.items() if c.step is not None]
    if not stepped:
        return None
    _, name, checkpoint = max(stepped, key=lambda t: (t[0], t[2].saved_at))
    return name, checkpoint
