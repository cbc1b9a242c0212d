"""The offline store: W&B offline run directories on disk, no account and no network.

A run's data may be spread over several ``offline-run-*-<id>[-N]`` directories, one per
``wandb.init`` of that id (see :mod:`resumeguard.stores.layout` for what wandb 0.31
writes where, and when). The last logged step and whether a directory's process exited come
from W&B's own ``run-<id>.wandb`` transaction log (:mod:`resumeguard.stores.txlog`), what
``wandb sync`` uploads; the record, config and heartbeat from the JSON/YAML files W&B or
resumeguard leave next to it, newest directory first.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from resumeguard.errors import BadInput, CheckpointError, RunNotFound
from resumeguard.io import atomic
from resumeguard.stores import layout, txlog
from resumeguard.stores.interface import RunRef, RunState, RunStore, StoredRun


class OfflineStore(RunStore):
    """Runs under ``wandb_dir`` (else ``WANDB_DIR``, else the current directory)."""

    def __init__(
        self,
        wandb_dir: str | Path | None = None,
        *,
        stale_after_s: float = layout.LIVE_SECONDS,
        now: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.base = Path(wandb_dir or os.environ.get("WANDB_DIR") or os.getcwd()).expanduser()
        self.stale_after_s = stale_after_s
        self._now = now or (lambda: dt.datetime.now(dt.timezone.utc))

    @property
    def name(self) -> str:
        """Always "offline"."""
        return "offline"

    def dirs(self, ref: RunRef) -> list[Path]:
        """Every offline-run directory of the run, oldest first; Unverifiable when none."""
        dirs = layout.offline_run_dirs(layout.search_roots(self.base), ref.id)
        if not dirs:
            raise RunNotFound(
                f"no offline W&B run with id {ref.id} under {self.base} "
                "(is WANDB_DIR right? pass --wandb-dir)"
            )
        return dirs

    def fetch(self, ref: RunRef) -> StoredRun:
        """Read the run's newest record, config, step and liveness from all its directories."""
        dirs = self.dirs(ref)
        record = self._newest_record(dirs)
        last_step, step_unknown = _last_step(dirs, ref.id)
        return StoredRun(
            ref=ref,
            config=_config(dirs),
            record=record,
            last_step=last_step,
            state=self._state(dirs, ref.id),
            heartbeat=_heartbeat(dirs, self._now()),
            location=str(_holding_record(dirs)),
            directories=tuple(str(d) for d in dirs),
            step_unknown=step_unknown,
        )

    def fetch_file(self, ref: RunRef, name: str, dest: Path) -> Path:
        """Copy the newest ``files/<name>`` of the run to ``dest / name`` (BadInput when it
        resolves outside the run's files directory, through a link or a linked folder)."""
        rel = layout.check_run_file_name(name)
        source = self.local_file(ref, name)
        if source is not None:
            return atomic.copy(source, Path(dest) / rel)
        dirs = self.dirs(ref)
        broken: list[str] = []
        for directory in reversed(dirs):
            source = directory / "files" / rel
            if _readable_file(source):
                return atomic.copy(_inside(directory, source, name), Path(dest) / rel)
            if source.is_symlink():  # wandb.save's link to a file that has since gone
                broken.append(str(source))
        note = f"; broken link: {', '.join(broken)}" if broken else ""
        raise CheckpointError(
            f"{name} not found in run {ref} (looked in {len(dirs)} offline "
            f"director{'y' if len(dirs) == 1 else 'ies'} under {self.base}{note})"
        )

    def local_file(self, ref: RunRef, name: str, *, local: bool = False) -> Path | None:
        """The newest ``files/<name>`` of the run in place (no copy), None when absent; BadInput
        when it resolves outside the run's files directory. ``local``: the newest
        ``resumeguard-local/<name>`` (a copy kept beside the files) instead."""
        rel = layout.check_run_file_name(name)
        folder = layout.LOCAL_COPIES if local else "files"
        for directory in reversed(self.dirs(ref)):
            source = directory / folder / rel
            if _readable_file(source):
                return _inside(directory, source, name, folder)
        return None

    def write_record(self, ref: RunRef, record: dict[str, Any], compact: dict[str, Any]) -> None:
        """Write ``resumeguard.json`` and the config sidecar into the newest directory.

        W&B's own files are left alone: offline, W&B keeps the config only in its ``.wandb`` log
        (``config.yaml`` is not written), and editing that log is not ours to do, so the compact
        goes into ``resumeguard-config.json``, which :meth:`fetch` reads.
        """
        dirs = self.dirs(ref)
        files = dirs[-1] / "files"
        # The run's config as known, else the one being recorded; never an older record's.
        config = _config(dirs, record)
        config[layout.CONFIG_KEY] = compact
        atomic.write_json(files / layout.RECORD_FILE, record)
        atomic.write_json(files / layout.CONFIG_SIDECAR, {"schema": 1, "config": config})

    def _newest_record(self, dirs: list[Path]) -> dict[str, Any] | None:
        """The record in the newest directory that has one; BadInput when that one is corrupt."""
        for directory in reversed(dirs):
            # Written atomically by resumeguard, so a damaged one is damage, not a race: it is
            # reported (BadInput) rather than silently replaced by an older record.
            record = layout.read_json_object(directory / "files" / layout.RECORD_FILE)
            if record is not None:
                return record
        return None

    def _state(self, dirs: list[Path], run_id: str) -> RunState:
        """Running when any directory's process lives, else the newest directory's state. A
        directory whose transaction log holds W&B's exit record is over, whatever else says."""
        newest: RunState = "unknown"
        for i, directory in enumerate(dirs):
            exit_code = txlog.read_log(txlog.run_log(directory, run_id)).exit_code
            state = layout.read_state(directory / "files" / layout.STATE_FILE)
            verdict: RunState
            if exit_code is not None:
                verdict = "finished" if exit_code == 0 else "failed"
            else:
                verdict = self._judge(state) if state is not None else "unknown"
            if verdict == "running":
                return "running"
            if i == len(dirs) - 1:
                newest = verdict
        return newest

    def _judge(self, state: layout.StateRecord) -> RunState:
        if state.state == "finished":
            return "finished"
        if state.state != "running":
            return "unknown"
        beat = layout.parse_time(state.heartbeat)
        if beat is None:
            return "unknown"
        age = (self._now() - beat).total_seconds()
        if age > self.stale_after_s:
            return "crashed"  # said running, then stopped beating without saying finished
        if age < -self.stale_after_s:
            return "unknown"  # a heartbeat from the future is no sign of life
        if _dead_here(state.host, state.pid):
            return "crashed"
        return "running"


def _readable_file(source: Path) -> bool:
    """True when ``source`` is a file, False when it is not there; BadInput when the folder
    holding it cannot be read (permissions, a name too long), as for an unreadable record."""
    try:
        return source.is_file()
    except OSError as e:
        raise layout.unreadable_copy(source, e) from None


def _inside(directory: Path, source: Path, name: str, folder: str = "files") -> Path:
    """``source`` when it resolves inside ``directory/folder``; BadInput when a link (or a linked
    folder on the way) takes it elsewhere: a run file must be the run's own."""
    files = (directory / folder).resolve()
    resolved = source.resolve()
    if not resolved.is_relative_to(files):
        raise BadInput(
            f"{name} in {directory} resolves outside the run ({resolved}): refusing to read it; "
            "restore the run's own copy"
        )
    return source


def _config(dirs: list[Path], record: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The run config from the newest directory that tells it.

    Per directory: resumeguard's sidecar, else ``config.yaml`` (old wandb, online-mode dirs),
    else (without ``record``) that directory's ``resumeguard.json`` fingerprint config. Then
    ``record``'s fingerprint config, then {}.
    """
    for directory in reversed(dirs):
        files = directory / "files"
        sidecar = layout.read_config_sidecar(files / layout.CONFIG_SIDECAR)
        if sidecar is not None:
            return dict(sidecar.config)
        from_yaml = _read_config_yaml(files / layout.WANDB_CONFIG_FILE)
        if from_yaml is not None:
            return from_yaml
        if record is None:
            recorded = _record_config(layout.read_json_object(files / layout.RECORD_FILE))
            if recorded is not None:
                return recorded
    return _record_config(record) or {}


def _record_config(record: Mapping[str, Any] | None) -> dict[str, Any] | None:
    fingerprint = (record or {}).get("fingerprint")
    if isinstance(fingerprint, dict) and isinstance(fingerprint.get("config"), dict):
        return dict(fingerprint["config"])
    return None


def _read_config_yaml(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    from resumeguard.io import bounded

    try:
        raw = bounded.read_yaml(path)  # old wandb versions, online-mode directories
    except OSError as e:
        raise BadInput(f"cannot read {path}: {e.strerror or e}") from None
    except ValueError as e:
        raise BadInput(f"{path} is damaged: {e}; restore or delete it") from None
    return layout.unwrap_config(raw) if isinstance(raw, dict) else None


def _last_step(dirs: list[Path], run_id: str) -> tuple[int | None, str]:
    """The highest step W&B logged in any directory: its transaction log, else (older wandb,
    online-mode directories) ``wandb-summary.json``'s ``_step``; and why it cannot be known
    ("" when it can): a transaction log damaged before its tail."""
    steps: list[int] = []
    damaged: list[str] = []
    for directory in dirs:
        summary_of_log = txlog.read_log(txlog.run_log(directory, run_id))
        if summary_of_log.damaged:
            damaged.append(summary_of_log.damaged)
        logged = summary_of_log.last_step
        if logged is not None:
            steps.append(logged)
        summary = layout.read_json_object(directory / "files" / layout.WANDB_SUMMARY_FILE)
        value = summary.get("_step") if summary else None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
            steps.append(int(value))
    return max(steps, default=None), "; ".join(damaged)


def _heartbeat(dirs: list[Path], now: dt.datetime) -> str | None:
    """The latest of: state-file heartbeats, and when W&B last wrote a run's log or output.
    Times from the future (beyond the liveness window, for clock skew) are no sign of life."""
    times: list[dt.datetime] = []
    for directory in dirs:
        state = layout.read_state(directory / "files" / layout.STATE_FILE)
        beat = layout.parse_time(state.heartbeat) if state else None
        if beat is not None:
            times.append(beat)
        # wandb-core appends to these while the process lives (the log every 15 s).
        for path in [*directory.glob("run-*.wandb"), directory / "files" / "output.log"]:
            with contextlib.suppress(OSError, OverflowError, ValueError):
                times.append(dt.datetime.fromtimestamp(path.stat().st_mtime, dt.timezone.utc))
    horizon = now + dt.timedelta(seconds=layout.LIVE_SECONDS)
    times = [t for t in times if t <= horizon]
    return max(times).isoformat() if times else None


def write_config_sidecar(run_dir: str | Path, config: Mapping[str, Any]) -> Path:
    """Save a live run's config (``dict(run.config)``) where :class:`OfflineStore` reads it.

    For resumeguard's own front doors: offline, wandb keeps the config only in its ``.wandb``
    log, so without this file an offline check sees just the record's copy of the config.
    """
    path = Path(run_dir) / layout.CONFIG_SIDECAR
    atomic.write_json(path, {"schema": 1, "config": dict(config)})
    return path


def _dead_here(host: object, pid: object) -> bool:
    """True only when the state file's process was on this host and no longer exists."""
    if os.name != "posix" or host != socket.gethostname() or not isinstance(pid, int):
        return False  # on Windows os.kill(pid, 0) would terminate the process
    if not 0 < pid < 2**31:
        return True  # no such process can exist
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # EPERM: it exists, owned by someone else
        return False
    return False


def _holding_record(dirs: list[Path]) -> Path:
    """The newest directory of the run that holds its record: the run's own, not an empty one
    a second ``wandb.init`` of the same id left behind (the newest one when none does)."""
    for directory in reversed(dirs):
        if (directory / "files" / layout.RECORD_FILE).is_file():
            return directory
    return dirs[-1]
