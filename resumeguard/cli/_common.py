"""Options and output helpers shared by the subcommands."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from resumeguard.verdict.report import Report, render

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
RepoOpt = Annotated[
    Path, typer.Option("--repo", help="The git repository of the training code.", show_default=".")
]
RequirementsOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--requirements",
        "-r",
        help="Requirements file (repeatable); default: requirements*.txt at the repo root.",
    ),
]
PolicyOpt = Annotated[
    str | None,
    typer.Option(
        "--policy", help="Preset (strict, lenient) or a TOML policy file. Default: strict."
    ),
]
RunIdOpt = Annotated[
    str, typer.Option("--run-id", help="The run: ID or ENTITY/PROJECT/ID.", show_default=False)
]
ProjectOpt = Annotated[str | None, typer.Option("--project", help="W&B project.")]
EntityOpt = Annotated[str | None, typer.Option("--entity", help="W&B entity.")]
OfflineOpt = Annotated[
    bool, typer.Option("--offline", help="Read W&B offline run directories (no network).")
]
WandbDirOpt = Annotated[
    Path | None,
    typer.Option("--wandb-dir", help="Where offline runs live (default: $WANDB_DIR or .)."),
]


def emit_report(report: Report, as_json: bool) -> int:
    """Print a report and return its exit code."""
    if as_json:
        sys.stdout.write(report.dumps() + "\n")
    else:
        render(report, listed_by="--json (this command with --json)")
    return report.verdict.exit_code
