"""Writing resumeguard's files into a live W&B run (its files directory) and its config key.

The only writer of run state; nothing here touches the user's config keys or files.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from pathlib import Path
from typing import Any

from resumeguard import atomic
from resumeguard.errors import BadInput
from resumeguard.policy import Policy
from resumeguard.runrecord import RunRecord, now
from resumeguard.stores.layout import CONFIG_KEY, RECORD_FILE, STATE_FILE, read_state

HEARTBEAT_SECONDS = 30.0
"""How often a guarded run refreshes its heartbeat (a live copy is one with a fresh heartbeat)."""

_records: dict[tuple[str, str], RunRecord] = {}
_policies: dict[tuple[str, str], Policy] = {}
_heartbeats: dict[tuple[str, str], threading.Event] = {}
_lock = threading.Lock()


def _key(run: Any) -> tuple[str, str]:
    """One wandb.init: the id alone repeats across resumes in one process, the directory not."""
    return (str(run.id), str(run.dir))


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


def save_run_file(run: Any, path: Path) -> None:
    """Hand a file that lies inside the run's files directory to W&B for upload."""
    run.save(str(path), base_path=run.dir, policy="now")


def write_state(run: Any, *, state: str = "running") -> None:
    """Refresh ``resumeguard-state.json``: last step, heartbeat, and who holds the run."""
    path = Path(run.dir) / STATE_FILE
    try:
        previous = read_state(path)
    except BadInput:
        previous = None  # damaged: this process's own state replaces it
    last = previous.step if previous is not None else None
    # run.step is the step W&B is at: logs at it are still accepted, so the last one that
    # counts as logged is one below.
    current = getattr(run, "step", None)
    if isinstance(current, int) and current > 0 and (last is None or current - 1 > last):
        last = current - 1
    body = {
        "step": last,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "heartbeat": now(),
        "state": state,
    }
    atomic.write_json(path, body)


def start_heartbeat(run: Any) -> None:
    """Keep the state file's heartbeat fresh while the run lives; mark it finished at the end."""
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


def _hook_finish(run: Any) -> None:
    """Wrap ``run.finish`` so the state file says "finished" and the heartbeat stops."""
    original = run.finish
    if getattr(original, "_resumeguard", False):
        return

    def finish(*args: Any, **kwargs: Any) -> Any:
        stop_heartbeat(run, state="finished")
        return original(*args, **kwargs)

    finish._resumeguard = True  # type: ignore[attr-defined]
    run.finish = finish


def stop_heartbeat(run: Any, *, state: str) -> None:
    """Stop the heartbeat and write the final state."""
    from resumeguard import claims

    with _lock:
        stop = _heartbeats.pop(_key(run), None)
    if stop is not None:
        stop.set()
    with contextlib.suppress(OSError):  # the files directory is already gone: nothing to mark
        write_state(run, state=state)
    claims.release(str(run.id))  # the next resume of this run may go ahead
