"""The subcommands that work on W&B runs: check, record, show, restore, digest, demo."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from resumeguard.cli._common import JsonOpt, RunIdOpt, emit_report, takes_options
from resumeguard.options import DEFAULT, Options


def _store_and_ref(run_id: str, options: Options) -> tuple[Any, Any]:
    from resumeguard.stores.choice import open_store
    from resumeguard.stores.interface import RunRef

    ref = RunRef.parse(run_id, project=options.project, entity=options.entity)
    wandb_dir = options.wandb_dir
    store = open_store(offline=options.offline, wandb_dir=str(wandb_dir) if wandb_dir else None)
    return store, ref


def _recorded(run_id: str, options: Options) -> tuple[Any, Any, Any, Any]:
    """Store, ref, stored run and its parsed record; Unverifiable when nothing is recorded."""
    from resumeguard.errors import Unverifiable
    from resumeguard.records.run import verified_record

    store, ref = _store_and_ref(run_id, options)
    stored = store.fetch(ref)
    record = verified_record(stored, source=f"record of run {ref}")
    if record is None:
        raise Unverifiable(
            f"run {ref} has no resumeguard record; "
            f"adopt it with `resumeguard record --run-id {ref}`"
        )
    return store, ref, stored, record


@takes_options(code=True, policy=True)
def check(
    run_id: Annotated[
        str | None,
        typer.Option("--run-id", help="The run: ID or ENTITY/PROJECT/ID.", show_default=False),
    ] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint",
            help="Instead of --run-id: a checkpoint file (or a framework's checkpoint folder); "
            "the record beside it names its run.",
            show_default=False,
        ),
    ] = None,
    options: Options = DEFAULT,
    allow_new: Annotated[
        bool,
        typer.Option(
            "--allow-new", help="A run that does not exist yet is a fresh start (exit 0), not 3."
        ),
    ] = False,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", help="Seconds per W&B API request (default 10).", min=0.1),
    ] = None,
    quick: Annotated[
        bool,
        typer.Option(
            "--quick",
            help="Compare the sizes (and modification times) of recorded checkpoint files "
            "and copies (a stat each) instead of reading every byte (online: without "
            "downloading the run's copies).",
        ),
    ] = False,
    world_size: Annotated[
        int | None,
        typer.Option(
            "--world-size", help="Processes the job will run (default: $WORLD_SIZE).", min=1
        ),
    ] = None,
    nproc_per_node: Annotated[
        int | None,
        typer.Option("--nproc-per-node", help="Processes per node (torchrun's).", min=1),
    ] = None,
    nnodes: Annotated[
        int | None,
        typer.Option("--nnodes", help="Nodes (default: $SLURM_JOB_NUM_NODES, else 1).", min=1),
    ] = None,
    as_json: JsonOpt = False,
) -> int:
    """Check that resuming the run now is the same experiment (0 ok, 1 blocked, 3 unverifiable).

    Predicts what the resume will refuse from outside the training process: code and
    dependencies, every recorded checkpoint file this host can reach (at its recorded path,
    the record beside it, the run's copy: every byte read; --quick: sizes and times), a
    checkpoint older than the last logged step (run.step) and a live copy (run.live). The
    world size is compared when the job's is known (--world-size, --nproc-per-node,
    WORLD_SIZE). Config, optimizer and model are checked when the script resumes; the report
    says so."""
    import dataclasses

    from resumeguard.decide.intent import ResumeIntent
    from resumeguard.decide.jobshape import job_shape
    from resumeguard.decide.pipeline import decide, unchecked_from_outside
    from resumeguard.decide.verified import log_verified
    from resumeguard.errors import BadInput, Unverifiable
    from resumeguard.stores.interface import RunRef
    from resumeguard.verdict.report import unverified

    intent = ResumeIntent(run_id=run_id, mode="allow" if allow_new else "must")
    if checkpoint is None and run_id is None:
        raise BadInput("give the run to check: --run-id ID, or --checkpoint PATH")
    if run_id is not None:
        # An empty --run-id (an unset $WANDB_RUN_ID in a job script) is bad input, never new.
        RunRef.parse(run_id, project=options.project, entity=options.entity)
    job = job_shape(world_size, nproc_per_node, nnodes)
    try:
        if checkpoint is not None:
            intent = _checkpoint_intent(checkpoint, run_id)
        result = decide(
            intent,
            dataclasses.replace(options, timeout=timeout),
            digests="stat" if quick else "full",
            claim=False,  # a prediction from outside: it looks at the claim, never takes it
            files=True,
            job=job,
        )
    except Unverifiable as e:
        if as_json:
            emit_report(unverified(run_id, str(e)), True)
            return e.exit_code
        raise
    report = result.report
    if not result.fresh:
        notes = unchecked_from_outside(result, "stat" if quick else "full")
        report = dataclasses.replace(report, unchecked=tuple(notes))
    code = emit_report(report, as_json)
    log_verified(result)
    return code


def _checkpoint_intent(path: Path, run_id: str | None) -> Any:
    """The run ``check --checkpoint PATH`` checks: the one the record beside the file names
    (BadInput with --run-id too, Unverifiable for a file of unknown origin)."""
    from resumeguard.decide.pipeline import checkpoint_intent, unknown_origin
    from resumeguard.errors import BadInput, Unverifiable

    if run_id is not None:
        raise BadInput("give --run-id or --checkpoint, not both (the checkpoint names its run)")
    if not path.exists():
        raise BadInput(f"no such checkpoint: {path}")
    intent = checkpoint_intent(path)
    if intent is None:
        raise Unverifiable(unknown_origin(path))
    if intent.run_id is None:
        raise Unverifiable(
            f"checkpoint {path} was saved without a W&B run: no run record to check a resume "
            "against (`resumeguard digest` shows its bytes' digest)"
        )
    return intent


@takes_options(code=True)
def record(
    run_id: RunIdOpt,
    options: Options = DEFAULT,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing record.")] = False,
) -> int:
    """Record this environment's fingerprint for an existing run that has none (adopt it)."""
    from resumeguard.errors import BadInput
    from resumeguard.records.fingerprint import take
    from resumeguard.records.run import new_record

    store, ref = _store_and_ref(run_id, options)
    stored = store.fetch(ref)
    if stored.state == "running":
        raise BadInput(
            f"run {ref} is running; adopt it once it has stopped (recording now could lose the "
            "live run's config updates)"
        )
    if stored.record is not None and not force:
        raise BadInput(
            f"run {ref} already has a resumeguard record; `resumeguard show --run-id {ref}` "
            "shows it (pass --force to replace it with this environment's)"
        )
    repo = options.repo
    fp = take(repo=repo, requirements=options.requirements, config=stored.config)
    from resumeguard.verdict import runpolicy

    rec = new_record(fp, runpolicy.to_keep(runpolicy.at_start(None, repo), repo))
    store.write_record(ref, rec.to_json(), rec.compact())
    sys.stdout.write(
        f"recorded run {ref}: commit {rec.compact()['commit'] or '(none)'}, "
        f"fingerprint {fp.digest()[:19]}...\n"
    )
    return 0


@takes_options()
def show(
    run_id: RunIdOpt,
    options: Options = DEFAULT,
    as_json: JsonOpt = False,
) -> int:
    """Show what is recorded for a run: fingerprint summary, the policy kept with it,
    checkpoints, resumes, and how much it stores in checkpoint copies."""
    from resumeguard.checkpoint.copies import stored as stored_copies

    _, ref, stored, rec = _recorded(run_id, options)
    storage = stored_copies(rec, stored.directories)
    if as_json:
        body = _shown(rec.to_json())
        body["storage"] = dataclasses.asdict(storage)
        sys.stdout.write(json.dumps(body, indent=2) + "\n")
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    compact = rec.compact()
    console.print(f"[bold]run {ref}[/] ({stored.location})")
    for key in ("commit", "dirty", "python", "torch", "cuda"):
        console.print(f"  {key}: {compact[key]}")
    console.print(f"  last step: {stored.last_step}, state: {stored.state}")
    console.print(f"  policy: {_kept_policy(rec.policy)}")
    table = Table(title="checkpoints", title_justify="left")
    for col in ("name", "step", "size", "digest", "copy", "saved"):
        table.add_column(col)
    for name, c in rec.checkpoints.items():
        copy = "none" if not c.file else "local" if c.local else "run file"
        if c.previous is not None:
            copy += " (save did not complete)"
        table.add_row(name, str(c.step), str(c.size), c.digest[:23] + "...", copy, c.saved_at)
    console.print(table)
    on_disk = "" if storage.on_disk is None else f", {_size(storage.on_disk)} on disk"
    console.print(
        f"  stores: {storage.copies} checkpoint copies, {_size(storage.bytes)} "
        f"({_size(storage.uploaded)} as run files){on_disk}"
    )
    console.print(f"  resumes: {len(rec.resumes)}")
    for entry in rec.resumes:
        outcome = entry.outcome or "not recorded (an older resumeguard)"
        reason = f": {entry.reason}" if entry.reason else ""
        console.print(
            f"    {entry.at} {entry.host} check {entry.verdict}, {outcome}{reason}; "
            f"allowed: {', '.join(entry.allowed) or '-'}",
            markup=False,
        )
    return 0


def _shown(record: dict[str, Any]) -> dict[str, Any]:
    """A run record as shown: credentials redacted, also where an older record holds them."""
    from resumeguard.redact import redact_tree, without_secret_keys

    fingerprint = record.get("fingerprint")
    if isinstance(fingerprint, dict) and isinstance(fingerprint.get("config"), dict):
        fingerprint = {**fingerprint, "config": without_secret_keys(fingerprint["config"])}
        record = {**record, "fingerprint": fingerprint}
    shown: dict[str, Any] = redact_tree(record)
    return shown


def _kept_policy(kept: dict[str, Any] | None) -> str:
    """The policy kept with a run, in one line (what judges its resumes)."""
    if kept is None:
        return "none kept (recorded before policies were kept: the repository's judges)"
    from resumeguard.errors import BadInput
    from resumeguard.verdict.policy import Policy

    try:
        return Policy.from_kept(kept).describe()
    except BadInput as e:
        return str(e)


def _size(nbytes: int) -> str:
    """Bytes, readable: "0 B", "12.3 MiB"."""
    value = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{nbytes} B"


@takes_options()
def restore(
    run_id: RunIdOpt,
    name: Annotated[str, typer.Argument(help="The checkpoint name as saved.")],
    dest: Annotated[
        Path | None,
        typer.Option(
            "--dest",
            help="Directory to restore into (default: where the checkpoint was saved).",
            show_default=False,
        ),
    ] = None,
    options: Options = DEFAULT,
    rank: Annotated[
        int, typer.Option("--rank", help="The shard of a per-rank checkpoint.", min=0)
    ] = 0,
) -> int:
    """Fetch a recorded checkpoint, verify its digest, and write it back where it was saved (or
    into --dest). An intact file there is left alone; a damaged copy (a flipped byte, a truncated
    file) is replaced, said loudly, and kept beside it; anything else there is never touched."""
    import tempfile

    from resumeguard.api.restore import lookup
    from resumeguard.checkpoint import verify_file
    from resumeguard.errors import BadInput, CheckpointError
    from resumeguard.io.hashing import digest_file

    store, ref, _, rec = _recorded(run_id, options)
    checkpoint = lookup(rec, name, run_label=str(ref))
    if checkpoint.shards:
        if not 0 <= rank < len(checkpoint.shards):
            raise BadInput(f"{name} has shards for ranks 0-{len(checkpoint.shards) - 1}")
        checkpoint = checkpoint.shards[rank]
    elif rank != 0:
        raise BadInput(f"{name} was saved by one process: it has no shard for rank {rank}")
    if dest is not None:
        folder, target = dest, dest / Path(checkpoint.file or checkpoint.source).name
    elif checkpoint.source:
        target = Path(checkpoint.source)
        folder = target.parent
    else:
        raise BadInput(f"the record of {name} does not say where it was saved: pass --dest DIR")
    if folder.exists() and not folder.is_dir():
        raise BadInput(f"{folder} is not a directory; pass a directory to restore into (--dest)")
    if target.is_symlink() or (target.exists() and not target.is_file()):
        raise BadInput(
            f"{target} is a link or not a regular file; nothing is written through it: move it "
            "away or pass another --dest"
        )

    def verify(path: Path) -> None:
        verify_file(path, checkpoint, name=name)

    what = f"{name} (step {checkpoint.step}, {checkpoint.size} bytes, digest verified)"
    damage = ""
    if target.exists():
        try:
            verify(target)
        except CheckpointError:
            found, size = digest_file(target)
            damage = (
                f"{size} bytes, {found[:19]}...; recorded {checkpoint.size} bytes, "
                f"{checkpoint.digest[:19]}..."
            )
        else:
            restored = "" if dest else _put_record_beside(store, ref, name, checkpoint, target)
            sys.stdout.write(f"{target} already holds {what}: {restored or 'nothing written'}\n")
            return 0
    with tempfile.TemporaryDirectory(prefix="resumeguard-") as tmp:
        path = _fetch_copy(store, ref, checkpoint, name, Path(tmp))
        verify(path)
        if damage and not _damaged_copy(target, path):
            raise BadInput(
                f"{target} holds another file ({target.stat().st_size} bytes, not a copy of "
                f"{name}); nothing is overwritten: move it away or pass --dest"
            )
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if damage:
                kept = _replace_damaged(path, target, verify)
            else:
                _write_new(path, target, verify)
        except FileExistsError:
            raise BadInput(
                f"{target} appeared while restoring; pass another --dest (nothing is overwritten)"
            ) from None
        except OSError as e:
            raise BadInput(f"cannot write to {folder}: {e.strerror or e}") from None
    if damage:
        sys.stderr.write(
            f"resumeguard: WARNING: {target} does not match its record ({damage}): it was "
            f"damaged, and was REPLACED by the run's verified copy; the damaged file is kept as "
            f"{kept}\n"
        )
    if dest is None:  # --dest writes its one new file and nothing else
        _put_record_beside(store, ref, name, checkpoint, target)
    sys.stdout.write(f"restored {what} to {target}\n")
    return 0


def _put_record_beside(store: Any, ref: Any, name: str, checkpoint: Any, target: Path) -> str:
    """Write the record beside a restored (or intact) ``target`` when it is gone or names other
    bytes, so that a resume from the path finds its run; says so, or "" when it was right."""
    from resumeguard.checkpoint.beside import CheckpointOrigin, read_beside, write_beside
    from resumeguard.errors import BadInput

    try:
        found = read_beside(target)
    except BadInput:
        found = None
    if found is not None and found.checkpoint.digest == checkpoint.digest:
        return ""
    offline = store.name == "offline"
    origin = CheckpointOrigin(
        name=name,
        checkpoint=checkpoint,
        run=ref,
        offline=offline,
        wandb_dir=str(store.base) if offline else None,
    )
    write_beside(target, origin)
    return "its record beside it written back"


def _fetch_copy(store: Any, ref: Any, checkpoint: Any, name: str, tmp: Path) -> Path:
    """Where the recorded bytes can be read: the run's copy (downloaded when it is a run file
    elsewhere), else, when no copy is kept, the file it was saved to."""
    from resumeguard.errors import BadInput

    if checkpoint.file and not checkpoint.local:
        return Path(store.fetch_file(ref, checkpoint.file, tmp))
    if checkpoint.file:
        found = store.local_file(ref, checkpoint.file, local=True)
        if found is not None:
            return Path(found)
        raise BadInput(
            f"the copy of {name} was kept on the machine that saved it (not uploaded); restore "
            "it there, or save with storage 'latest+upload'"
        )
    if checkpoint.source and Path(checkpoint.source).is_file():
        return Path(checkpoint.source)
    raise BadInput(
        f"the run keeps no copy of {name} (storage 'digest' or 'auto') and its file "
        f"{checkpoint.source or '?'} is not on this machine; check it where it is with "
        "`resumeguard digest`"
    )


def _damaged_copy(found: Path, verified: Path) -> bool:
    """True when ``found`` looks like a damaged copy of the ``verified`` bytes: the same size
    (bytes flipped in place) or a prefix of them (truncated). Any other file is someone's own."""
    size, full = found.stat().st_size, verified.stat().st_size
    if size == full:
        return True
    if size > full:
        return False
    with open(found, "rb") as a, open(verified, "rb") as b:
        while chunk := a.read(8 << 20):
            if chunk != b.read(len(chunk)):
                return False
    return True


def _replace_damaged(source: Path, target: Path, verify: Callable[[Path], None]) -> Path:
    """Keep the damaged ``target`` as ``<target>.corrupt-<time>`` (a hard link, else a copy),
    then put a verified copy of ``source`` in its place atomically; returns the kept path."""
    from resumeguard.records.run import now

    stamp = now().replace(":", "").replace("-", "").replace("+0000", "Z")
    from resumeguard.checkpoint.findings import CORRUPT

    kept = target.with_name(f"{target.name}{CORRUPT}{stamp}")
    try:
        os.link(target, kept)
    except FileExistsError:
        raise
    except OSError:
        _write_new(target, kept, lambda p: None)
    with _verified_partial(source, target, verify) as partial:
        os.replace(partial, target)
    return kept


def _write_new(source: Path, target: Path, verify: Callable[[Path], None]) -> None:
    """Copy ``source`` to ``target``, which must not exist, inside ``target``'s folder only:
    the bytes go to a new temp file there (created exclusively, so a planted link is never
    followed), are verified, then get ``target``'s name by a hard link, which never replaces
    anything (FileExistsError when something, a dangling link included, is there)."""
    with _verified_partial(source, target, verify) as partial:
        try:
            os.link(partial, target)
        except FileExistsError:
            raise
        except OSError:  # no hard links on this filesystem: a rename, after one more look
            if target.exists() or target.is_symlink():
                raise FileExistsError(target) from None
            os.rename(partial, target)


@contextlib.contextmanager
def _verified_partial(source: Path, target: Path, verify: Callable[[Path], None]) -> Iterator[Path]:
    """A verified copy of ``source`` in a new temp file beside ``target`` (created exclusively,
    so a planted link is never followed), removed after the block unless it was renamed."""
    import tempfile

    from resumeguard.io import atomic

    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    partial = Path(name)
    try:
        os.close(fd)
        atomic.clone_or_copy(source, partial)  # a reflink where possible, fsynced
        verify(partial)
        yield partial
    finally:
        partial.unlink(missing_ok=True)


def digest(
    file: Annotated[Path, typer.Argument(help="A checkpoint file.")], as_json: JsonOpt = False
) -> int:
    """Print the digest resumeguard records for a checkpoint file."""
    from resumeguard.errors import BadInput
    from resumeguard.io.hashing import digest_file

    if not file.is_file():
        raise BadInput(f"no such file: {file}")
    value, size = digest_file(file)
    if as_json:
        sys.stdout.write(json.dumps({"file": str(file), "digest": value, "size": size}) + "\n")
    else:
        sys.stdout.write(f"{value}  {size}  {file}\n")
    return 0


def demo(
    keep: Annotated[bool, typer.Option("--keep", help="Keep the demo folder afterwards.")] = False,
) -> int:
    """A guided end-to-end run in a temporary folder, offline, no account needed."""
    from resumeguard.cli.demo import run_demo

    return run_demo(keep=keep)


COMMANDS = (check, record, show, restore, digest, demo)
