"""Run stores: where a run's record, config and checkpoints are read back from and adopted into.

``open_store()`` picks :class:`OfflineStore` (W&B offline run directories) or :class:`OnlineStore`
(the W&B public API). Importing this package does not import wandb.

May import: :mod:`resumeguard.collect` (the record base), :mod:`resumeguard.io` and the base
modules.
"""

from __future__ import annotations

from resumeguard.stores.choice import open_store, store_for_run
from resumeguard.stores.interface import RunRef, RunState, RunStore, StoredRun
from resumeguard.stores.offline import OfflineStore, write_config_sidecar
from resumeguard.stores.online import OnlineStore

__all__ = [
    "OfflineStore",
    "OnlineStore",
    "RunRef",
    "RunState",
    "RunStore",
    "StoredRun",
    "open_store",
    "store_for_run",
    "write_config_sidecar",
]
