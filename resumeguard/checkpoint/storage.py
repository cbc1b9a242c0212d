"""What resumeguard keeps of each checkpoint beyond its digest: one option, ``storage``.

``save_checkpoint(..., storage=...)``, the framework callbacks' ``storage=``, or the
``RESUMEGUARD_STORAGE`` environment variable: ``auto`` (default), ``digest``, ``latest`` or
``all``, optionally followed by ``+upload``.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Literal

from resumeguard.errors import BadInput

Copies = Literal["auto", "digest", "latest", "all"]
ENV = "RESUMEGUARD_STORAGE"
_COPIES: tuple[Copies, ...] = ("auto", "digest", "latest", "all")


@dataclasses.dataclass(frozen=True)
class Storage:
    """What is kept of each checkpoint, and whether it is uploaded."""

    copies: Copies = "auto"
    """``digest``: digest, size and fingerprints only, the checkpoint file itself is what gets
    verified; ``latest``: also a copy of the latest save of each checkpoint name; ``all``: a
    copy of every save; ``auto``: ``latest`` where the filesystem makes a reflink (a copy that
    costs neither time nor space until the original changes), else ``digest``. Copies of
    checkpoints whose file was rotated away are removed."""
    upload: bool = False
    """True: copies go into the run's files (uploaded by W&B online, by ``wandb sync``
    offline) and come back with ``wandb.restore``; False: they stay on this machine, beside
    the run's files."""

    @classmethod
    def parse(cls, text: str) -> Storage:
        """``auto``, ``digest``, ``latest`` or ``all``, optionally with ``+upload``."""
        head, plus, tail = text.strip().lower().partition("+")
        if head not in _COPIES or (plus and tail != "upload"):
            raise BadInput(
                f"bad storage {text!r}: give auto, digest, latest or all, optionally followed "
                "by +upload (e.g. latest+upload)"
            )
        return cls(copies=head, upload=bool(plus))  # type: ignore[arg-type]

    def __str__(self) -> str:
        return self.copies + ("+upload" if self.upload else "")


def resolve(storage: Storage | str | None) -> Storage:
    """``storage`` as given, else ``RESUMEGUARD_STORAGE``, else the default (auto, no upload)."""
    if isinstance(storage, Storage):
        return storage
    text = storage if storage is not None else os.environ.get(ENV, "")
    return Storage.parse(text) if text.strip() else Storage()
