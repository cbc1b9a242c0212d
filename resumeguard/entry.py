"""Front doors for a training script: ``init`` (wraps wandb.init) and the ``guard`` decorator.

They only wire the pipeline: resolve the resume, fetch the record, compare, judge, and publish.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from resumeguard.check import compare_fingerprints
from resumeguard.distributed import agree, rank_and_world
from resumeguard.errors import ResumeBlocked, Unverifiable
from resumeguard.findings import Finding, Severity, Verdict
from resumeguard.fingerprint import Fingerprint, take
from resumeguard.hints import explain
from resumeguard.policy import Policy, load_policy
from resumeguard.report import Report, build
from resumeguard.runrecord import (
    RunRecord,
    new_record,
    record_from_json,
    resume_entry,
)
from resumeguard.stores.layout import CONFIG_KEY, RECORD_FILE

log = logging.getLogger("resumeguard")

LIVE_SECONDS = 75.0
"""A run whose heartbeat is younger than this is taken to be running somewhere else: two and a
half heartbeats, so a killed job requeued after Slurm's default delay (121 s) is not mistaken."""


@dataclasses.dataclass(frozen=True)
class ResumeIntent:
    """Whether this process resumes a run, and which."""

    run_id: str | None
    """The run id (argument or WANDB_RUN_ID)."""
    mode: str | None
    """must, allow, auto, never, or None (argument or WANDB_RESUME)."""

    @property
    def resumes(self) -> bool:
        """True when an existing run would be continued."""
        return bool(self.run_id) and self.mode in ("must", "allow", "auto")


def resume_intent(run_id: str | None = None, resume: str | bool | None = None) -> ResumeIntent:
    """Resolve the run id and resume mode the way wandb.init does (arguments, then env)."""
    run_id = run_id or os.environ.get("WANDB_RUN_ID") or None
    mode: str | None
    if resume is True:
        mode = "auto"
    elif resume is False:
        mode = None
    else:
        mode = resume or os.environ.get("WANDB_RESUME") or None
    return ResumeIntent(run_id=run_id, mode=mode)


def check_resume(
    intent: ResumeIntent,
    *,
    project: str | None = None,
    entity: str | None = None,
    offline: bool | None = None,
    wandb_dir: str | Path | None = None,
    repo: str | Path = ".",
    requirements: Sequence[str | Path] = (),
    policy: Policy | str | None = None,
    config: Mapping[str, Any] | None = None,
    optimizer: Any = None,
    model: Any = None,
    include_live: bool = True,
    timeout: float | None = None,
) -> tuple[Report, RunRecord | None, Fingerprint]:
    """Compare this process with the run's record. Returns the report, the stored record (None
    when the run does not exist or has nothing recorded) and the current fingerprint.

    Raises Unverifiable when ``intent.mode`` is "must" and nothing can be compared."""
    from resumeguard.stores.interface import RunRef, open_store

    assert intent.run_id is not None
    ref = RunRef.parse(intent.run_id, project=project, entity=entity)
    store = open_store(
        offline=offline, wandb_dir=str(wandb_dir) if wandb_dir else None, timeout=timeout
    )
    try:
        stored = store.fetch(ref)
    except Unverifiable as e:
        if intent.mode == "must":
            raise
        current = take(
            repo=repo, requirements=requirements, optimizer=optimizer, model=model, config=config
        )
        return Report(run=str(ref), verdict=Verdict.OK, reason=f"new run ({e})"), None, current
    if stored.record is None:
        raise Unverifiable(
            f"run {ref} has no resumeguard record, so this resume cannot be checked; adopt it "
            f"with `resumeguard record --run-id {ref}` from the run's code and environment"
        )
    record = record_from_json(stored.record, source=f"{RECORD_FILE} of run {ref}")
    recorded = record.fingerprint
    # Config keys not passed now keep their recorded value in W&B: only passed keys can differ.
    current = take(
        repo=repo,
        requirements=requirements,
        optimizer=optimizer,
        model=model,
        config={**recorded.config, **dict(config or {})},
    )
    resolved = policy if isinstance(policy, Policy) else load_policy(policy, repo=_root(current))
    from resumeguard.checkpoint import checkpoint_findings, own_checkpoint_rules

    # The run's own checkpoint files below the repo are verified by digest, not diffed as code.
    resolved = resolved.with_rules(own_checkpoint_rules(record, current))
    report = compare_fingerprints(recorded, current, run=str(ref), policy=resolved, repo=repo)
    extra = checkpoint_findings(record, store, ref)
    live = live_copy(stored.state, stored.heartbeat, stored_host=None) if include_live else None
    if live is not None:
        extra.append(live)
    if extra:
        report = build(str(ref), [*_findings(report), *extra], resolved)
    return report, record, current


def _findings(report: Report) -> list[Finding]:
    return [j.finding for j in report.findings]


def _root(fp: Fingerprint) -> str | None:
    from resumeguard.collect.code import CodeRecord

    return fp.code.root if isinstance(fp.code, CodeRecord) else None


def live_copy(state: str, heartbeat: str | None, *, stored_host: str | None) -> Finding | None:
    """A ``run.live`` finding when the run shows a fresh sign of life elsewhere."""
    if state != "running" or not heartbeat:
        return None
    try:
        beat = dt.datetime.fromisoformat(heartbeat.replace("Z", "+00:00"))
    except ValueError:
        return None
    if beat.tzinfo is None:
        beat = beat.replace(tzinfo=dt.timezone.utc)
    age = (dt.datetime.now(dt.timezone.utc) - beat).total_seconds()
    if age > LIVE_SECONDS:
        return None
    return explain("run.live", f"running (heartbeat {int(age)} s ago)", "starting again")


def init(
    *,
    policy: Policy | str | None = None,
    repo: str | Path = ".",
    requirements: Sequence[str | Path] = (),
    optimizer: Any = None,
    model: Any = None,
    **wandb_kwargs: Any,
) -> Any:
    """``wandb.init`` with a guard: record on a fresh run; on a resume, check BEFORE wandb.init
    (blocked: ResumeBlocked and the run untouched; unverifiable with resume="must": Unverifiable).

    Takes wandb.init's arguments plus ``policy``, ``repo``, ``requirements``, and optionally the
    ``optimizer`` and ``model`` to record their structure."""
    import wandb

    intent = resume_intent(wandb_kwargs.get("id"), wandb_kwargs.get("resume"))
    config = dict(wandb_kwargs.get("config") or {})
    if CONFIG_KEY in config:
        from resumeguard.errors import BadInput

        raise BadInput(
            f"your config has a {CONFIG_KEY!r} key; resumeguard owns that one key of run.config "
            "and never overwrites yours: rename it"
        )
    offline = _offline(wandb_kwargs)
    stored: RunRecord | None = None
    report: Report | None = None
    if intent.resumes:
        report, stored, current = check_resume(
            intent,
            project=wandb_kwargs.get("project"),
            entity=wandb_kwargs.get("entity"),
            offline=offline,
            wandb_dir=wandb_kwargs.get("dir"),
            repo=repo,
            requirements=requirements,
            policy=policy,
            config=config,
            optimizer=optimizer,
            model=model,
        )
        if report.verdict is Verdict.BLOCK:
            raise ResumeBlocked(report)
        for judged in report.warnings:
            log.warning("resumeguard: %s (%s)", judged.finding.message, judged.finding.path)
    else:
        current = take(
            repo=repo, requirements=requirements, optimizer=optimizer, model=model, config=config
        )
    run = wandb.init(**wandb_kwargs)
    if stored is not None and report is not None:
        record = resumed_record(stored, report, current, policy)
    else:
        record = new_record(current)
    attach(run, record)
    return run


def resumed_record(
    stored: RunRecord, report: Report, current: Fingerprint, policy: Policy | str | None
) -> RunRecord:
    """The stored record with this resume (and what it allowed) added to the audit trail."""
    allowed = [j.finding.path for j in report.findings if j.severity is not Severity.BLOCK]
    resolved = policy if isinstance(policy, Policy) else load_policy(policy, repo=_root(current))
    entry = resume_entry(current, report.verdict.value, allowed, resolved.name)
    return stored.with_resume(entry)


def attach(run: Any, record: RunRecord) -> None:
    """Publish ``record`` to a live run and start its heartbeat."""
    from resumeguard import runfiles

    runfiles.publish(run, record)
    runfiles.write_state(run)
    runfiles.start_heartbeat(run)


def ensure_recorded(
    run: Any, *, repo: str | Path = ".", requirements: Sequence[str] = ()
) -> RunRecord:
    """The record of a live run, recording a fresh fingerprint first if it has none yet
    (runs started by the user's own wandb.init or a framework's logger)."""
    from resumeguard import runfiles

    record = runfiles.current_record(run)
    if record is not None:
        return record
    existing = run.config.get(CONFIG_KEY) if hasattr(run.config, "get") else None
    if isinstance(existing, Mapping) and getattr(run, "resumed", False):
        # A resumed run whose record lives in the store: load it rather than re-record.
        from resumeguard.stores.interface import store_for_run

        store, ref = store_for_run(run)
        stored = store.fetch(ref)
        if stored.record is not None:
            record = record_from_json(stored.record)
            attach(run, record)
            return record
    config = {k: v for k, v in dict(run.config).items() if k != CONFIG_KEY}
    record = new_record(take(repo=repo, requirements=requirements, config=config))
    attach(run, record)
    return record


def _offline(wandb_kwargs: Mapping[str, Any]) -> bool | None:
    mode = wandb_kwargs.get("mode")
    settings = wandb_kwargs.get("settings")
    if settings is not None and getattr(settings, "mode", None):
        mode = mode or settings.mode
    if mode in ("offline", "dryrun", "disabled"):
        return True
    if mode == "online":
        return False
    return None


def guard(
    policy: Policy | str | None = None,
    *,
    run_id: str | None = None,
    resume: str | bool | None = None,
    project: str | None = None,
    entity: str | None = None,
    offline: bool | None = None,
    wandb_dir: str | Path | None = None,
    repo: str | Path = ".",
    requirements: Sequence[str | Path] = (),
    raise_on_block: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a train entrypoint: check a resume BEFORE its body runs (run id and mode from the
    arguments or WANDB_RUN_ID / WANDB_RESUME), and record a fresh run when the body starts it,
    with resumeguard.init, its own wandb.init, or a framework's W&B logger.

    Blocked: the report on stderr and exit status 1 (or ResumeBlocked with raise_on_block).
    Unverifiable with resume "must": one line on stderr and exit status 3 (or Unverifiable)."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            intent = resume_intent(run_id, resume)
            checked: tuple[Report, RunRecord | None, Fingerprint] | None = None
            if intent.resumes:
                kept: list[tuple[Report, RunRecord | None, Fingerprint]] = []

                def decide() -> dict[str, Any]:
                    kept.append(
                        check_resume(
                            intent,
                            project=project,
                            entity=entity,
                            offline=offline,
                            wandb_dir=wandb_dir,
                            repo=repo,
                            requirements=requirements,
                            policy=policy,
                        )
                    )
                    return kept[-1][0].to_json()

                try:
                    # Rank 0 checks, every rank gets its verdict: all stop or go together.
                    report = Report.from_json(agree(decide, tag="check"))
                except Unverifiable as e:
                    if raise_on_block:
                        raise
                    sys.stderr.write(f"resumeguard: {e}\n")
                    sys.exit(e.exit_code)
                checked = kept[-1] if kept else None
                if report.verdict is Verdict.BLOCK:
                    if raise_on_block:
                        raise ResumeBlocked(report)
                    if rank_and_world()[0] == 0:
                        from resumeguard.report import render

                        render(report, file=sys.stderr)
                    sys.exit(ResumeBlocked.exit_code)
                for judged in report.warnings:
                    log.warning("resumeguard: %s (%s)", judged.finding.message, judged.finding.path)
                if checked is None:
                    return fn(*args, **kwargs)  # another rank holds the run's record
            with recording_new_runs(checked, policy=policy, repo=repo, requirements=requirements):
                return fn(*args, **kwargs)

        return wrapper

    return decorate


@contextmanager
def recording_new_runs(
    checked: tuple[Report, RunRecord | None, Fingerprint] | None,
    *,
    policy: Policy | str | None,
    repo: str | Path,
    requirements: Sequence[str | Path],
) -> Iterator[None]:
    """While active, every run started through ``wandb.init`` gets its record published: the
    checked record plus this resume in its audit trail, or a fresh fingerprint."""
    import wandb

    original = wandb.init

    def init_and_record(*args: Any, **kwargs: Any) -> Any:
        run = original(*args, **kwargs)
        from resumeguard import runfiles

        if run is None or runfiles.current_record(run) is not None:
            return run  # resumeguard.init inside the body has recorded it already
        stored = checked[1] if checked is not None else None
        if checked is not None and stored is not None:
            attach(run, resumed_record(stored, checked[0], checked[2], policy))
        else:
            ensure_recorded(run, repo=repo, requirements=[str(r) for r in requirements])
        return run

    wandb.init = init_and_record
    try:
        yield
    finally:
        wandb.init = original
