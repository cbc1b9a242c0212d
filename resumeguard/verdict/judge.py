"""The one judge: findings and a policy in, the report and its verdict out.

Every front door (``init``, ``@guard``, ``resumeguard check``, the callbacks), the restore path
and the checks made later in a run (a silent restart, a checkpoint that does not fit, the step
of a restored checkpoint) call :func:`judge`. What the policy cannot overrule is decided here:
the worst severity is the verdict, and a finding whose current side could not be read makes it
unverified unless something blocks. Which changes are harmless is the registry's
(:mod:`resumeguard.verdict.downgrades`), read by :meth:`resumeguard.verdict.policy.Policy.judge`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from resumeguard.verdict.findings import Finding, Judged, Severity, Verdict
from resumeguard.verdict.report import Report

if TYPE_CHECKING:
    from resumeguard.verdict.policy import Policy


def judge(run: str | None, findings: Iterable[Finding], policy: Policy) -> Report:
    """Judge ``findings`` under ``policy``: the report, most severe first, and its verdict."""
    judged = policy.judge_all(findings)
    return report_of(run, judged, policy.origin)


def report_of(run: str | None, judged: Sequence[Judged], policy: str = "") -> Report:
    """The report of findings already judged (``policy``: which policy judged them)."""
    ordered = tuple(sorted(judged, key=lambda j: (-j.severity.rank, j.finding.path)))
    verdict = verdict_of(ordered)
    # What could not be read is unverifiable, never "nothing happened" (a block still blocks).
    unknown = [j.finding.unknown for j in ordered if j.finding.unknown]
    if unknown and verdict is not Verdict.BLOCK:
        return Report(run, Verdict.UNVERIFIED, ordered, "; ".join(unknown), policy=policy)
    return Report(run=run, verdict=verdict, findings=ordered, policy=policy)


def verdict_of(judged: Iterable[Judged]) -> Verdict:
    """The verdict of judged findings: their worst severity (ok when none warns or blocks)."""
    worst = max((j.severity.rank for j in judged), default=0)
    if worst >= Severity.BLOCK.rank:
        return Verdict.BLOCK
    return Verdict.WARN if worst >= Severity.WARN.rank else Verdict.OK
