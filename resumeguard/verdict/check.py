"""Wire the pipeline: fingerprints -> compare -> policy -> report. No logic of its own."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from resumeguard.records.fingerprint import Fingerprint
from resumeguard.verdict import runpolicy
from resumeguard.verdict.compare import compare
from resumeguard.verdict.findings import Finding
from resumeguard.verdict.judge import judge
from resumeguard.verdict.policy import Policy
from resumeguard.verdict.report import Report


def compare_fingerprints(
    recorded: Fingerprint,
    current: Fingerprint,
    *,
    run: str | None = None,
    policy: Policy | str | None = None,
    repo: str | Path | None = ".",
    extra: Sequence[Finding] = (),
) -> Report:
    """Compare two fingerprints under a policy (a Policy, preset name, TOML path or None);
    ``extra`` findings from outside the fingerprints (checkpoints, liveness) join the report."""
    from resumeguard.collect.code import CodeRecord, open_history

    root = current.code.root if isinstance(current.code, CodeRecord) else repo
    resolved = runpolicy.at_start(policy, root)
    history = open_history(root) if root is not None else None
    return judge(run, [*compare(recorded, current, history), *extra], resolved)
