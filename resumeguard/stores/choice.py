"""Which store a process reads a run from: offline run directories or the W&B API.

Chosen without a network call: offline when asked, when ``WANDB_MODE`` says so, or when no API
key is configured."""

from __future__ import annotations

import os
from typing import Any

from resumeguard.stores.interface import (
    OFFLINE_MODES,
    RunRef,
    RunStore,
    check_timeout,
    credentials_configured,
    default_timeout,
    wandb_settings,
)
from resumeguard.stores.offline import OfflineStore
from resumeguard.stores.online import OnlineStore


def open_store(
    *, offline: bool | None = None, wandb_dir: str | None = None, timeout: float | None = None
) -> RunStore:
    """The offline store when asked, when ``WANDB_MODE`` says so, or when no API key is
    configured; the online store otherwise. Makes no network call."""
    if timeout is not None:
        timeout = check_timeout(timeout, "--timeout")
    if offline is None:
        offline = not _online_configured()
    if offline:
        return OfflineStore(wandb_dir)
    return OnlineStore(timeout=timeout if timeout is not None else default_timeout())


def _online_configured() -> bool:
    """True when W&B would talk to a server: not an offline mode, and credentials exist."""
    env_mode = os.environ.get("WANDB_MODE", "").strip().lower()
    if env_mode in OFFLINE_MODES:
        return False  # decided without importing wandb (0.3 s)
    settings = wandb_settings()
    if settings is None:
        return False
    # The environment beats settings files (`wandb offline` writes mode=offline there), as in
    # wandb; the env is read here because wandb caches its settings once per process.
    if not env_mode and str(getattr(settings, "mode", "")) in OFFLINE_MODES:
        return False
    return credentials_configured(settings)


def store_for_run(run: Any) -> tuple[RunStore, RunRef]:
    """The store a live ``wandb.Run`` is read back from (its offline root included), and its ref."""
    offline = bool(getattr(run, "offline", False))
    settings = getattr(run, "settings", None)
    root = getattr(settings, "root_dir", None) if offline else None
    store = open_store(offline=True if offline else None, wandb_dir=str(root) if root else None)
    ref = RunRef(str(run.id), getattr(run, "project", None), getattr(run, "entity", None))
    return store, ref
