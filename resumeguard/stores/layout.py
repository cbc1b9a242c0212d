"""Where W&B and resumeguard put a run's files on disk, and the small helpers to read them.

What wandb 0.31 (wandb-core) leaves on disk in OFFLINE mode, verified with real runs:

- One directory per ``wandb.init`` call: ``<root>/wandb/offline-run-<YYYYMMDD_HHMMSS>-<id>``
  (``<root>/.wandb/`` instead when that folder exists; ``<root>`` is ``dir=``/``WANDB_DIR``/cwd).
  The timestamp is the run's start time in LOCAL time, to the second. When that directory already
  exists (a second init of the same id within the same second), ``wandb.init`` appends ``-1``,
  ``-2``, ... (``Settings.x_sync_dir_suffix``, ``_WandbInit.set_sync_dir_suffix``).
- Inside: ``run-<id>.wandb`` (the binary transaction log; the run id in its name is exact, which
  settles ids that themselves end in ``-<digits>``), ``logs/``, ``tmp/code/`` and ``files/``
  (``run.dir``). ``files/`` holds ``requirements.txt`` from init, ``output.log`` once something is
  printed, and what the user or ``wandb.save`` put there.
- NOT written offline, neither during the run nor at ``finish()``: ``files/config.yaml``,
  ``files/wandb-summary.json``, ``files/wandb-metadata.json``. wandb-core writes those from its
  sender, which does not run offline; config, summary and history exist only inside the ``.wandb``
  log, which is flushed every 15 s (``x_transaction_log_flush_interval``) and at finish: a
  SIGKILLed process leaves a 7-byte header. Older wandb versions and online-mode directories do
  have ``config.yaml``/``wandb-summary.json``, so they are still read when present.
- ``wandb.init(id=X, resume="must"|"allow"|None)`` offline creates a NEW directory for X every
  time, with ``run.resumed`` False, ``run.step`` 0 and only the config passed to that init.
- ``wandb.save(path)`` offline symlinks ``files/<name>`` to ``path``; a file already inside
  ``files/`` is left in place (no link), which is why resumeguard saves real copies there.

Because config is not on disk offline, resumeguard writes its own small files next to W&B's:
``resumeguard.json`` (the full record), ``resumeguard-config.json`` (``{"schema": 1, "config":
{...}}``: the run config as resumeguard saw it, ``"resumeguard"`` key included) and
``resumeguard-state.json`` (liveness: step, pid, host, heartbeat, state).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import re
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from resumeguard.collect.record import Record
from resumeguard.errors import BadInput

RECORD_FILE = "resumeguard.json"
"""The full record, a run file."""
CONFIG_SIDECAR = "resumeguard-config.json"
"""Offline only: ``{"schema": 1, "config": {...}}``, the run config W&B keeps only in its log."""
STATE_FILE = "resumeguard-state.json"
"""``{"step", "pid", "host", "heartbeat", "state"}``, written by a live resumeguard run."""
LOCAL_COPIES = "resumeguard-local"
"""Beside ``files/`` in a run directory: checkpoint copies kept on this machine, not uploaded."""
CONFIG_KEY = "resumeguard"
"""resumeguard's key in ``run.config``."""
WANDB_CONFIG_FILE = "config.yaml"
WANDB_SUMMARY_FILE = "wandb-summary.json"
LIVE_SECONDS = 75.0
"""A run whose heartbeat is younger than this is taken to be running somewhere: two and a half
of resumeguard's 30 s heartbeats, so a killed job requeued after Slurm's default delay (121 s)
is not mistaken for a live one."""
INTERNAL_CONFIG_KEYS = frozenset({"_wandb", "wandb_version"})
"""Keys W&B adds to a run's config that the user never set (as wandb's public API drops them)."""

_DIR_RE = re.compile(r"^offline-run-(?P<time>\d{8}_\d{6})-(?P<rest>.+)$")


def search_roots(base: Path) -> list[Path]:
    """The folders that may hold offline-run directories: ``base/wandb``, ``base/.wandb``, ``base``.

    Users pass either the ``dir=`` given to ``wandb.init`` or the ``wandb/`` folder inside it.
    """
    roots: list[Path] = []
    seen: set[Path] = set()
    for candidate in (base / "wandb", base / ".wandb", base):
        try:
            key = candidate.resolve()
        except OSError:
            continue
        if key not in seen and candidate.is_dir():
            seen.add(key)
            roots.append(candidate)
    return roots


def offline_run_dirs(roots: Iterable[Path], run_id: str) -> list[Path]:
    """Every ``offline-run-*-<run_id>[-N]`` directory under ``roots``, oldest first.

    Ordered by start time, then suffix (none < 1 < 2 < ... < 10). The ``run-<id>.wandb`` file,
    when present, decides which run a directory belongs to: "offline-run-T-ab-1" is run "ab-1"
    if it holds ``run-ab-1.wandb``, else a second directory of run "ab".
    """
    found: dict[Path, tuple[str, int, str]] = {}
    for root in roots:
        try:
            entries = list(root.iterdir())
        except OSError:
            continue
        for entry in entries:
            match = _DIR_RE.match(entry.name)
            if not match or not entry.is_dir():
                continue
            suffix = _suffix_for(match["rest"], run_id)
            if suffix is None or not _belongs_to(entry, run_id):
                continue
            with contextlib.suppress(OSError):
                found.setdefault(entry.resolve(), (match["time"], suffix, str(entry)))
    return [Path(key[2]) for key in sorted(found.values())]


def _suffix_for(rest: str, run_id: str) -> int | None:
    """0 for "<id>", N for "<id>-N", None when ``rest`` names another run."""
    if rest == run_id:
        return 0
    head, sep, tail = rest.rpartition("-")
    if sep and head == run_id and tail.isdigit():
        return int(tail)
    return None


def _belongs_to(directory: Path, run_id: str) -> bool:
    try:
        logs = [p.name for p in directory.glob("run-*.wandb")]
    except OSError:
        return True
    return not logs or f"run-{run_id}.wandb" in logs


def check_run_file_name(name: str) -> PurePosixPath:
    """A run file's path relative to the run files dir; BadInput if it could escape that dir."""
    path = PurePosixPath(name.replace("\\", "/"))
    if not name or path.is_absolute() or ".." in path.parts or str(path) in ("", "."):
        raise BadInput(f"bad run file name {name!r}: give a path relative to the run's files")
    return path


def unwrap_config(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The user's config from W&B's stored form: ``{"lr": {"value": 0.1, "desc": None}}``.

    W&B's own keys (``_wandb``, ``wandb_version``) are dropped, as ``wandb.Api().run().config``
    does. Only entries of exactly the stored shape are unwrapped.
    """
    config: dict[str, Any] = {}
    for key, value in raw.items():
        if key in INTERNAL_CONFIG_KEYS:
            continue
        if isinstance(value, Mapping) and "value" in value and set(value) <= {"value", "desc"}:
            value = value["value"]
        config[str(key)] = value
    return config


def read_json_object(path: Path, *, label: str | None = None) -> dict[str, Any] | None:
    """The JSON object in ``path``; None when there is no such file. BadInput (one line naming
    ``label`` or the path) when a file is there but is not a JSON object read within bounds
    (see :mod:`resumeguard.io.bounded`: no FIFOs or devices, size, nesting and numbers capped)."""
    from resumeguard.io import bounded

    try:
        data = bounded.read_json(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise BadInput(f"cannot read {label or path}: {e.strerror or e}") from None
    except ValueError as e:
        raise BadInput(f"{label or path} is damaged: {e}; restore or delete it") from None
    if not isinstance(data, dict):
        raise BadInput(f"{label or path} is damaged: not a JSON object; restore or delete it")
    return data


@dataclasses.dataclass(frozen=True)
class StateRecord(Record):
    """``resumeguard-state.json``: who holds a run, its last logged step and its heartbeat."""

    kind = "state file"

    step: int | None = None
    """The last step logged (None before the first)."""
    pid: int | None = None
    """The holding process."""
    host: str | None = None
    """Its host name."""
    heartbeat: str | None = None
    """ISO time of its last sign of life."""
    state: str = "unknown"
    """"running" or "finished"."""

    def __post_init__(self) -> None:
        if self.step is not None and self.step < 0:
            raise ValueError(f"step {self.step} is negative")
        if self.pid is not None and self.pid < 0:
            raise ValueError(f"pid {self.pid} is negative")
        if self.heartbeat is not None and parse_time(self.heartbeat) is None:
            raise ValueError(f"heartbeat {self.heartbeat[:40]!r} is not a time in range")


@dataclasses.dataclass(frozen=True)
class ConfigSidecar(Record):
    """``resumeguard-config.json``: the run config as resumeguard saw it (offline runs)."""

    kind = "config sidecar"

    config: dict[str, Any]
    """The run config, resumeguard's key included."""
    schema: int = 1
    """Schema version (only 1 exists)."""

    def __post_init__(self) -> None:
        if self.schema != 1:
            raise ValueError(f"schema {self.schema} is not 1; upgrade resumeguard")


def read_state(path: Path) -> StateRecord | None:
    """The state file at ``path``, validated; None when absent, BadInput when malformed."""
    return _read_record(path, StateRecord)


def read_config_sidecar(path: Path) -> ConfigSidecar | None:
    """The config sidecar at ``path``, validated; None when absent, BadInput when malformed."""
    return _read_record(path, ConfigSidecar)


R = TypeVar("R", bound=Record)


def _read_record(path: Path, cls: type[R]) -> R | None:
    data = read_json_object(path)
    if data is None:
        return None
    try:
        return cls.from_json(data)
    except ValueError as e:
        raise BadInput(f"{path} is damaged: {e}; restore or delete it") from None


def parse_time(value: object) -> dt.datetime | None:
    """An aware UTC datetime from ISO-8601 text; naive times are UTC, as W&B writes them."""
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.timezone.utc)
        return parsed.astimezone(dt.timezone.utc)
    except (ValueError, OverflowError):  # not a time, or one UTC cannot hold (year 1, +01:00)
        return None


def save_run_file(run: Any, path: Path) -> None:
    """Hand a file that lies inside the live run's files directory to W&B for upload."""
    run.save(str(path), base_path=run.dir, policy="now")


def unreadable_copy(path: Path, error: OSError) -> BadInput:
    """The one line for a run's copy that cannot be read (permissions, a name too long to look
    up): bad input, as for an unreadable record."""
    return BadInput(
        f"cannot read the run's copy {path}: {error.strerror or error}; make it and its folder "
        "readable by this user (or check as the user that ran the job)"
    )
