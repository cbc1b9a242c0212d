"""Framework integrations, installed as extras: ``resumeguard[lightning]`` and
``resumeguard[transformers]``.

Each integration only decides *when* to act, from its framework's hooks (see
:mod:`resumeguard.integrations.lightning` and :mod:`resumeguard.integrations.transformers`).
:class:`FrameworkGuard` here decides *what*: check a resume against the run's record, make sure
the W&B run the framework started carries a record, and record and verify the framework's own
checkpoint files. Nothing here imports a framework; torch and wandb load only when used.

May import: :mod:`resumeguard.api` and every stage below it; imported by the launcher and
the CLI.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from resumeguard.api.entry import end_if_launched, exit_with
from resumeguard.collect.components import Components
from resumeguard.decide.intent import ResumeCheck, ResumeIntent
from resumeguard.decide.pipeline import (
    check_checkpoint_run,
    check_live_run,
    checkpoint_intent,
    decide,
    ensure_recorded,
    raise_if_blocked,
    unknown_origin,
)
from resumeguard.decide.runfiles import settle
from resumeguard.errors import CheckpointError, ResumeBlocked, ResumeGuardError
from resumeguard.options import DEFAULT, Options
from resumeguard.records.run import CheckpointRecord, RunRecord, now
from resumeguard.verdict.policy import Rule

__all__ = ["FrameworkGuard", "ResumeCheck", "checkpoint_name", "run_label"]

log = logging.getLogger("resumeguard")


def checkpoint_name(path: str | os.PathLike[str]) -> str:
    """The record name of a framework's checkpoint file: its path relative to the current
    directory when it lies below it (as ``save_checkpoint`` names the user's files), else its
    absolute path."""
    absolute = Path(os.path.abspath(path))
    try:
        return absolute.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return absolute.as_posix()


@dataclasses.dataclass
class FrameworkGuard:
    """The integrations' shared engine: one per callback, holding its options and its check."""

    options: Options = DEFAULT
    """What the callback was given: policy, repository, requirements, storage."""
    raise_on_block: bool = True
    """Raise the error (True), or print it and exit with its status like ``@guard`` (False)."""
    keep_copies: bool = True
    """False: keep no copies, whatever ``storage`` says (digests only)."""
    checked: ResumeCheck | None = None
    """The allowed resume, once checked."""

    # --- resume check -------------------------------------------------------------------------

    def check(
        self,
        intent: ResumeIntent,
        *,
        run: Any = None,
        project: str | None = None,
        entity: str | None = None,
        facts: Mapping[str, Any] | None = None,
        rules: Sequence[Rule] = (),
    ) -> None:
        """Check a resume against the run's record; ResumeBlocked or Unverifiable when it must
        not go on. ``run`` is the W&B run when the framework has started it already (then a run
        with data from before this process is a resume, whatever the mode); ``facts`` are what
        the framework knows of the run's configuration, ``rules`` its preset-level rules (added to
        :attr:`policy` once it is resolved: the repository's preset never judges a resume)."""
        from resumeguard.decide import runfiles

        if run is not None:
            if runfiles.current_record(run) is not None:
                return  # resumeguard.init, @guard or an earlier fit of this process guards it
            # The frameworks log their own step metric (trainer/global_step, train/global_step)
            # while W&B's step counts log calls: their checkpoints' steps (recorded as that
            # counter, which run.step in `resumeguard check` skips too) are not comparable.
            check = check_live_run(
                run,
                self.options,
                mode=intent.mode,
                preset_rules=rules,
                facts=facts,
                include_step=False,
            )
        elif intent.run_id:
            check = decide(
                intent,
                self.options.where(project=project, entity=entity),
                preset_rules=rules,
                facts=facts,
                include_step=False,
                digests="stat",
            )
        else:
            return
        if check.fresh:
            return
        raise_if_blocked(check)
        self.checked = check

    def check_checkpoint(self, path: Path, run: Any = None) -> RunRecord | None:
        """A resume from checkpoint ``path`` that no run check covered (a new W&B run, or none):
        check it against the run the checkpoint was saved in, found from the record beside it,
        and return that run's record. None when there is nothing to check against (a
        checkpoint of unknown origin gets one warning line)."""
        if self.checked is not None:
            return self.checked.stored
        if checkpoint_intent(path) is None:
            log.warning("resumeguard: %s", unknown_origin(path))
            return None
        check = check_checkpoint_run(path, self.options)
        if check is None or (run is not None and check.run_id == str(run.id)):
            return None
        self.checked = check
        return check.stored

    # --- the run's record ---------------------------------------------------------------------

    def adopt(self, run: Any, facts: Mapping[str, Any] | None = None) -> RunRecord:
        """Make sure ``run`` carries a record: the checked record with this resume in its audit
        trail, else the one it has, else a fresh fingerprint (with ``facts`` over the run's
        config)."""
        return ensure_recorded(run, self.options, check=self.checked, facts=facts)

    def known_record(self, run: Any) -> RunRecord | None:
        """The record checkpoints are verified against: the live run's, else the checked one."""
        from resumeguard.decide import runfiles

        record = runfiles.current_record(run) if run is not None else None
        if record is None and self.checked is not None:
            return self.checked.stored
        return record

    def record(
        self,
        run: Any,
        files: Sequence[tuple[str, Path]],
        *,
        step: int | None,
        counter: str,
        held: Mapping[str, Components] | None = None,
    ) -> list[CheckpointRecord]:
        """Record digest, size and step of each ``(name, path)`` in the run's record and beside
        the file (keeping the run's copy of those bytes as ``storage`` says), then publish it.
        ``counter`` is the metric the framework logs its step as: never W&B's own step;
        ``held`` says per name what its state holds, where the framework's state was seen."""
        from resumeguard.checkpoint.beside import origin_of_run, write_beside
        from resumeguard.checkpoint.copies import copy_and_digest
        from resumeguard.checkpoint.storage import Storage, resolve
        from resumeguard.decide import runfiles

        storage = resolve(self.options.storage) if self.keep_copies else Storage(copies="digest")
        record = self.adopt(run)
        recorded: list[CheckpointRecord] = []
        for name, path in files:
            described = CheckpointRecord(
                file="",
                digest="",
                size=0,
                step=step,
                step_counter=counter,
                saved_at=now(),
                source=str(path.resolve()),
                components=(held or {}).get(name),
            )
            checkpoint = copy_and_digest(run, path, name, described, storage).placed(path)
            write_beside(path, origin_of_run(run, name, checkpoint))
            record = record.with_checkpoint(name, checkpoint)
            recorded.append(checkpoint)
        runfiles.publish(run, record)
        runfiles.write_state(run)
        return recorded

    def forget(self, run: Any, names: Sequence[str]) -> None:
        """Drop checkpoints the framework deleted (top-k, rotation) and the run's copies of
        them, so the run directory holds no more than the framework keeps."""
        from resumeguard.decide import runfiles

        record = runfiles.current_record(run)
        if record is None:
            return
        gone = [n for n in names if n in record.checkpoints]
        if not gone:
            return
        from resumeguard.checkpoint.beside import beside
        from resumeguard.checkpoint.copies import retire

        kept = {n: c for n, c in record.checkpoints.items() if n not in gone}
        runfiles.publish(run, dataclasses.replace(record, checkpoints=kept))
        retire(run, kept.values(), [record.checkpoints[n] for n in gone])
        for name in gone:
            source = record.checkpoints[name].source
            if source and not Path(source).exists():
                beside(Path(source)).unlink(missing_ok=True)

    def expect_complete(self, label: str, held: Components, step: int | None) -> None:
        """At the first optimizer step after the framework restored checkpoint ``label``, report
        what it holds and was not put back (``state.*``), under the check's policy."""
        from resumeguard.api.complete import Expectation, expect_at_first_step, judging_with
        from resumeguard.verdict import runpolicy

        checked = self.checked
        options = self.options
        policy = (
            checked.policy
            if checked is not None
            else runpolicy.at_start(options.policy, options.repo)
        )
        expectation = Expectation(name=label, held=held, step=step)
        expect_at_first_step(expectation, judging_with(label, policy))

    # --- verification -------------------------------------------------------------------------

    def verify_file(self, record: RunRecord | None, path: Path, *, run_label: str) -> None:
        """Raise CheckpointError unless ``path`` holds the bytes recorded for it. A file the
        record does not know is refused on a checked resume and only warned about otherwise."""
        from resumeguard.checkpoint import verify_file
        from resumeguard.io.hashing import digest_file

        if record is None:
            self._unverified(path, run_label, "the run has no record")
            return
        found = find_checkpoint(record, path)
        if found is None:
            if path.is_file():
                digest, size = digest_file(path)
                if any(c.digest == digest and c.size == size for c in record.checkpoints.values()):
                    return  # the recorded bytes, moved or copied elsewhere
            self._unrecorded(record, checkpoint_name(path), run_label)
            return
        name, checkpoint = found
        try:
            verify_file(path, checkpoint, name=name)
        except CheckpointError as e:
            raise CheckpointError(f"{e}{restore_hint(checkpoint, name, run_label)}") from e

    def verify_dir(self, record: RunRecord | None, directory: Path, *, run_label: str) -> None:
        """Raise CheckpointError unless ``directory`` holds exactly the files recorded for it,
        each with its recorded bytes (a file added since the save is refused too)."""
        from resumeguard.checkpoint import verify_file

        if record is None:
            self._unverified(directory, run_label, "the run has no record")
            return
        group = find_group(record, directory)
        if not group:
            self._unrecorded(record, checkpoint_name(directory), run_label)
            return
        base = checkpoint_name(directory)
        present = {f.relative_to(directory).as_posix(): f for f in files_below(directory)}
        expected = {rel for rel, _, _ in group}
        extra = sorted(set(present) - expected)
        if extra:
            raise CheckpointError(
                f"checkpoint {base} holds files that were not there when it was saved: "
                f"{', '.join(extra[:5])}; nothing was loaded (remove them, or save a new "
                "checkpoint)"
            )
        for rel, name, checkpoint in group:
            try:
                verify_file(directory / rel, checkpoint, name=name)
            except CheckpointError as e:
                raise CheckpointError(f"{e}{restore_hint(checkpoint, name, run_label)}") from e

    def _unrecorded(self, record: RunRecord, name: str, run_label: str) -> None:
        if self.checked is None:
            self._unverified(Path(name), run_label, "it is not recorded in this run")
            return
        known = ", ".join(sorted(record.checkpoints)[:8]) or "none"
        raise CheckpointError(
            f"checkpoint {name} is not recorded in run {run_label} (recorded: {known}), so "
            "resumeguard cannot tell whether it is the one saved; resume from a recorded "
            "checkpoint, or start a new run from this one"
        )

    @staticmethod
    def _unverified(path: Path, run_label: str, why: str) -> None:
        log.warning(
            "resumeguard: checkpoint %s cannot be verified (%s, run %s); resume the W&B run "
            "that saved it to check it",
            path,
            why,
            run_label,
        )

    # --- failing ------------------------------------------------------------------------------

    def fail(self, error: ResumeGuardError, run: Any = None) -> NoReturn:
        """Raise ``error``, or (``raise_on_block=False``) print it and exit with its status, as
        ``@resumeguard.guard`` does (under ``resumeguard run``: end the process); a refused
        checkpoint is recorded in ``run``'s audit trail."""
        if run is not None and isinstance(error, (CheckpointError, ResumeBlocked)):
            settle(run, "refused", str(error))
        end_if_launched(error)
        if self.raise_on_block:
            raise error
        exit_with(error)


def find_checkpoint(record: RunRecord, path: Path) -> tuple[str, CheckpointRecord] | None:
    """The record of the file at ``path``: by name, else by the absolute path it was saved at
    (a link such as Lightning's ``last.ckpt`` resolves to the file it names)."""
    name = checkpoint_name(path)
    checkpoint = record.checkpoints.get(name)
    if checkpoint is not None:
        return name, checkpoint
    resolved = str(path.resolve())
    matches = [(n, c) for n, c in record.checkpoints.items() if c.source == resolved]
    return matches[-1] if matches else None


def find_group(record: RunRecord, directory: Path) -> list[tuple[str, str, CheckpointRecord]]:
    """The files recorded for checkpoint directory ``directory`` as (path inside it, record
    name, record): by name prefix, else by the absolute path they were saved at."""
    prefix = checkpoint_name(directory).rstrip("/") + "/"
    group = [
        (n[len(prefix) :], n, c) for n, c in record.checkpoints.items() if n.startswith(prefix)
    ]
    if group:
        return group
    source_prefix = str(directory.resolve()) + os.sep
    return [
        (Path(c.source[len(source_prefix) :]).as_posix(), n, c)
        for n, c in record.checkpoints.items()
        if c.source.startswith(source_prefix)
    ]


def files_below(directory: Path) -> list[Path]:
    """The regular files of a checkpoint directory, hidden ones left out, sorted."""
    return sorted(
        p
        for p in directory.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(directory).parts)
    )


def restore_hint(checkpoint: CheckpointRecord, name: str, run_label: str) -> str:
    """Advice appended to a refused checkpoint when the run keeps a copy of its bytes."""
    if not checkpoint.file:
        return ""
    return f"; the run keeps the recorded bytes: resumeguard restore --run-id {run_label} {name}"


def run_label(run: Any) -> str:
    """How the CLI names ``run``: ENTITY/PROJECT/ID when both are known, else the id."""
    entity, project = getattr(run, "entity", None), getattr(run, "project", None)
    return f"{entity}/{project}/{run.id}" if entity and project else str(run.id)


def is_disabled(run: Any) -> bool:
    """True for the stand-in run of ``WANDB_MODE=disabled`` (nothing is kept: nothing to do)."""
    settings = getattr(run, "settings", None)
    return bool(getattr(run, "disabled", False)) or getattr(settings, "mode", "") == "disabled"
