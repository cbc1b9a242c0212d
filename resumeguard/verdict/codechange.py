"""Code findings that cannot change the computation, marked harmless (info unless a rule says).

- a Python file whose tokens are unchanged (comments, blank lines, whitespace): the recorded and
  the current content are read from git's object database and compared token by token;
- git's ignore rules (``.gitignore``): the program never reads them, and adding one is what a
  hint may ask for;
- untracked files the run wrote (see :mod:`resumeguard.collect.filekinds`): one that appeared
  since the run was recorded inside a folder the run writes, a log that only grew by appending,
  and, for records of schema 1-2, one their names called run output.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath
from typing import Protocol

from resumeguard.collect.code import CodeRecord, read_head
from resumeguard.collect.filekinds import new_file_reason, run_output_reason
from resumeguard.collect.sourcechange import PY_SUFFIXES, Change, python_change
from resumeguard.verdict.downgrades import COMMENT_ONLY, GIT_IGNORE, LEFT_OUT, RUN_OUTPUT
from resumeguard.verdict.findings import Finding

_COMMITTED = "committed@"


class History(Protocol):
    """What file-level code comparison needs from the local repository."""

    def has_commit(self, sha: str) -> bool:
        """True when the commit is present locally."""
        ...

    def changed_between(self, a: str, b: str) -> set[str]:
        """Paths that differ between two commits."""
        ...

    def blob(self, commit: str, path: str) -> str | None:
        """Blob sha of a path at a commit, None when absent."""
        ...

    def content(self, sha: str) -> bytes | None:
        """The bytes of a blob, None when the object database lacks it."""
        ...


def mark_harmless_code(
    findings: Iterable[Finding],
    recorded: CodeRecord,
    current: CodeRecord,
    history: History | None,
    output_dirs: Sequence[str] = (),
) -> list[Finding]:
    """``code.files.*`` / ``code.untracked.*`` / ``code.skipped.*`` findings, each marked
    harmless where it is; ``output_dirs``: the run's output folders from its recorded config."""
    return [_mark(f, recorded, current, history, output_dirs) for f in findings]


def _mark(
    f: Finding,
    recorded: CodeRecord,
    current: CodeRecord,
    history: History | None,
    output_dirs: Sequence[str],
) -> Finding:
    _, section, path = f.path.split(".", 2)
    name = PurePosixPath(path).name
    if name == ".gitignore":
        return dataclasses.replace(
            f,
            downgrade=GIT_IGNORE,
            hint="nothing to do: .gitignore only decides which files git lists",
        )
    if section in ("untracked", "skipped"):
        left_out = _left_out(f, path, recorded, current, output_dirs)
        if left_out is not None or section == "skipped":
            return left_out or f
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


def _left_out(
    f: Finding, path: str, recorded: CodeRecord, current: CodeRecord, output_dirs: Sequence[str]
) -> Finding | None:
    """``f`` marked as a file left out of the comparison (reported at info, with the reason),
    or None when it counts as code: see :mod:`resumeguard.collect.filekinds`."""
    root = Path(current.root)
    if recorded.logs is None:  # schema 1-2: judged by the names, as when it was recorded
        reason = None if path.endswith(PY_SUFFIXES) else run_output_reason(path, root)
        return _as(f, RUN_OUTPUT, reason, "nothing to do: it is not code")
    known = {*recorded.untracked, *recorded.stamps, *recorded.skipped, *recorded.changed}
    if path not in known:
        reason = new_file_reason(path, root, output_dirs, known)
        return _as(f, RUN_OUTPUT, reason, "nothing to do: the run wrote it")
    head = recorded.logs.get(path)
    if head is not None and f.current is not None and read_head(root / path, head.size) == head:
        reason = f"{path} only grew (from {head.size} bytes) by appending"
        return _as(f, LEFT_OUT, reason, "nothing to do: its recorded bytes are unchanged")
    return None


def _as(f: Finding, kind: str, reason: str | None, hint: str) -> Finding | None:
    if reason is None:
        return None
    return dataclasses.replace(f, downgrade=kind, detail=reason, hint=hint)


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
