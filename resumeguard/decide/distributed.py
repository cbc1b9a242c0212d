"""torch.distributed: decide once on rank 0 and share the outcome, so ranks stop or go together.

Every exchange is one of torch's store collectives (``torch.distributed._StoreCollectives``) on
the process group's key-value store, or, before a process group exists (the decorator runs
first), on the torchrun agent's store (``TORCHELASTIC_USE_AGENT_STORE``). Each has its own
timeout (:func:`collective_timeout`): a rank that does not arrive makes every rank waiting for it
raise :class:`RankFailed` naming it and the call, never a hang. Rank 0 never waits for a
verdict it shares, so a script may call ``init`` on rank 0 only. Without a store, every rank
decides for itself (the same files give the same answer).
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import functools
import json
import os
import re
import threading
from collections.abc import Callable
from typing import Any

from resumeguard.collect.env import process_group, rank_and_world
from resumeguard.errors import BadInput, ResumeGuardError

TIMEOUT_ENV = "RESUMEGUARD_COLLECTIVE_TIMEOUT"
"""Seconds every collective call waits for the other ranks, overriding its own timeout."""
MARGIN_SECONDS = 60.0
"""Added to the longest a rank may need for its part of a call (scheduling, a busy node)."""

_calls: collections.Counter[str] = collections.Counter()


class RankFailed(ResumeGuardError):
    """A rank did not arrive at a collective call within its timeout, or failed while deciding
    for every rank: the resume cannot be decided, and no rank is left waiting."""

    exit_code = 3


def collective_timeout(part_seconds: float) -> float:
    """How long a collective call waits for the other ranks: ``RESUMEGUARD_COLLECTIVE_TIMEOUT``
    when set, else the longest a rank may need for its part plus :data:`MARGIN_SECONDS`."""
    raw = os.environ.get(TIMEOUT_ENV)
    if raw is None or not raw.strip():
        return part_seconds + MARGIN_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):  # also false for NaN
        raise BadInput(f"{TIMEOUT_ENV} must be a number of seconds above 0, not {raw!r}")
    return value


def decision_seconds() -> float:
    """The longest rank 0 may need to decide a resume: the online check's own bound (every
    W&B request with its retries and backoff); local work is in the margin."""
    from resumeguard.stores.interface import default_timeout
    from resumeguard.stores.online import check_bound

    return check_bound(default_timeout())


def agree(
    decide: Callable[[], Any], *, tag: str, call: str | None = None, part: float | None = None
) -> Any:
    """Run ``decide`` on rank 0 only and return its JSON-able result on every rank. Whatever
    rank 0 raises while deciding reaches every rank at once: a ResumeGuardError as itself,
    anything else re-raised on rank 0 and as :class:`RankFailed` on the others. Rank 0 does
    not wait; the others wait for it at most :func:`collective_timeout` of ``part`` (default:
    :func:`decision_seconds`). ``call`` names the call in errors (default ``tag``)."""
    rank, world = rank_and_world()
    if world <= 1:
        return decide()
    channel = _channel(rank, world)
    if channel is None:
        return decide()  # no channel: every rank decides on the same files
    key = _key(tag)
    if rank != 0:
        timeout = collective_timeout(decision_seconds() if part is None else part)
        try:
            payload = json.loads(channel.broadcast_recv(key, _delta(timeout)))
        except RuntimeError:  # torch's DistStoreError and timeouts are RuntimeErrors
            raise RankFailed(_absent_line([0], call or tag, timeout)) from None
        if "error" in payload:
            raise _error_from_json(payload["error"])
        return payload["ok"]
    try:
        result = decide()
    except ResumeGuardError as e:
        _send(channel, key, {"error": _error_to_json(e)})
        raise
    except BaseException as e:  # every rank must hear it; rank 0 re-raises it
        _send(channel, key, {"error": {"type": "RankFailed", "message": _failure_line(e)}})
        raise
    _send(channel, key, {"ok": result})
    return result


def all_ranks(value: Any, *, tag: str, call: str | None = None, part: float = 0.0) -> list[Any]:
    """Every rank's ``value`` (JSON-able), in rank order; ``[value]`` on one rank or without a
    channel. Waits for the others at most :func:`collective_timeout` of ``part``, the longest
    the slowest rank may need to get here after the others; then :class:`RankFailed` names the
    ranks that did not arrive. A rank that gives up says so in the store, so that one arriving
    after it (its values all there, but nobody waiting any more) raises too, not goes on alone."""
    rank, world = rank_and_world()
    store = _store() if world > 1 else None
    if store is None:
        return [value]
    timeout = collective_timeout(part)
    key = _key(tag)
    gave_up = f"{key}/gave-up"
    try:
        gathered = _collectives(store, rank, world).all_gather(
            key, json.dumps(value), _delta(timeout)
        )
    except RuntimeError as e:
        missing = _missing_ranks(str(e), rank, world)
        _within(timeout, store.set, gave_up, str(rank))  # best effort: late ranks read it
        raise RankFailed(_absent_line(missing, call or tag, timeout)) from None
    late = _within(timeout, store.check, [gave_up])
    if late is not False:  # given up, or the store is gone or silent: nobody is waiting
        raise RankFailed(
            f"rank {rank} reached {call or tag} after another rank stopped waiting for it "
            f"({timeout:g} s), so the resume cannot be decided; every rank must call "
            f"{call or tag} at the same point ({TIMEOUT_ENV} sets the wait in seconds)"
        )
    return [json.loads(b) for b in gathered]


def _within(seconds: float, call: Callable[..., Any], *args: Any) -> Any:
    """``call(*args)`` on a store, waited for at most ``seconds``: a store call waits as long as
    the process group's own timeout (30 minutes by default) when the rank holding the store is
    stopped. None when it failed or did not answer in time."""
    answer: list[Any] = []

    def ask() -> None:
        with contextlib.suppress(RuntimeError):  # the store is gone
            answer.append(call(*args))

    asking = threading.Thread(target=ask, name="resumeguard-store", daemon=True)
    asking.start()
    asking.join(seconds)
    return answer[0] if answer else None


def _send(channel: Any, key: str, payload: dict[str, Any]) -> None:
    channel.broadcast_send(key, json.dumps(payload), _delta(MARGIN_SECONDS))


def _absent_line(missing: list[int], call: str, timeout: float) -> str:
    who = "rank " + ", ".join(map(str, missing)) if missing else "a rank"
    return (
        f"{who} did not reach {call} within {timeout:g} s (it failed, stopped, or skipped the "
        f"call), so the resume cannot be decided; every rank must call {call} at the same "
        f"point ({TIMEOUT_ENV} sets the wait in seconds)"
    )


def _missing_ranks(message: str, rank: int, world: int) -> list[int]:
    """The ranks torch's store collective names as missing; every other rank when it names
    none (the store itself did not answer)."""
    found = re.search(r"missing ranks: ([\d, ]+)", message)
    if found:
        return [int(r) for r in re.findall(r"\d+", found.group(1))]
    return [r for r in range(world) if r != rank]


def _failure_line(error: BaseException) -> str:
    first = next((line for line in str(error).splitlines() if line.strip()), "")
    what = f"{type(error).__name__}: {first}" if first else type(error).__name__
    return f"rank 0 failed while deciding whether to resume ({what}); see rank 0's output"


def _channel(rank: int, world: int) -> Any:
    """torch's store collectives over :func:`_store`; None without a store."""
    store = _store()
    return None if store is None else _collectives(store, rank, world)


def _store() -> Any:
    """The process group's key-value store, else the torchrun agent's; None without either."""
    dist = process_group()
    if dist is not None:
        return dist.distributed_c10d._get_default_store()
    return _agent_store(os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT"))


def _collectives(store: Any, rank: int, world: int) -> Any:
    import torch.distributed as tdist

    return tdist._StoreCollectives(store, rank, world)  # type: ignore[attr-defined]


def _delta(seconds: float) -> dt.timedelta:
    return dt.timedelta(seconds=seconds)


@functools.cache
def _agent_store(host: str | None, port: str | None) -> Any:
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True" or not host or not port:
        return None
    try:
        import torch.distributed as tdist

        return tdist.TCPStore(  # type: ignore[attr-defined]
            host_name=host,
            port=int(port),
            is_master=False,
            timeout=_delta(MARGIN_SECONDS),
        )
    except (ValueError, RuntimeError):
        return None  # no reachable agent store: fall back to deciding on every rank


def _key(tag: str) -> str:
    """A key no earlier call used: every rank makes the same calls in the same order."""
    _calls[tag] += 1
    run = os.environ.get("TORCHELASTIC_RUN_ID", "")
    restart = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    return f"resumeguard/{run}/{restart}/{tag}/{_calls[tag]}"


def _error_to_json(error: ResumeGuardError) -> dict[str, Any]:
    from resumeguard.errors import ResumeBlocked

    data: dict[str, Any] = {"type": type(error).__name__, "message": str(error)}
    if isinstance(error, ResumeBlocked):
        data["report"] = error.report.to_json()
    return data


def _error_from_json(data: dict[str, Any]) -> ResumeGuardError:
    from resumeguard import errors
    from resumeguard.verdict.report import Report

    if data.get("type") == "ResumeBlocked" and "report" in data:
        blocked = errors.ResumeBlocked(Report.from_json(data["report"]))
        # Rank 0 shows the report; the others say where to look (one report per job).
        blocked.args = (f"resume of run {blocked.report.run or '?'} blocked: see rank 0's report",)
        return blocked
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
