"""The step check in process: a checkpoint older than the run's last logged step is ``run.step``
(W&B drops every log call below the step it is at), one at that step resumes cleanly, a step of
another counter is not compared, and a last step that cannot be read is unverifiable."""

from __future__ import annotations

from resumeguard.records.fingerprint import NOT_GIVEN, Fingerprint
from resumeguard.records.run import CheckpointRecord, RunRecord
from resumeguard.verdict.judge import judge
from resumeguard.verdict.policy import preset
from resumeguard.verdict.step import (
    counts_wandb_steps,
    newest_checkpoint,
    step_finding,
    step_findings,
    unknown_step,
)

NOTHING = Fingerprint(code=NOT_GIVEN, deps=NOT_GIVEN, env=NOT_GIVEN)


def ckpt(step: int | None, *, counter: str = "_step", saved_at: str = "") -> CheckpointRecord:
    return CheckpointRecord(
        file="resumeguard/checkpoints/c.pt",
        digest="blake3:0",
        size=1,
        step=step,
        step_counter=counter,
        saved_at=saved_at,
    )


def test_an_older_checkpoint_is_run_step_with_the_rewind_and_one_at_the_last_step_is_not() -> None:
    older = step_finding(ckpt(4), 7, run_id="r1", newer="save a newer one; ")
    assert older is not None
    assert (older.path, older.recorded, older.current, older.unknown) == ("run.step", 7, 4, "")
    assert older.hint == (
        'save a newer one; rewind the run to the checkpoint: wandb.init(resume_from="r1?_step=4")'
        " (resumeguard.init(..., rewind=True) does it); or resume from a newer checkpoint, or "
        "start a new run (fork) to keep the metrics; add run.step to warn to accept the gap"
    )
    assert judge("r1", [older], preset("strict")).verdict.value == "warn"
    assert step_finding(ckpt(7), 7, run_id="r1") is None
    assert step_finding(ckpt(8), 7, run_id="r1") is None
    assert step_finding(ckpt(4), None, run_id="r1") is None, "nothing logged yet"


def test_another_counters_step_is_not_compared() -> None:
    own = ckpt(4, counter="trainer/global_step")
    assert not counts_wandb_steps(own) and counts_wandb_steps(ckpt(4))
    assert not counts_wandb_steps(ckpt(None))
    assert step_finding(own, 7, run_id="r1") is None
    assert step_finding(own, 7, run_id="r1", unknown="damaged log") is None


def test_an_unreadable_last_step_is_unverifiable_never_nothing_logged() -> None:
    found = step_finding(ckpt(4), None, run_id="r1", unknown="a bad CRC before the tail")
    assert found == unknown_step(4, "a bad CRC before the tail")
    assert (found.path, found.recorded, found.current) == ("run.step", None, 4)
    assert found.unknown == "a bad CRC before the tail"
    assert found.message == (
        "the run's last logged step cannot be read (a bad CRC before the tail), so whether a "
        "resume at step 4 loses logged steps is unknown"
    )
    assert found.hint == (
        "restore the run's .wandb file from a backup, or rewind the run explicitly "
        "(resumeguard.init(..., rewind=True)), or ignore run.step with --policy"
    )
    assert judge("r1", [found], preset("strict")).verdict.value == "unverified"
    # Even a known last step gives way to the reason it may be wrong.
    assert step_finding(ckpt(9), 7, run_id="r1", unknown="damaged") == unknown_step(9, "damaged")


def test_the_newest_checkpoint_by_step_then_save_time_is_the_one_compared() -> None:
    record = RunRecord(
        fingerprint=NOTHING,
        checkpoints={
            "early.pt": ckpt(2),
            "late.pt": ckpt(5, saved_at="2026-01-01T00:00:00+00:00"),
            "late-again.pt": ckpt(5, saved_at="2026-01-02T00:00:00+00:00"),
            "unstepped.pt": ckpt(None),
        },
    )
    newest = newest_checkpoint(record)
    assert newest is not None and newest[0] == "late-again.pt"
    [found] = step_findings(record, 9, run_id="r1")
    assert (found.recorded, found.current) == (9, 5)
    # The hint rewinds this run, with nothing before it: no newer checkpoint was named.
    assert found.hint.startswith(
        'rewind the run to the checkpoint: wandb.init(resume_from="r1?_step=5")'
    )
    assert step_findings(record, 5, run_id="r1") == []
    unstepped = RunRecord(fingerprint=NOTHING, checkpoints={"u.pt": ckpt(None)})
    assert newest_checkpoint(unstepped) is None
    assert step_findings(unstepped, 9, run_id="r1") == []
    [unknown] = step_findings(record, None, run_id="r1", unknown="damaged")
    assert unknown.unknown == "damaged" and unknown.current == 5
