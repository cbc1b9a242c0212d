"""Code findings that cannot change the computation, marked harmless (info unless a rule says).

- a Python file whose tokens are unchanged (comments, blank lines, whitespace): the recorded and
  the current content are read from git's object database and compared token by token;
- git's ignore rules (``.gitignore``): the program never reads them, and adding one is what a
  hint may ask for;
- untracked files that are not source or configuration (a log, a framework's output folder),
  for records taken before such files were left out of the fingerprint.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from resumeguard.collect.code import CodeRecord
from resumeguard.collect.filekinds import run_output_reason
from resumeguard.findings import Finding
from resumeguard.sourcechange import PY_SUFFIXES, Change, python_change
from resumeguard.verdict.downgrades import COMMENT_ONLY, GIT_IGNORE, RUN_OUTPUT

if TYPE_CHECKING:
    from resumeguard.compare import History

_COMMITTED = "committed@"


def mark_harmless_code(
    findings: Iterable[Finding], recorded: CodeRecord, current: CodeRecord, history: History | None
) -> list[Finding]:
    """``code.files.*`` / ``code.untracked.*`` findings, each marked harmless where it is."""
    return [_mark(f, recorded, current, history) for f in findings]


def _mark(
    f: Finding, recorded: CodeRecord, current: CodeRecord, history: History | None
) -> Finding:
    _, section, path = f.path.split(".", 2)
    name = PurePosixPath(path).name
    if name == ".gitignore":
        return dataclasses.replace(
            f,
            downgrade=GIT_IGNORE,
            hint="nothing to do: .gitignore only decides which files git lists",
        )
    if section == "untracked" and not path.endswith(PY_SUFFIXES):
        reason = run_output_reason(path, Path(current.root))
        if reason is not None:
            return dataclasses.replace(
                f, downgrade=RUN_OUTPUT, detail=reason, hint="nothing to do: it is not code"
            )
    if history is None or f.recorded is None or f.current is None:
        return f
    if not path.endswith(PY_SUFFIXES):
        return f
    old = _content(history, str(f.recorded), path)
    new = _content(history, str(f.current), path)
    if old is None or new is None:
        return f  # a content git no longer holds: the blob digests decide (fail closed)
    change = python_change(old, new)
    if change is Change.LAYOUT:
        return dataclasses.replace(
            f,
            message=f"{path}: comments/whitespace only (the same Python tokens)",
            hint="nothing to do: Python runs the same code",
            downgrade=COMMENT_ONLY,
            detail=Change.LAYOUT.value,
        )
    if change is Change.DOCSTRINGS:
        return dataclasses.replace(
            f,
            message=(
                f"{path}: docstrings only; a docstring is a value the program can read "
                "(__doc__, argparse or docopt help), so it counts as code"
            ),
            hint=(
                f"restore the docstrings of {path}, or accept this once with a rule "
                f'(info = ["{f.path}"]) if nothing reads them'
            ),
        )
    return f


def _content(history: History, blob: str, path: str) -> bytes | None:
    """The bytes behind an effective blob value (a sha, or the committed version's marker)."""
    if blob.startswith(_COMMITTED):
        commit = blob.removeprefix(_COMMITTED)
        try:
            sha = history.blob(commit, path)
        except ValueError:
            return None
        if sha is None:
            return None
        blob = sha
    return history.content(blob)
