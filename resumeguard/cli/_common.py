"""Options and output helpers shared by the subcommands."""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_type_hints

import typer

from resumeguard.options import Options
from resumeguard.verdict.report import Report, render

F = TypeVar("F", bound=Callable[..., Any])

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


_WHERE: dict[str, tuple[Any, Any]] = {
    "project": (ProjectOpt, None),
    "entity": (EntityOpt, None),
    "offline": (OfflineOpt, False),
    "wandb_dir": (WandbDirOpt, None),
}
_CODE: dict[str, tuple[Any, Any]] = {
    "repo": (RepoOpt, Path(".")),
    "requirements": (RequirementsOpt, None),
}
_POLICY: dict[str, tuple[Any, Any]] = {"policy": (PolicyOpt, None)}


def takes_options(
    *, where: bool = True, code: bool = False, policy: bool = False
) -> Callable[[F], F]:
    """Give a command the shared options as one :class:`~resumeguard.options.Options` value, its
    ``options`` parameter: ``where`` the run is (--project, --entity, --offline, --wandb-dir),
    the ``code`` to fingerprint (--repo, --requirements) and the ``policy`` (--policy). They
    are listed where ``options`` stands in the command's signature."""
    added = {**(_WHERE if where else {}), **(_CODE if code else {}), **(_POLICY if policy else {})}

    def decorate(command: F) -> F:
        signature = inspect.signature(command)
        hints = get_type_hints(command, include_extras=True)
        parameters: list[inspect.Parameter] = []
        for parameter in signature.parameters.values():
            if parameter.name != "options":
                parameters.append(parameter.replace(annotation=hints[parameter.name]))
                continue
            parameters.extend(
                inspect.Parameter(name, parameter.kind, default=d, annotation=a)
                for name, (a, d) in added.items()
            )

        @functools.wraps(command)
        def run(**kwargs: Any) -> Any:
            given = {name: kwargs.pop(name) for name in added}
            if "offline" in given:
                given["offline"] = True if given["offline"] else None  # no flag: as wandb would
            if "requirements" in given:
                given["requirements"] = tuple(given["requirements"] or ())
            return command(options=Options(**given), **kwargs)

        run.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=parameters,
            return_annotation=hints.get("return", inspect.Signature.empty),
        )
        run.__annotations__ = {p.name: p.annotation for p in parameters}
        return run  # type: ignore[return-value]

    return decorate


def emit_report(report: Report, as_json: bool) -> int:
    """Print a report and return its exit code."""
    if as_json:
        sys.stdout.write(report.dumps() + "\n")
    else:
        render(report, listed_by="--json (this command with --json)")
    return report.verdict.exit_code
