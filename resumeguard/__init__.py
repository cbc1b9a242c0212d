"""resumeguard: make resuming a Weights & Biases run safe.

Fingerprint code, dependencies and optimizer state when a run starts, compare before a resume,
and block or warn by policy. Heavy modules (torch, wandb) load only when used.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from resumeguard._version import __version__
from resumeguard.errors import (
    BadInput,
    CheckpointError,
    DiskFull,
    ResumeBlocked,
    ResumeGuardError,
    RunNotFound,
    StoreError,
    Unverifiable,
)
from resumeguard.redact import install_log_filter

if TYPE_CHECKING:
    from resumeguard.api.entry import guard, init
    from resumeguard.api.restore import check_fit, load_checkpoint, restore_checkpoint
    from resumeguard.api.save import save_checkpoint
    from resumeguard.checkpoint import CheckpointOrigin, Storage, checkpoint_origin
    from resumeguard.decide.distributed import RankFailed
    from resumeguard.records.fingerprint import Fingerprint
    from resumeguard.verdict.findings import Finding, Severity, Verdict
    from resumeguard.verdict.report import Report

install_log_filter(logging.getLogger("resumeguard"))  # no log line carries a credential

_LAZY = {
    "init": "resumeguard.api.entry",
    "guard": "resumeguard.api.entry",
    "save_checkpoint": "resumeguard.api.save",
    "restore_checkpoint": "resumeguard.api.restore",
    "load_checkpoint": "resumeguard.api.restore",
    "check_fit": "resumeguard.api.restore",
    "checkpoint_origin": "resumeguard.checkpoint",
    "CheckpointOrigin": "resumeguard.checkpoint",
    "Storage": "resumeguard.checkpoint",
    "Fingerprint": "resumeguard.records.fingerprint",
    "Finding": "resumeguard.verdict.findings",
    "Severity": "resumeguard.verdict.findings",
    "Verdict": "resumeguard.verdict.findings",
    "Report": "resumeguard.verdict.report",
    "RankFailed": "resumeguard.decide.distributed",
}

__all__ = [
    "BadInput",
    "CheckpointError",
    "CheckpointOrigin",
    "DiskFull",
    "Finding",
    "Fingerprint",
    "RankFailed",
    "Report",
    "ResumeBlocked",
    "ResumeGuardError",
    "RunNotFound",
    "Severity",
    "Storage",
    "StoreError",
    "Unverifiable",
    "Verdict",
    "__version__",
    "check_fit",
    "checkpoint_origin",
    "guard",
    "init",
    "load_checkpoint",
    "restore_checkpoint",
    "save_checkpoint",
]


def __getattr__(name: str) -> Any:
    if name == "dcp":  # resumeguard.dcp.save / load: torch.distributed.checkpoint, verified
        return importlib.import_module("resumeguard.dcp")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'resumeguard' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
