"""Collectors: one module per fingerprint source (code, deps, env, optimizer, the components of
a checkpoint's state), each returning a frozen :class:`~resumeguard.collect.record.Record` or an
:class:`~resumeguard.collect.record.Unavailable` saying why not; and how files are classified
(kind of file, kind of source change) when they are collected.

May import: :mod:`resumeguard.io` and the base modules (errors, redact, options).
"""

from __future__ import annotations

import sys
import warnings
from typing import Any


def torch_or_none() -> Any:
    """torch, imported once and quietly (it warns "Failed to initialize NumPy" on lean
    installs); None when it is not installed. Shared by the deps and env collectors."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return torch
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import torch
    except ImportError:
        return None
    return torch
