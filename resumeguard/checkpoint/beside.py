"""The record beside a checkpoint file (``.<name>.resumeguard.json``): its digest, and the run
it belongs to, so the file can be verified without W&B and a resume from a path finds its run."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from resumeguard.errors import BadInput
from resumeguard.io import atomic
from resumeguard.records.run import CheckpointRecord
from resumeguard.stores.interface import RunRef

SUFFIX = ".resumeguard.json"
SCHEMA = 1


@dataclasses.dataclass(frozen=True)
class CheckpointOrigin:
    """What the record beside a checkpoint file says about it."""

    name: str
    """The checkpoint's name in its run's record."""
    checkpoint: CheckpointRecord
    """Its digest, size, step and fingerprints (with ``previous`` while a save is under way)."""
    run: RunRef | None
    """The W&B run it was saved in; None when it was saved without one."""
    offline: bool = False
    """The run is an offline run, read from ``wandb_dir``."""
    wandb_dir: str | None = None
    """The offline run's W&B directory (what ``--wandb-dir`` takes)."""


def beside(path: Path) -> Path:
    """Where the record of checkpoint file ``path`` lies."""
    return path.with_name(f".{path.name}{SUFFIX}")


def is_beside_file(path: str) -> bool:
    """True for the name of a record beside a checkpoint."""
    return Path(path).name.startswith(".") and path.endswith(SUFFIX)


def write_beside(path: Path, origin: CheckpointOrigin) -> None:
    """Write the record beside ``path`` atomically."""
    run = origin.run
    atomic.write_json(
        beside(path),
        {
            "schema": SCHEMA,
            "name": origin.name,
            "run": None
            if run is None
            else {"id": run.id, "project": run.project, "entity": run.entity},
            "offline": origin.offline,
            "wandb_dir": origin.wandb_dir,
            "checkpoint": origin.checkpoint.to_json(),
        },
    )


def read_beside(path: Path) -> CheckpointOrigin | None:
    """The record beside checkpoint file ``path``; None when it has none, BadInput when it is
    not one resumeguard wrote."""
    where = beside(path)
    try:
        data = json.loads(where.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise BadInput(f"{where} is not a readable resumeguard record ({e}); delete it") from e
    try:
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise TypeError("unknown schema")
        run: Any = data.get("run")
        ref = None
        if run is not None:
            ref = RunRef(str(run["id"]), _opt(run.get("project")), _opt(run.get("entity")))
        return CheckpointOrigin(
            name=str(data["name"]),
            checkpoint=CheckpointRecord.from_json(data["checkpoint"]),
            run=ref,
            offline=bool(data.get("offline", False)),
            wandb_dir=_opt(data.get("wandb_dir")),
        )
    except (TypeError, KeyError, ValueError) as e:
        raise BadInput(f"{where} is not a valid resumeguard record ({e}); delete it") from e


def _opt(value: Any) -> str | None:
    return None if value is None else str(value)


def checkpoint_origin(path: str | Path) -> CheckpointOrigin | None:
    """The run a checkpoint file (or a framework's checkpoint directory) belongs to, from the
    record resumeguard left beside it; None when there is none."""
    p = Path(path)
    if p.is_dir():
        for record in sorted(p.rglob(f".*{SUFFIX}")):
            target = record.with_name(record.name[1 : -len(SUFFIX)])
            found = read_beside(target)
            if found is not None:
                return found
        return None
    found = read_beside(p)
    if found is None and p.is_symlink():  # Lightning's last.ckpt names the file it points to
        found = read_beside(p.resolve())
    return found


def origin_of_run(run: Any, name: str, checkpoint: CheckpointRecord) -> CheckpointOrigin:
    """The origin of ``checkpoint`` saved in live run ``run`` (None: saved without a run)."""
    if run is None:
        return CheckpointOrigin(name=name, checkpoint=checkpoint, run=None)
    offline = bool(getattr(run, "offline", False))
    settings = getattr(run, "settings", None)
    root = getattr(settings, "root_dir", None) if offline else None
    ref = RunRef(str(run.id), getattr(run, "project", None), getattr(run, "entity", None))
    return CheckpointOrigin(
        name=name,
        checkpoint=checkpoint,
        run=ref,
        offline=offline,
        wandb_dir=str(root) if root else None,
    )
