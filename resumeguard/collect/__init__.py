"""Collectors: one module per fingerprint source, each returning a frozen record or Unavailable."""

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
