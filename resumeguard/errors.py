"""The error hierarchy; each error carries the exit code the CLI maps it to.

One base, :class:`ResumeGuardError`. Errors raised for a user's mistake or an unreachable store
carry a single line of advice in ``str(error)``; the CLI prints that line and exits with
``exit_code``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from resumeguard.redact import redact_text

if TYPE_CHECKING:
    from resumeguard.verdict.report import Report

ISSUES_URL = "https://github.com/resumeguard/resumeguard/issues"


class ResumeGuardError(Exception):
    """Base of every error resumeguard raises on purpose; its message is redacted (credentials
    in URLs masked), whatever it quotes."""

    exit_code: int = 4

    def __init__(self, *args: object) -> None:
        super().__init__(*(redact_text(a) if isinstance(a, str) else a for a in args))


class BadInput(ResumeGuardError):
    """A usage error or unreadable input: a malformed fingerprint, a bad policy, a missing file."""

    exit_code = 2


class Unverifiable(ResumeGuardError):
    """The resume cannot be checked: run not found, nothing recorded, or the store unreachable."""

    exit_code = 3


class ResumeBlocked(ResumeGuardError):
    """The resume diverged at block severity; ``report`` says what and what to do."""

    exit_code = 1

    def __init__(self, report: Report) -> None:
        self.report = report
        headline = (
            f"resume of run {report.run or '?'} blocked: {len(report.blocking)} finding(s) at "
            "block severity; this is no longer the same experiment"
        )
        super().__init__(report.text(headline=headline))


class CheckpointError(ResumeGuardError):
    """A checkpoint is missing, corrupt, not the recorded one, or does not fit the model;
    ``report`` lists what does not fit, when that is the reason."""

    exit_code = 1

    def __init__(self, message: str, report: Report | None = None) -> None:
        self.report = report
        if report is not None and report.findings:
            message = report.text(headline=message)
        super().__init__(message)


class StoreError(Unverifiable):
    """The run store could not be reached or answered with an error (timeout, 5xx or 429 past
    the retries, a refused key, a malformed answer): nothing can be said about the run."""


class RunNotFound(Unverifiable):
    """The store answered that the run does not exist: the only answer that means a fresh run."""


class DiskFull(CheckpointError):
    """The filesystem ran out of space (or quota) while resumeguard wrote a file; nothing that
    existed before was replaced or removed."""

    def __init__(self, device: str, path: object, nbytes: int) -> None:
        self.device, self.path, self.nbytes = device, str(path), nbytes
        super().__init__(
            f"no space left on {device} writing {path} ({nbytes} bytes); nothing was replaced: "
            "the previous checkpoint and its copies are intact (free some space, or save elsewhere)"
        )
