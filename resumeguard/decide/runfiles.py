"""Writing resumeguard's files into a live W&B run (its files directory) and its config key.

The only writer of run state; nothing here touches the user's config keys or files.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from resumeguard.decide.intent import ResumeCheck
from resumeguard.errors import BadInput
from resumeguard.io import atomic
from resumeguard.records.run import RunRecord, now
from resumeguard.stores.layout import CONFIG_KEY, RECORD_FILE, STATE_FILE
from resumeguard.verdict.policy import Policy

HEARTBEAT_SECONDS = 30.0
"""How often a guarded run refreshes its heartbeat (a live copy is one with a fresh heartbeat)."""

_records: dict[tuple[str, str], RunRecord] = {}
_policies: dict[tuple[str, str], Policy] = {}
_heartbeats: dict[tuple[str, str], threading.Event] = {}
_publishing: dict[tuple[str, str], threading.RLock] = {}
"""Per run: held while a record is read and a grown one published (see :func:`recording`)."""
_lock = threading.Lock()
_state_lock = threading.Lock()
"""Held while a state file is written: a heartbeat never lands after the final state."""
_final: set[tuple[str, str]] = set()
"""Runs whose final state is written."""


def _key(run: Any) -> tuple[str, str]:
    """One wandb.init: the id alone repeats across resumes in one process, the directory not."""
    return (str(run.id), str(run.dir))


@contextlib.contextmanager
def recording(run: Any) -> Iterator[None]:
    """Hold while reading this process's record of ``run`` and publishing a grown one, so two
    threads that save at once each add their checkpoint instead of one overwriting the other."""
    with _lock:
        lock = _publishing.setdefault(_key(run), threading.RLock())
    with lock:
        yield


def current_record(run: Any) -> RunRecord | None:
    """The record this process holds for a live run, if any."""
    with _lock:
        return _records.get(_key(run))


def current_policy(run: Any) -> Policy | None:
    """The policy the live run was checked or recorded with, if this process attached it."""
    with _lock:
        return _policies.get(_key(run))


def publish(run: Any, record: RunRecord, *, policy: Policy | None = None) -> None:
    """Store ``record`` as the run file and mirror its compact form in ``run.config``."""
    existing = run.config.get(CONFIG_KEY) if hasattr(run.config, "get") else None
    if existing is not None and not (isinstance(existing, dict) and "record_digest" in existing):
        raise BadInput(
            f"run.config[{CONFIG_KEY!r}] is already used by your code; rename that config key "
            "(resumeguard owns this one key and never overwrites yours)"
        )
    # The config names the record by digest (and keeps the one before): it goes first, so a
    # process killed in between leaves a record the config still accepts.
    compact = record.compact()
    if isinstance(existing, dict) and existing.get("record_digest") != compact["record_digest"]:
        compact["previous_record_digest"] = existing.get("record_digest")
    run.config.update({CONFIG_KEY: compact}, allow_val_change=True)
    if getattr(run, "offline", False):
        # Offline, W&B keeps the config only inside its binary log: leave a readable copy.
        from resumeguard.stores.offline import write_config_sidecar

        write_config_sidecar(run.dir, {k: v for k, v in run.config.items() if k != "_wandb"})
    path = Path(run.dir) / RECORD_FILE
    atomic.write_json(path, record.to_json())
    run.save(str(path), base_path=run.dir, policy="now")
    with _lock:
        _records[_key(run)] = record
        if policy is not None:
            _policies[_key(run)] = policy


def write_state(run: Any, *, state: str = "running") -> None:
    """Refresh ``resumeguard-state.json``: heartbeat, state, and who holds the run. Once a final
    state ("finished", "failed") is written, nothing writes "running" over it again."""
    key = _key(run)
    with _state_lock:
        if key in _final:
            return
        if state != "running":
            _final.add(key)
        body = {"pid": os.getpid(), "host": socket.gethostname(), "heartbeat": now()}
        body["state"] = state
        atomic.write_json(Path(run.dir) / STATE_FILE, body)


def start_heartbeat(run: Any) -> None:
    """Keep the state file's heartbeat fresh while the run lives; mark it finished (or failed)
    when it ends: at ``run.finish()``, or at the exit of a process whose run W&B finishes for
    it (Lightning, Transformers and plain scripts leave that to wandb's exit hook)."""
    stop = threading.Event()
    with _lock:
        old = _heartbeats.pop(_key(run), None)
        _heartbeats[_key(run)] = stop
    if old is not None:
        old.set()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_SECONDS):
            try:
                write_state(run)
            except OSError:
                return  # the run directory went away: the run is over

    threading.Thread(target=beat, name="resumeguard-heartbeat", daemon=True).start()
    _hook_finish(run)
    _watch_exit()
    atexit.register(_at_exit, run)


def _hook_finish(run: Any) -> None:
    """Wrap ``run.finish`` so the state file says "finished" and the heartbeat stops."""
    original = run.finish
    if getattr(original, "_resumeguard", False):
        return

    def finish(*args: Any, **kwargs: Any) -> Any:
        exit_code = kwargs.get("exit_code", args[0] if args else None)
        failed = isinstance(exit_code, int) and exit_code != 0
        if not failed:
            _went_ahead(run)
        stop_heartbeat(run, state="failed" if failed else "finished")
        result = original(*args, **kwargs)
        if getattr(run, "offline", False):
            _wait_for_exit_record(run)
        return result

    finish._resumeguard = True  # type: ignore[attr-defined]
    run.finish = finish


EXIT_RECORD_WAIT_SECONDS = 5.0
"""How long ``finish`` waits for wandb-core to write the run's end into its transaction log."""


def _wait_for_exit_record(run: Any) -> None:
    """wandb's ``finish`` can return before wandb-core has flushed the end of an offline run's
    transaction log: wait (bounded) so that this process, reading the run back, sees what a
    later one will (the last step, the exit)."""
    from resumeguard.stores import txlog

    log = txlog.run_log(Path(run.dir).parent, str(run.id))
    deadline = time.monotonic() + EXIT_RECORD_WAIT_SECONDS
    while txlog.read_log(log).exit_code is None and time.monotonic() < deadline:
        time.sleep(0.02)


_uncaught: list[BaseException] = []


def _watch_exit() -> None:
    """Note an uncaught exception (the process is failing, not finishing); once per process."""
    hook = sys.excepthook
    if getattr(hook, "_resumeguard", False):
        return

    def excepthook(kind: Any, value: Any, tb: Any) -> None:
        _uncaught.append(value)
        hook(kind, value, tb)

    excepthook._resumeguard = True  # type: ignore[attr-defined]
    sys.excepthook = excepthook


def _at_exit(run: Any) -> None:
    """At interpreter exit: the final state of a run nobody finished explicitly."""
    state = "failed" if _uncaught else "finished"
    if not _uncaught:
        _went_ahead(run)
    with contextlib.suppress(Exception):
        stop_heartbeat(run, state=state)


def _went_ahead(run: Any) -> None:
    """A run that ends cleanly went ahead: a resume still pending in its audit trail is
    resumed (never a reason to fail the finish)."""
    with contextlib.suppress(Exception):
        settle(run, "resumed")


def stop_heartbeat(run: Any, *, state: str) -> None:
    """Stop the heartbeat and write the final state (the first final state written stays)."""
    from resumeguard.decide import claims

    with _lock:
        stop = _heartbeats.pop(_key(run), None)
    if stop is not None:
        stop.set()
    with contextlib.suppress(OSError):  # the files directory is already gone: nothing to mark
        write_state(run, state=state)
    claims.release(str(run.id))  # the next resume of this run may go ahead


def settle(run: Any, outcome: str, reason: str = "", *, check: ResumeCheck | None = None) -> None:
    """Mark the pending resume in the run's audit trail as ``outcome`` ("resumed" once it went
    ahead, "refused" when a later check refused it). A resume of the run that went ahead after
    ``check`` adds the facts its record could not hold (a record from an older resumeguard),
    so that later resumes compare them."""
    record = current_record(run)
    if record is None or not record.resumes or record.resumes[-1].outcome != "pending":
        return
    record = record.with_outcome(outcome, reason)
    if outcome == "resumed" and check is not None and check.run_id == str(run.id):
        record = dataclasses.replace(
            record, fingerprint=record.fingerprint.with_facts(check.current)
        )
    publish(run, record)
