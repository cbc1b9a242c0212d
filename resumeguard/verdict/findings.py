"""Findings (what diverged), severities and verdicts: the values the pipeline passes along."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from resumeguard.redact import redact_tree


class Severity(str, enum.Enum):
    """How much a finding matters; ordered ignore < info < warn < block."""

    IGNORE = "ignore"
    INFO = "info"
    WARN = "warn"
    BLOCK = "block"

    @property
    def rank(self) -> int:
        """Position in the order ignore < info < warn < block."""
        return _RANK[self]


_RANK = {Severity.IGNORE: 0, Severity.INFO: 1, Severity.WARN: 2, Severity.BLOCK: 3}


class Verdict(str, enum.Enum):
    """The outcome of a check."""

    OK = "ok"
    WARN = "warn"
    BLOCK = "block"
    UNVERIFIED = "unverified"

    @property
    def exit_code(self) -> int:
        """The CLI exit code for this verdict (0 ok or warn, 1 block, 3 unverified)."""
        match self:
            case Verdict.OK | Verdict.WARN:
                return 0
            case Verdict.BLOCK:
                return 1
            case Verdict.UNVERIFIED:
                return 3


@dataclasses.dataclass(frozen=True)
class Finding:
    """One divergence between the recorded and the current fingerprint."""

    path: str
    """Stable dotted path, e.g. "code.files.src/train.py"; policies match it with globs."""
    recorded: Any
    """The recorded value (JSON), None when absent then."""
    current: Any
    """The current value (JSON), None when absent now."""
    message: str
    """What differs, in a short sentence."""
    hint: str
    """What to do about it."""
    downgrade: str = ""
    """The entry of :mod:`resumeguard.verdict.downgrades` that judges this change below the
    preset ("" for none): with no user rule naming the finding, its severity and reason apply."""
    detail: str = ""
    """What the downgrade saw, in words (e.g. "comments/whitespace only"), for the report."""
    unknown: str = ""
    """Why the current side could not be read (e.g. a damaged transaction log): unless
    something blocks, the verdict is then unverified, never ok."""

    def __post_init__(self) -> None:
        # Every report, log line and error is made of findings: redacting them here keeps the
        # credentials an older record may hold out of all of them.
        for name in ("path", "recorded", "current", "message", "hint"):
            object.__setattr__(self, name, redact_tree(getattr(self, name)))

    @property
    def context(self) -> bool:
        """True for a finding that only explains others (info unless a user rule names it)."""
        return self.downgrade == "context"

    @property
    def unrecorded(self) -> bool:
        """True for a fact the record could not hold: info at most, whatever a rule says."""
        return self.downgrade == "not-recorded"


@dataclasses.dataclass(frozen=True)
class Judged:
    """A finding with the severity the policy gave it, and the rule that decided."""

    finding: Finding
    """The divergence."""
    severity: Severity
    """Its severity under the policy."""
    rule: str
    """Which rule decided, e.g. 'block "code.*" (preset strict)'."""

    def to_json(self) -> dict[str, Any]:
        """The finding object of the ``--json`` report."""
        f = self.finding
        return {
            "path": f.path,
            "severity": self.severity.value,
            "recorded": f.recorded,
            "current": f.current,
            "message": f.message,
            "hint": f.hint,
            "rule": self.rule,
        }
