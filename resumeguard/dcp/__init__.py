"""``resumeguard.dcp``: torch.distributed.checkpoint's ``save``, ``async_save`` and ``load``, each
verified and recorded (the code lives in :mod:`resumeguard.api.dcp`).

May import: :mod:`resumeguard.api`; nothing imports it but the user.
"""

from __future__ import annotations

from resumeguard.api.dcp import async_save, load, save

__all__ = ["async_save", "load", "save"]
