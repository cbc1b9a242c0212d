"""Checkpoint archives checked before torch opens them: a zip whose entries inflate far beyond
the file's own size (a "zip bomb") is refused without inflating anything.

``torch.save`` writes its zip entries stored, not compressed, so a real checkpoint inflates to
about its own size; only a crafted file declares much more.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from resumeguard.errors import CheckpointError

MAX_RATIO = 4
"""How many times its own size a checkpoint's entries may add up to."""
SLACK = 1 << 20
"""Bytes allowed on top of the ratio (tiny files with a few fixed-size entries)."""
MAX_ENTRIES = 1_000_000
"""The most entries a checkpoint archive may list (torch writes one per tensor storage)."""


def check_archive(path: Path, *, name: str) -> None:
    """CheckpointError when ``path`` is a zip whose entries would inflate to more than
    MAX_RATIO times its size (or that lists more than MAX_ENTRIES); other files pass, for torch
    to judge. Reads only the zip's directory."""
    size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return  # not a zip: torch's legacy format, or damage torch reports itself
    declared = sum(entry.file_size for entry in entries)
    if len(entries) > MAX_ENTRIES or declared > MAX_RATIO * size + SLACK:
        raise CheckpointError(
            f"refusing to load checkpoint {name}: its {len(entries)} archive entries inflate to "
            f"{declared} bytes from a {size}-byte file (torch writes them uncompressed); "
            "it was crafted or damaged, nothing was loaded"
        )
