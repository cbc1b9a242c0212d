"""``resumeguard fingerprint``: this environment's fingerprint; nothing is stored."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from resumeguard.cli._common import JsonOpt, takes_options
from resumeguard.options import DEFAULT, Options

if TYPE_CHECKING:
    from resumeguard.records.fingerprint import Fingerprint


@takes_options(where=False, code=True)
def fingerprint(options: Options = DEFAULT, as_json: JsonOpt = False) -> int:
    """Print the fingerprint of the current environment (code, dependencies, devices)."""
    from resumeguard.records import fingerprint as fpmod

    fp = fpmod.take(repo=options.repo, requirements=options.requirements)
    if as_json:
        sys.stdout.write(fpmod.dumps(fp) + "\n")
    else:
        _render(fp)
    return 0


def _render(fp: Fingerprint) -> None:
    from rich.console import Console
    from rich.table import Table

    from resumeguard.collect.code import CodeRecord
    from resumeguard.collect.deps import DepsRecord
    from resumeguard.collect.record import Unavailable

    table = Table(title="resumeguard fingerprint", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    code = fp.code
    if isinstance(code, CodeRecord):
        table.add_row("repo", code.root)
        table.add_row("commit", code.commit or "(no commits yet)")
        table.add_row("branch", "(detached)" if code.detached else code.branch or "(none)")
        table.add_row("remote", code.remote or "(none)")
        dirty = len(code.changed) + len(code.untracked)
        table.add_row("working tree", f"{dirty} changed or untracked file(s)" if dirty else "clean")
    elif isinstance(code, Unavailable):
        table.add_row("code", f"unavailable: {code.reason}")
    deps = fp.deps
    if isinstance(deps, DepsRecord):
        table.add_row("python", f"{deps.implementation} {deps.python} on {deps.platform}")
        table.add_row("torch", f"{deps.torch or '(not installed)'} (CUDA {deps.cuda or 'none'})")
        table.add_row(
            "requirements",
            f"{len(deps.requirements)} from "
            f"{', '.join(deps.requirement_files) or 'no requirements file'}",
        )
        table.add_row("installed", f"{len(deps.installed)} distributions")
    table.add_row("env", str(fp.env.to_json()))
    table.add_row("digest", fp.digest())
    Console(highlight=False).print(table)
