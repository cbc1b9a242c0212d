"""The ``resumeguard`` command: subcommands, and the one handler mapping errors to exit codes."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from resumeguard.errors import ISSUES_URL, ResumeGuardError
from resumeguard.options import disabled
from resumeguard.redact import redact_text

if TYPE_CHECKING:
    import typer


def _app() -> typer.Typer:
    import typer

    from resumeguard.cli.diff import diff
    from resumeguard.cli.fingerprint import fingerprint

    app = typer.Typer(
        name="resumeguard",
        help="Make resuming a W&B run safe: block a resume that is no longer the same experiment.",
        add_completion=False,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    for command in (fingerprint, diff, *_extra_commands()):
        app.command(help=_paragraphs(command.__doc__ or ""))(command)
    _launcher(app)
    return app


def _paragraphs(doc: str) -> str:
    """A docstring as help text: each paragraph on one line, so the terminal's width wraps it
    (typer keeps the docstring's own line breaks after the first paragraph)."""
    paragraphs: list[list[str]] = [[]]
    for line in doc.splitlines():
        if line.strip():
            paragraphs[-1].extend(line.split())
        elif paragraphs[-1]:
            paragraphs.append([])
    return "\n\n".join(" ".join(words) for words in paragraphs if words)


def _extra_commands() -> list[Any]:
    try:
        from resumeguard.cli.runs import COMMANDS
    except ImportError:
        return []
    return list(COMMANDS)


def _launcher(app: typer.Typer) -> None:
    """``resumeguard run``, listed with the others; :func:`main` runs it without building this
    app (it starts before a training job, so it imports no CLI framework)."""
    from resumeguard.launcher.command import HELP, USAGE

    settings = {"ignore_unknown_options": True, "allow_extra_args": True}
    app.command(name="run", help=f"{HELP} Usage: {USAGE}", context_settings=settings)(_nothing)


def _nothing() -> None:
    """Never runs: ``main`` takes ``run`` first."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the documented exit code (0 ok, 1 blocked, 2 bad input, 3
    unverifiable, 4 internal error)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] in (["check"], ["record"]) and disabled():
        return 0  # the incident switch: a job script's check goes ahead, nothing is recorded
    if args[:1] == ["run"]:
        return _run(args[1:])
    import typer
    from typer._click.exceptions import ClickException, NoArgsIsHelpError

    try:
        result = _app()(args=args, prog_name="resumeguard", standalone_mode=False)
    except ResumeGuardError as e:
        _err(f"resumeguard: {e}")
        return e.exit_code
    except NoArgsIsHelpError as e:
        _err(e.format_message())
        return 2
    except ClickException as e:
        _err(f"resumeguard: {e.format_message()} (see resumeguard --help)")
        return 2
    except typer.Exit as e:
        return int(e.exit_code)
    except typer.Abort:
        _err("resumeguard: aborted")
        return 2
    except KeyboardInterrupt:
        _err("resumeguard: interrupted")
        return 130
    except Exception:
        _err(traceback.format_exc())
        _err(
            f"resumeguard: internal error (a bug): please report it with the trace above at "
            f"{ISSUES_URL}"
        )
        return 4
    return int(result or 0)


def _run(args: list[str]) -> int:
    """``resumeguard run``, with the same error handling as every command."""
    from resumeguard.launcher.command import main as run

    try:
        return run(args)
    except ResumeGuardError as e:
        _err(f"resumeguard: {e}")
        return e.exit_code
    except KeyboardInterrupt:
        _err("resumeguard: interrupted")
        return 130


def _err(line: str) -> None:
    sys.stderr.write(redact_text(line.rstrip()) + "\n")
