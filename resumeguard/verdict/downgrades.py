"""Every rule that calls a finding harmless, with its reason: one registry the judge reads.

A finding that is downgraded names its entry
(:attr:`~resumeguard.verdict.findings.Finding.downgrade`);
with no user rule naming the finding, the entry's severity judges it instead of the preset's.
A user rule beats every entry except ``not-recorded`` (nothing recorded differs, so no rule can
make it a change). The table in docs/not-a-divergence.md lists these entries.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from resumeguard.verdict.findings import Severity


@dataclasses.dataclass(frozen=True)
class Downgrade:
    """One kind of change that is judged below the preset's severity."""

    name: str
    """The key findings name it by."""
    severity: Severity
    """Its severity when no user rule names the finding."""
    reason: str
    """Why the change cannot change the computation (or is only worth a warning)."""
    binding: bool = False
    """True when no rule may judge it above :attr:`severity`."""


CONTEXT = "context"
COMMENT_ONLY = "comment-only"
GIT_IGNORE = "git-ignore-rules"
RUN_OUTPUT = "run-output"
LEFT_OUT = "left-out-file"
RUN_CONTROL = "run-control"
SCHEDULE_LENGTH = "schedule-length"
NOT_RECORDED = "not-recorded"

INFO, WARN = Severity.INFO, Severity.WARN

DOWNGRADES: Mapping[str, Downgrade] = {
    d.name: d
    for d in (
        Downgrade(CONTEXT, INFO, "it only explains other findings, which are judged on their own"),
        Downgrade(
            COMMENT_ONLY,
            INFO,
            "comments/whitespace only: the same Python tokens, so Python runs the same code "
            "(the interpreter line and the encoding declaration count as code)",
        ),
        Downgrade(GIT_IGNORE, INFO, "git ignore rules: the program does not read them"),
        Downgrade(
            RUN_OUTPUT,
            INFO,
            "a file the run wrote: it appeared after the run was recorded, inside a folder the "
            "run writes",
        ),
        Downgrade(
            LEFT_OUT,
            INFO,
            "a log the run appends to: its recorded bytes are still its first bytes",
        ),
        Downgrade(
            RUN_CONTROL,
            INFO,
            "a run-control config key: it steers how long the run lasts, where it resumes from, "
            "how often it evaluates, logs or saves, or where its outputs go, not what it computes",
        ),
        Downgrade(
            SCHEDULE_LENGTH,
            WARN,
            "the run's length, from which the framework derives the learning-rate schedule: "
            "extending the run stretches the schedule",
        ),
        Downgrade(
            NOT_RECORDED,
            INFO,
            "not recorded when the run started (an older resumeguard did not collect it): "
            "nothing recorded differs",
            binding=True,
        ),
    )
}
"""Every downgrade, by name."""


def downgrade(name: str) -> Downgrade:
    """The registry entry ``name``; KeyError for a name no entry has (a bug)."""
    return DOWNGRADES[name]
