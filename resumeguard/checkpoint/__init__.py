"""Checkpoints: saved crash-safely and digested while written, kept as the storage option
says, verified while read, fit-checked before they load.

One package, one path each: :mod:`.files` writes and reads the bytes (the only digest of a
checkpoint file), :mod:`.copies` keeps the run's copies (the only copy strategy), :mod:`.save`
and :mod:`.restore` are the Python API, :mod:`.beside` the record next to each file,
:mod:`.findings` which files beside them are not code.
"""

from __future__ import annotations

from resumeguard.checkpoint.beside import CheckpointOrigin, checkpoint_origin
from resumeguard.checkpoint.files import load_verified, load_weights, read_verified, verify_file
from resumeguard.checkpoint.restore import (
    check_fit,
    load_checkpoint,
    load_state,
    lookup,
    restore_checkpoint,
)
from resumeguard.checkpoint.save import save_checkpoint
from resumeguard.checkpoint.state import find_model_state, find_optimizer_state
from resumeguard.checkpoint.storage import Storage

__all__ = [
    "CheckpointOrigin",
    "Storage",
    "check_fit",
    "checkpoint_origin",
    "find_model_state",
    "find_optimizer_state",
    "load_checkpoint",
    "load_state",
    "load_verified",
    "load_weights",
    "lookup",
    "read_verified",
    "restore_checkpoint",
    "save_checkpoint",
    "verify_file",
]
