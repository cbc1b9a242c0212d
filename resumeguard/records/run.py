"""What resumeguard keeps in a W&B run: the full record (run file ``resumeguard.json``) and its
compact mirror in ``run.config["resumeguard"]`` (a few keys, so the runs table stays readable)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import socket
from collections.abc import Mapping
from typing import Any

from resumeguard.collect.code import CodeRecord
from resumeguard.collect.components import Components
from resumeguard.collect.deps import DepsRecord
from resumeguard.collect.optimizer import ModelRecord, OptimizerRecord
from resumeguard.collect.record import Record, Unavailable
from resumeguard.errors import BadInput, Unverifiable
from resumeguard.io import bounded
from resumeguard.io.disks import Disk
from resumeguard.io.hashing import digest_json
from resumeguard.records.fingerprint import NOT_GIVEN, SCHEMA, Fingerprint, check_schema
from resumeguard.records.fingerprint import from_json as fingerprint_from_json
from resumeguard.stores.interface import StoredRun
from resumeguard.stores.layout import CONFIG_KEY, RECORD_FILE

CHECKPOINT_DIR = "resumeguard/checkpoints"
"""Where checkpoint copies live inside the run's files directory."""

WANDB_STEP = "_step"
"""W&B's own step, which counts ``wandb.log`` calls: the one the run's last logged step is."""


def run_copy_name(name: str, rank: int | None = None, tag: str = "") -> str:
    """Where the run keeps its copy of checkpoint ``name`` (relative to its files directory):
    the whole name, not the file name alone, so ``a/ckpt.pt`` and ``b/ckpt.pt`` (or a Trainer's
    ``checkpoint-2/config.json`` and ``checkpoint-4/config.json``) never share a copy, in a
    folder ``tag`` (the save's digest) so that a new save never overwrites the previous copy."""
    safe = name.replace("{rank}", str(rank or 0)).lstrip("/").replace("..", "__")
    folder = "/".join(p for p in (tag, f"rank{rank}" if rank is not None else "") if p)
    return f"{CHECKPOINT_DIR}/{folder}/{safe}" if folder else f"{CHECKPOINT_DIR}/{safe}"


@dataclasses.dataclass(frozen=True)
class DirFile(Record):
    """One file of a checkpoint directory (a torch.distributed.checkpoint save)."""

    kind = "file"

    name: str
    """Its path relative to the directory (``__0_0.distcp``, ``.metadata``)."""
    digest: str
    """blake3 digest of its bytes as written."""
    size: int
    """Its size in bytes as written."""
    rank: int
    """The rank that wrote it (``.metadata``: the coordinator's)."""

    def __post_init__(self) -> None:
        """Refuse a name that climbs out of the directory, a negative size or rank."""
        parts = self.name.replace("\\", "/").split("/")
        if not self.name or "\0" in self.name or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"file {self.name[:80]!r} is not inside the checkpoint directory")
        if self.size < 0 or self.rank < 0:
            raise ValueError(f"file {self.name[:80]!r}: negative size or rank")


HISTORY = 32
"""How many earlier saves of a checkpoint name its record keeps (digest, size, step, time)."""


@dataclasses.dataclass(frozen=True)
class SaveEntry(Record):
    """An earlier save of a checkpoint name: enough to recognise its bytes."""

    kind = "save"

    digest: str
    """blake3 digest of the bytes that save wrote."""
    size: int
    """Their size in bytes."""
    step: int | None = None
    """The step it was taken at."""
    step_counter: str = WANDB_STEP
    """What ``step`` counts (see :attr:`CheckpointRecord.step_counter`)."""
    saved_at: str = ""
    """ISO time of that save."""


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
    step_counter: str = WANDB_STEP
    """What ``step`` counts: W&B's own step (:data:`WANDB_STEP`, also in records made before
    this was kept), compared with the run's last logged step, or another counter (the metric a
    framework logs its global step as), which is not."""
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
    local: bool = False
    """The copy (``file``) lies beside the run's files, on the machine that saved it, and is
    never uploaded (``resumeguard-local/`` in the run directory) rather than among them."""
    previous: CheckpointRecord | None = None
    """While a save of this name is under way (or was killed midway): the save before it,
    whose bytes stay restorable until this one is complete."""
    components: Components | None = None
    """What the state holds (model, optimizer, schedulers with their step, scalers with their
    scale, RNG states, data position) and where; None in a record from before it was kept."""
    files: tuple[DirFile, ...] = ()
    """A checkpoint directory's files (schema 3), every one with its digest, size and rank;
    then ``digest`` is the digest of this listing and ``size`` their total. Empty for a file."""
    host: str = ""
    """The host that wrote ``source`` ("" in records made before hosts were kept)."""
    disk: Disk = ""
    """Whether ``source`` lies on that host's own disk ("local") or on a filesystem the nodes
    share ("shared"); "" when not known."""
    mtime_ns: int | None = None
    """``source``'s modification time as saved, in nanoseconds (``--quick`` compares it)."""
    history: tuple[SaveEntry, ...] = ()
    """The earlier saves of this name, newest first (at most :data:`HISTORY`; schema 3):
    a file holding one of them is that save, not a damaged file."""

    def __post_init__(self) -> None:
        """Refuse what no save writes: a copy outside the run's checkpoint folder, a negative
        size, step or rank (records are read from run directories others can edit)."""
        if self.file and not is_run_copy_name(self.file):
            raise ValueError(f"file {self.file[:80]!r} is not inside {CHECKPOINT_DIR}/ of the run")
        for what, value in (("size", self.size), ("step", self.step), ("rank", self.rank)):
            if value is not None and value < 0:
                raise ValueError(f"{what} {value} is negative")
        if not self.step_counter:
            raise ValueError("step_counter is empty")

    def as_entry(self) -> SaveEntry:
        """This save, as a later save's history keeps it."""
        return SaveEntry(self.digest, self.size, self.step, self.step_counter, self.saved_at)

    def as_save(self, entry: SaveEntry, source: str | None = None) -> CheckpointRecord:
        """The record of the earlier save ``entry`` of this name (its bytes at ``source``,
        else where this one was saved; no copy of it is kept)."""
        return dataclasses.replace(
            self,
            file="",
            local=False,
            digest=entry.digest,
            size=entry.size,
            step=entry.step,
            step_counter=entry.step_counter,
            saved_at=entry.saved_at,
            source=self.source if source is None else source,
            shards=(),
            previous=None,
            history=(),
            mtime_ns=None,
        )

    def placed(self, path: str | os.PathLike[str]) -> CheckpointRecord:
        """This record with where ``path`` (the file just written, or its temp file beside it)
        lies: this host, its disk kind and its modification time."""
        from resumeguard.io.disks import disk_of, this_host

        try:
            mtime: int | None = os.stat(path).st_mtime_ns
        except OSError:
            mtime = None
        return dataclasses.replace(self, host=this_host(), disk=disk_of(path), mtime_ns=mtime)


def older_save(latest: CheckpointRecord, older: CheckpointRecord) -> str:
    """ "the save at step 3 of <time>, older than the latest (step 5)"."""
    return (
        f"the save at step {older.step} of {older.saved_at or 'an unknown time'}, older than "
        f"the latest (step {latest.step})"
    )


def is_run_copy_name(name: str) -> bool:
    """True for a relative path below :data:`CHECKPOINT_DIR` that cannot climb out of it."""
    parts = name.replace("\\", "/").split("/")
    return (
        name.startswith(CHECKPOINT_DIR + "/")
        and "\0" not in name
        and all(part not in ("", ".", "..") for part in parts)
    )


@dataclasses.dataclass(frozen=True)
class ResumeEntry(Record):
    """One resume that passed its check: the audit trail kept in the run."""

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
    outcome: str = ""
    """"pending" until the resume went ahead ("resumed": its checkpoint restored, a checkpoint
    saved, or the run finished) or a later check refused it ("refused": a checkpoint that is not
    the recorded one, or does not fit); "" in records made before outcomes were kept."""
    reason: str = ""
    """Why a refused resume was refused."""


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
    policy: dict[str, Any] | None = None
    """The policy in force when the run was recorded (see
    :mod:`resumeguard.verdict.runpolicy`); None in records from before policies were kept."""

    def with_checkpoint(self, name: str, checkpoint: CheckpointRecord) -> RunRecord:
        """This record with ``name`` (re)recorded; a new save of it keeps the one it replaces
        in its history (the same save recorded again, say once complete, keeps the history)."""
        old = self.checkpoints.get(name)
        if old is not None and not checkpoint.shards:
            if old.digest == checkpoint.digest:
                history = checkpoint.history or old.history
            else:
                history = (old.as_entry(), *old.history)
            kept = tuple(h for h in history if h.digest != checkpoint.digest)[:HISTORY]
            checkpoint = dataclasses.replace(checkpoint, history=kept)
        return dataclasses.replace(self, checkpoints={**self.checkpoints, name: checkpoint})

    def save_of(self, digest: str, size: int) -> tuple[str, CheckpointRecord] | None:
        """The recorded save (the latest of a name, or one in its history) whose bytes have
        ``digest``: its name and record. None when no save of this run wrote them."""
        for name, checkpoint in sorted(self.checkpoints.items()):
            if checkpoint.shards or checkpoint.files:
                continue
            if (checkpoint.digest, checkpoint.size) == (digest, size):
                return name, checkpoint
            for entry in checkpoint.history:
                if (entry.digest, entry.size) == (digest, size):
                    return name, checkpoint.as_save(entry)
        return None

    def with_resume(self, entry: ResumeEntry) -> RunRecord:
        """This record with one more resume in the audit trail."""
        return dataclasses.replace(self, resumes=(*self.resumes, entry))

    def with_outcome(self, outcome: str, reason: str = "") -> RunRecord:
        """This record with the last resume's outcome settled."""
        last = dataclasses.replace(self.resumes[-1], outcome=outcome, reason=reason)
        return dataclasses.replace(self, resumes=(*self.resumes[:-1], last))

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


def new_record(fingerprint: Fingerprint, policy: dict[str, Any] | None = None) -> RunRecord:
    """The record of a run that starts now, with the policy in force."""
    return RunRecord(fingerprint=fingerprint, policy=policy)


def record_from_json(data: Any, *, source: str = RECORD_FILE) -> RunRecord:
    """Read a run record (or a bare fingerprint, for records adopted by hand), validated field
    by field; BadInput with one line naming the first bad field."""
    if not isinstance(data, dict):
        raise BadInput(f"{source}: not a resumeguard record (expected a JSON object)")
    try:
        bounded.check_tree(data)
    except ValueError as e:
        raise BadInput(f"{source}: malformed record ({e})") from None
    if "fingerprint" in data:
        check_schema(data.get("schema", SCHEMA), f"{source}: record")
    fp = fingerprint_from_json(data.get("fingerprint", data), source=source)
    body = {key: data[key] for key in ("checkpoints", "resumes", "policy") if key in data}
    try:
        return RunRecord.from_json({**body, "fingerprint": fp.to_json()})
    except ValueError as e:
        raise BadInput(f"{source}: malformed record ({e})") from None


def verified_record(stored: StoredRun, *, source: str) -> RunRecord | None:
    """A stored run's record, validated, and the very one its config names by digest (or the
    one before it, which a process killed while publishing leaves); None when it has none.

    The digest in ``config["resumeguard"]`` is what makes a replaced ``resumeguard.json`` (say,
    another run's record with its checkpoint digests edited to match swapped copies) show: a
    record that does not match it cannot be trusted, so the resume is unverifiable."""
    if stored.record is None:
        return None
    record = record_from_json(stored.record, source=source)
    compact = stored.config.get(CONFIG_KEY)
    compact = compact if isinstance(compact, Mapping) else {}
    named = {compact.get("record_digest"), compact.get("previous_record_digest")} - {None}
    if not named:
        raise Unverifiable(
            f"{source} cannot be verified: the run config has no {CONFIG_KEY}.record_digest "
            "to check it against; adopt the run again with `resumeguard record --force`"
        )
    if digest_json(stored.record) not in named:
        raise Unverifiable(
            f"{source} is not the record the run config names (record_digest "
            f"{str(compact.get('record_digest'))[:19]}...): it was replaced or edited; restore "
            "the original, or adopt the run again with `resumeguard record --force`"
        )
    return record


def now() -> str:
    """The current time, ISO 8601 in UTC."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def resume_entry(fp: Fingerprint, verdict: str, allowed: list[str], policy: str) -> ResumeEntry:
    """The audit entry for a resume that passed its check now (pending until it goes ahead)."""
    code = fp.code
    return ResumeEntry(
        at=now(),
        host=socket.gethostname(),
        pid=os.getpid(),
        commit=code.commit if isinstance(code, CodeRecord) else None,
        verdict=verdict,
        allowed=tuple(allowed),
        policy=policy,
        outcome="pending",
    )
