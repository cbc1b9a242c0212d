"""resumeguard: make resuming a Weights & Biases run safe.

Fingerprint code, dependencies and optimizer state when a run starts, compare before a resume,
and block or warn by policy. Heavy modules (torch, wandb) load only when used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from resumeguard._version import __version__
from resumeguard.errors import (
    BadInput,
    CheckpointError,
    ResumeBlocked,
    ResumeGuardError,
    RunNotFound,
    StoreError,
    Unverifiable,
)

if TYPE_CHECKING:
    from resumeguard.checkpoint import restore_checkpoint, save_checkpoint
    from resumeguard.entry import guard, init
    from resumeguard.findings import Finding, Severity, Verdict
    from resumeguard.fingerprint import Fingerprint
    from resumeguard.report import Report

_LAZY = {
    "init": "resumeguard.entry",
    "guard": "resumeguard.entry",
    "save_checkpoint": "resumeguard.checkpoint",
    "restore_checkpoint": "resumeguard.checkpoint",
    "Fingerprint": "resumeguard.fingerprint",
    "Finding": "resumeguard.findings",
    "Severity": "resumeguard.findings",
    "Verdict": "resumeguard.findings",
    "Report": "resumeguard.report",
}

__all__ = [
    "BadInput",
    "CheckpointError",
    "Finding",
    "Fingerprint",
    "Report",
    "ResumeBlocked",
    "ResumeGuardError",
    "RunNotFound",
    "Severity",
    "StoreError",
    "Unverifiable",
    "Verdict",
    "__version__",
    "guard",
    "init",
    "restore_checkpoint",
    "save_checkpoint",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'resumeguard' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
