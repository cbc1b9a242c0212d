"""``resumeguard diff``: compare two fingerprint files under a policy."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from resumeguard.cli._common import JsonOpt, PolicyOpt, RepoOpt, emit_report


def diff(
    recorded: Annotated[Path, typer.Argument(help="The recorded fingerprint (JSON).")],
    current: Annotated[Path, typer.Argument(help="The current fingerprint (JSON).")],
    policy: PolicyOpt = None,
    repo: RepoOpt = Path("."),
    as_json: JsonOpt = False,
) -> int:
    """Compare RECORDED with CURRENT and report what diverged (exit 1 when blocked)."""
    from resumeguard.records import fingerprint as fpmod
    from resumeguard.verdict.check import compare_fingerprints

    report = compare_fingerprints(
        fpmod.load(recorded), fpmod.load(current), run=str(recorded), policy=policy, repo=repo
    )
    return emit_report(report, as_json)
