"""torch.distributed: decide once on rank 0 and share the outcome, so ranks stop or go together.

Before the user's process group exists (the decorator runs first), the outcome travels through
the key-value store of the torchrun agent (``TORCHELASTIC_USE_AGENT_STORE``); once a process
group is initialised, through broadcasts of JSON bytes. Without either,
every rank decides for itself (the same files give the same answer).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from resumeguard.errors import BadInput, ResumeGuardError

TIMEOUT_SECONDS = 600.0
"""How long other ranks wait for rank 0's verdict (a check reads git and the run store)."""

_calls = itertools.count()


def _dist() -> Any:
    """torch.distributed when torch is loaded and a process group is initialised, else None."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    dist = torch.distributed
    return dist if dist.is_available() and dist.is_initialized() else None


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the world size (process group first, then torchrun's env)."""
    dist = _dist()
    if dist is not None:
        return int(dist.get_rank()), int(dist.get_world_size())
    try:
        return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    except ValueError as e:
        raise BadInput(f"RANK/WORLD_SIZE must be integers: {e}") from None


def agree(decide: Callable[[], Any], *, tag: str) -> Any:
    """Run ``decide`` on rank 0 only and return its JSON-able result on every rank. Whatever
    rank 0 raises while deciding reaches every rank at once, so none is left waiting: a
    ResumeGuardError as itself, anything else re-raised on rank 0 and as
    :class:`RankFailed` on the others."""
    rank, world = rank_and_world()
    if world <= 1:
        return decide()
    payload: dict[str, Any] | None = None
    failure: BaseException | None = None
    if rank == 0:
        try:
            payload = {"ok": decide()}
        except ResumeGuardError as e:
            payload = {"error": _error_to_json(e)}
        except BaseException as e:  # every rank must hear it; rank 0 re-raises it below
            failure = e
            payload = {"error": {"type": "RankFailed", "message": _failure_line(e)}}
    dist = _dist()
    if dist is not None:
        payload = share(payload)
    else:
        store = _agent_store()
        if store is None:
            if rank != 0:
                return decide()  # no channel: every rank decides on the same files
        elif rank == 0:
            store.set(_key(tag), json.dumps(payload))
        else:
            key = _key(tag)
            store.wait([key], dt.timedelta(seconds=TIMEOUT_SECONDS))
            payload = json.loads(store.get(key))
    assert payload is not None
    if failure is not None:
        raise failure
    if "error" in payload:
        raise _error_from_json(payload["error"])
    return payload["ok"]


class RankFailed(ResumeGuardError):
    """Rank 0 failed while deciding with an error that is not resumeguard's verdict (a bug, an
    interrupt); the other ranks stop with it rather than wait for a verdict."""


def _failure_line(error: BaseException) -> str:
    first = next((line for line in str(error).splitlines() if line.strip()), "")
    what = f"{type(error).__name__}: {first}" if first else type(error).__name__
    return f"rank 0 failed while deciding whether to resume ({what}); see rank 0's output"


def all_ranks(value: Any) -> list[Any]:
    """Every rank's ``value`` (JSON-able), in rank order; ``[value]`` without a process group."""
    dist = _dist()
    if dist is None or dist.get_world_size() <= 1:
        return [value]
    return [json.loads(b) for b in _all_gather_bytes(dist, json.dumps(value).encode())]


def share(value: Any) -> Any:
    """Rank 0's ``value`` (JSON-able) on every rank (identity without a process group)."""
    dist = _dist()
    if dist is None or dist.get_world_size() <= 1:
        return value
    return json.loads(_broadcast_bytes(dist, json.dumps(value).encode()))


# torch's *_object collectives pickle through numpy, which lean installs lack: JSON bytes in
# uint8 tensors work on every backend (on the current CUDA device for NCCL).
def _device(dist: Any) -> Any:
    import torch

    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _all_gather_bytes(dist: Any, data: bytes) -> list[bytes]:
    import torch

    device = _device(dist)
    world = dist.get_world_size()
    size = torch.tensor([len(data)], dtype=torch.int64, device=device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    longest = max(int(s.item()) for s in sizes)
    mine = torch.zeros(longest, dtype=torch.uint8, device=device)
    if data:
        mine[: len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8).to(device)
    chunks = [torch.zeros_like(mine) for _ in range(world)]
    dist.all_gather(chunks, mine)
    return [bytes(c[: int(n.item())].cpu().tolist()) for c, n in zip(chunks, sizes, strict=True)]


def _broadcast_bytes(dist: Any, data: bytes) -> bytes:
    import torch

    device = _device(dist)
    size = torch.tensor([len(data)], dtype=torch.int64, device=device)
    dist.broadcast(size, src=0)
    buffer = torch.zeros(int(size.item()), dtype=torch.uint8, device=device)
    if dist.get_rank() == 0 and data:
        buffer[:] = torch.frombuffer(bytearray(data), dtype=torch.uint8).to(device)
    dist.broadcast(buffer, src=0)
    return bytes(buffer.cpu().tolist())


def _agent_store() -> Any:
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    try:
        import torch.distributed as tdist

        return tdist.TCPStore(  # type: ignore[attr-defined]
            host_name=os.environ["MASTER_ADDR"],
            port=int(os.environ["MASTER_PORT"]),
            is_master=False,
            timeout=dt.timedelta(seconds=TIMEOUT_SECONDS),
        )
    except (KeyError, ValueError, RuntimeError):
        return None  # no reachable agent store: fall back to deciding on every rank


def _key(tag: str) -> str:
    run = os.environ.get("TORCHELASTIC_RUN_ID", "")
    restart = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    return f"resumeguard/{run}/{restart}/{tag}/{next(_calls)}"


def _error_to_json(error: ResumeGuardError) -> dict[str, Any]:
    from resumeguard.errors import ResumeBlocked

    data: dict[str, Any] = {"type": type(error).__name__, "message": str(error)}
    if isinstance(error, ResumeBlocked):
        data["report"] = error.report.to_json()
    return data


def _error_from_json(data: dict[str, Any]) -> ResumeGuardError:
    from resumeguard import errors
    from resumeguard.report import Report

    if data.get("type") == "ResumeBlocked" and "report" in data:
        return errors.ResumeBlocked(Report.from_json(data["report"]))
    if data.get("type") == "RankFailed":
        return RankFailed(data.get("message", ""))
    cls = getattr(errors, str(data.get("type")), None)
    if (
        isinstance(cls, type)
        and issubclass(cls, ResumeGuardError)
        and cls is not errors.ResumeBlocked
    ):
        return cls(data.get("message", ""))
    return ResumeGuardError(data.get("message", ""))
