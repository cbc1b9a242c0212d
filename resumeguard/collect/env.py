"""Fingerprint the execution environment: devices and the distributed world. No secrets."""

from __future__ import annotations

import dataclasses
from typing import cast

from resumeguard.collect import torch_or_none
from resumeguard.distributed import rank_and_world
from resumeguard.record import Record


@dataclasses.dataclass(frozen=True)
class EnvRecord(Record):
    """Devices and world size: what changes the effective batch size or numerics."""

    kind = "env"

    device_type: str
    """"cuda", "mps" or "cpu"."""
    device_count: int
    """Accelerators visible to this process (0 on CPU)."""
    device_names: tuple[str, ...] = ()
    """Accelerator model names, e.g. ("NVIDIA H200",)."""
    world_size: int = 1
    """torch.distributed world size (or torchrun's WORLD_SIZE before the group exists), else 1."""
    rank: int = 0
    """This process's rank (or torchrun's RANK), else 0."""


def collect_env() -> EnvRecord:
    """Describe this process's devices and distributed world."""
    torch = torch_or_none()
    if torch is None:
        return EnvRecord(device_type="cpu", device_count=0)
    device_type, names = "cpu", cast("tuple[str, ...]", ())
    count = 0
    if torch.cuda.is_available():
        device_type = "cuda"
        count = torch.cuda.device_count()
        names = tuple(torch.cuda.get_device_name(i) for i in range(count))
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        device_type, count, names = "mps", 1, ("mps",)
    # Before the process group exists (a check runs first), torchrun's env says the same.
    rank, world_size = rank_and_world()
    return EnvRecord(
        device_type=device_type,
        device_count=count,
        device_names=names,
        world_size=world_size,
        rank=rank,
    )
