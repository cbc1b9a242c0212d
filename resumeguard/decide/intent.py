"""What a front door asks the decision (:class:`ResumeIntent`: which run, which resume mode) and
what it answers (:class:`ResumeCheck`: the report, the records compared, the policy that judged)."""

from __future__ import annotations

import dataclasses

from resumeguard.records.fingerprint import Fingerprint
from resumeguard.records.run import RunRecord
from resumeguard.verdict.policy import Policy
from resumeguard.verdict.report import Report

RESUME_MODES = ("must", "allow", "auto")
"""wandb.init's ``resume`` values that continue an existing run."""


@dataclasses.dataclass(frozen=True)
class ResumeIntent:
    """Whether this process resumes a run, and which."""

    run_id: str | None
    """The run id; None when this process starts a run with a new id."""
    mode: str | None
    """must, allow, auto, never, or None (wandb.init's ``resume``)."""
    source: str = "argument"
    """Where the id came from: argument, WANDB_RUN_ID, wandb-resume.json, checkpoint, live run."""
    project: str | None = None
    """The run's project, when the source names it (a checkpoint's record does)."""
    entity: str | None = None
    """The run's entity, when the source names it."""
    offline: bool | None = None
    """True for an offline run, when the source says so."""
    wandb_dir: str | None = None
    """An offline run's W&B directory, when the source names it."""

    @property
    def resumes(self) -> bool:
        """True when an existing run is to be continued (the id is known and the mode says so)."""
        return bool(self.run_id) and self.mode in RESUME_MODES


@dataclasses.dataclass(frozen=True)
class ResumeCheck:
    """The outcome of checking a resume against the run's record."""

    run_id: str
    """The run checked ("" for a new run without an id yet)."""
    report: Report
    """What diverged, judged with :attr:`policy`."""
    stored: RunRecord | None
    """The run's record before this resume; None for a run that does not exist yet."""
    current: Fingerprint
    """This process's fingerprint."""
    policy: Policy
    """The policy the report was judged with (the run's own checkpoint files excluded)."""
    last_step: int | None = None
    """The run's last logged step, as W&B holds it (None for a new run)."""
    store: str = ""
    """The store the run was read from: "offline" or "online" ("" for a run not looked up)."""
    step_unknown: str = ""
    """Why the run's last logged step cannot be known (a damaged transaction log), "" when
    :attr:`last_step` is the whole truth."""
    verified: frozenset[str] = frozenset()
    """Checkpoint names whose recorded bytes this check read and found intact."""
    config_keys: int | None = None
    """How many config keys this check compared (the ones given to it); None when it saw no
    config (a check from outside, or before the script parsed its arguments)."""

    @property
    def fresh(self) -> bool:
        """True for a run that does not exist yet: recorded, not compared."""
        return self.stored is None
