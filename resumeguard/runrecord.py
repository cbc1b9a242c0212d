"""What resumeguard keeps in a W&B run: the full record (run file ``resumeguard.json``) and its
compact mirror in ``run.config["resumeguard"]`` (a few keys, so the runs table stays readable)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import socket
from typing import Any

from resumeguard.collect.code import CodeRecord
from resumeguard.collect.deps import DepsRecord
from resumeguard.collect.optimizer import ModelRecord, OptimizerRecord
from resumeguard.errors import BadInput
from resumeguard.fingerprint import NOT_GIVEN, SCHEMA, Fingerprint
from resumeguard.fingerprint import from_json as fingerprint_from_json
from resumeguard.hashing import digest_json
from resumeguard.record import Record, Unavailable
from resumeguard.stores.layout import RECORD_FILE

CHECKPOINT_DIR = "resumeguard/checkpoints"
"""Where checkpoint copies live inside the run's files directory."""


def run_copy_name(name: str, rank: int | None = None) -> str:
    """Where the run keeps its copy of checkpoint ``name`` (relative to its files directory):
    the whole name, not the file name alone, so ``a/ckpt.pt`` and ``b/ckpt.pt`` (or a Trainer's
    ``checkpoint-2/config.json`` and ``checkpoint-4/config.json``) never share a copy."""
    safe = name.replace("{rank}", str(rank or 0)).lstrip("/").replace("..", "__")
    return f"{CHECKPOINT_DIR}/{safe}" if rank is None else f"{CHECKPOINT_DIR}/rank{rank}/{safe}"


@dataclasses.dataclass(frozen=True)
class CheckpointRecord(Record):
    """A saved checkpoint: the bytes that were saved, and what its state must fit."""

    kind = "checkpoint"

    file: str
    """Path of the run's copy, relative to the run's files directory."""
    digest: str
    """blake3 digest of the file's bytes as saved."""
    size: int
    """Size in bytes as saved (a shorter file is truncated)."""
    step: int | None = None
    """Training step the checkpoint was taken at."""
    saved_at: str = ""
    """ISO time of the save."""
    source: str = ""
    """Where the user's own copy was written."""
    optimizer: OptimizerRecord | Unavailable = NOT_GIVEN
    """The optimizer state's fingerprint (its state digest identifies these exact moments)."""
    model: ModelRecord | Unavailable = NOT_GIVEN
    """The model's parameter names, shapes and dtypes."""
    rank: int | None = None
    """The torch.distributed rank that wrote this file; None outside a distributed world."""
    shards: tuple[CheckpointRecord, ...] = ()
    """Every rank's shard (this record is rank 0's), when each rank saved its own file."""


@dataclasses.dataclass(frozen=True)
class ResumeEntry(Record):
    """One resume that went ahead: the audit trail kept in the run."""

    kind = "resume"

    at: str
    """ISO time of the check."""
    host: str
    """Host name of the resuming process."""
    pid: int
    """Its process id."""
    commit: str | None
    """The commit it resumed with."""
    verdict: str
    """ok or warn (a blocked resume never reaches the run)."""
    allowed: tuple[str, ...] = ()
    """Paths that differed and were allowed (warn or info)."""
    policy: str = ""
    """The policy preset in force."""


@dataclasses.dataclass(frozen=True)
class RunRecord(Record):
    """The full record of a guarded run."""

    kind = "run record"

    fingerprint: Fingerprint
    """The fingerprint taken when the run started."""
    checkpoints: dict[str, CheckpointRecord] = dataclasses.field(default_factory=dict)
    """Checkpoint name -> its record; the newest save of a name wins."""
    resumes: tuple[ResumeEntry, ...] = ()
    """Every resume that went ahead, oldest first."""
    schema: int = SCHEMA
    """Schema version."""

    def with_checkpoint(self, name: str, checkpoint: CheckpointRecord) -> RunRecord:
        """This record with ``name`` (re)recorded."""
        return dataclasses.replace(self, checkpoints={**self.checkpoints, name: checkpoint})

    def with_resume(self, entry: ResumeEntry) -> RunRecord:
        """This record with one more resume in the audit trail."""
        return dataclasses.replace(self, resumes=(*self.resumes, entry))

    def digest(self) -> str:
        """Digest of the whole record, kept in the compact config to verify the run file."""
        return digest_json(self.to_json())

    def compact(self) -> dict[str, Any]:
        """The few keys mirrored into ``run.config["resumeguard"]``."""
        fp = self.fingerprint
        code, deps = fp.code, fp.deps
        return {
            "schema": self.schema,
            "record_digest": self.digest(),
            "fingerprint_digest": fp.digest(),
            "commit": code.commit if isinstance(code, CodeRecord) else None,
            "dirty": bool(code.diff_digest) if isinstance(code, CodeRecord) else None,
            "python": deps.python if isinstance(deps, DepsRecord) else None,
            "torch": deps.torch if isinstance(deps, DepsRecord) else None,
            "cuda": deps.cuda if isinstance(deps, DepsRecord) else None,
            "requirements_digest": digest_json(deps.requirements)
            if isinstance(deps, DepsRecord)
            else None,
            "installed_digest": digest_json(deps.installed)
            if isinstance(deps, DepsRecord)
            else None,
            "checkpoints": {
                name: {"digest": c.digest, "size": c.size, "step": c.step}
                for name, c in self.checkpoints.items()
            },
            "resumes": len(self.resumes),
        }


def new_record(fingerprint: Fingerprint) -> RunRecord:
    """The record of a run that starts now."""
    return RunRecord(fingerprint=fingerprint)


def record_from_json(data: Any, *, source: str = RECORD_FILE) -> RunRecord:
    """Read a run record (or a bare fingerprint, for records adopted by hand)."""
    if not isinstance(data, dict):
        raise BadInput(f"{source}: not a resumeguard record (expected a JSON object)")
    fp = fingerprint_from_json(data.get("fingerprint", data), source=source)
    try:
        checkpoints = {
            str(k): CheckpointRecord.from_json(v) for k, v in data.get("checkpoints", {}).items()
        }
        resumes = tuple(ResumeEntry.from_json(r) for r in data.get("resumes", []))
    except (TypeError, KeyError) as e:
        raise BadInput(f"{source}: malformed checkpoint or resume entry ({e})") from e
    return RunRecord(fingerprint=fp, checkpoints=checkpoints, resumes=resumes)


def now() -> str:
    """The current time, ISO 8601 in UTC."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def resume_entry(fp: Fingerprint, verdict: str, allowed: list[str], policy: str) -> ResumeEntry:
    """The audit entry for a resume that goes ahead now."""
    code = fp.code
    return ResumeEntry(
        at=now(),
        host=socket.gethostname(),
        pid=os.getpid(),
        commit=code.commit if isinstance(code, CodeRecord) else None,
        verdict=verdict,
        allowed=tuple(allowed),
        policy=policy,
    )
