"""Checkpoint files: written crash-safely and digested while written, kept as the storage option
says, read back verified, found where a job can reach them.

One path each: :mod:`.files` writes and reads the bytes (the only digest of a checkpoint file),
:mod:`.copies` keeps the run's copies (the only copy strategy), :mod:`.beside` the record next to
each file, :mod:`.reach` which recorded files this host can reach, :mod:`.findings` which files
beside them are not code. The Python API that saves and restores is :mod:`resumeguard.api`.

May import: :mod:`resumeguard.verdict`, :mod:`resumeguard.records`, :mod:`resumeguard.stores`,
:mod:`resumeguard.collect`, :mod:`resumeguard.io` and the base modules.
"""

from __future__ import annotations

from resumeguard.checkpoint.beside import CheckpointOrigin, checkpoint_origin
from resumeguard.checkpoint.files import load_verified, load_weights, read_verified, verify_file
from resumeguard.checkpoint.state import find_model_state, find_optimizer_state
from resumeguard.checkpoint.storage import Storage

__all__ = [
    "CheckpointOrigin",
    "Storage",
    "checkpoint_origin",
    "find_model_state",
    "find_optimizer_state",
    "load_verified",
    "load_weights",
    "read_verified",
    "verify_file",
]
