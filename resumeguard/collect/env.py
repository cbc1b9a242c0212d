"""Fingerprint the execution environment: devices and the distributed world. No secrets."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import platform
import sys
from typing import Any

from resumeguard.collect.record import Record
from resumeguard.errors import BadInput


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
    """Describe this process's devices and distributed world, without importing torch: the
    GPUs from the NVIDIA driver (NVML), as many as ``CUDA_VISIBLE_DEVICES`` lets CUDA see."""
    device_type, names = _devices()
    # Before the process group exists (a check runs first), torchrun's env says the same.
    rank, world_size = rank_and_world()
    return EnvRecord(
        device_type=device_type,
        device_count=len(names) if device_type != "cpu" else 0,
        device_names=names,
        world_size=world_size,
        rank=rank,
    )


def _devices() -> tuple[str, tuple[str, ...]]:
    gpus = visible_gpus(_nvidia_gpus(), os.environ.get("CUDA_VISIBLE_DEVICES"))
    if gpus:
        return "cuda", tuple(name for name, _ in gpus)
    if sys.platform == "darwin" and platform.machine() == "arm64" and _torch_installed():
        return "mps", ("mps",)  # Apple silicon: torch's MPS device
    return "cpu", ()


def _nvidia_gpus() -> list[tuple[str, str]]:
    """Every NVIDIA GPU the driver knows, as (name, UUID) in index order; [] without a driver."""
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return []  # no driver (or no permission): no GPU this process can use
    try:
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            gpus.append(
                (_text(pynvml.nvmlDeviceGetName(handle)), _text(pynvml.nvmlDeviceGetUUID(handle)))
            )
        return gpus
    except pynvml.NVMLError:
        return []
    finally:
        with contextlib.suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def visible_gpus(gpus: list[tuple[str, str]], visible: str | None) -> list[tuple[str, str]]:
    """The GPUs CUDA shows a process under ``CUDA_VISIBLE_DEVICES`` (unset: all): indices or
    UUID prefixes, in the order given; as CUDA does, the list ends at the first entry that
    names no GPU (or one named before)."""
    if visible is None:
        return list(gpus)
    shown: list[tuple[str, str]] = []
    for entry in (e.strip() for e in visible.split(",")):
        if entry.isdigit() and int(entry) < len(gpus):
            found = gpus[int(entry)]
        else:
            matches = [g for g in gpus if entry and g[1].startswith(entry)]
            if len(matches) != 1:
                break
            found = matches[0]
        if found in shown:
            break
        shown.append(found)
    return shown


def _torch_installed() -> bool:
    return "torch" in sys.modules or importlib.util.find_spec("torch") is not None


def process_group() -> Any:
    """torch.distributed when torch is loaded and a process group is initialised, else None."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    dist = torch.distributed
    return dist if dist.is_available() and dist.is_initialized() else None


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the world size (process group first, then torchrun's env)."""
    dist = process_group()
    if dist is not None:
        return int(dist.get_rank()), int(dist.get_world_size())
    try:
        return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    except ValueError as e:
        raise BadInput(f"RANK/WORLD_SIZE must be integers: {e}") from None
