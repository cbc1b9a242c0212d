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
from typing import Any, NoReturn

from resumeguard.check import compare_fingerprints
from resumeguard.distributed import agree, rank_and_world
from resumeguard.errors import ResumeBlocked, ResumeGuardError, Unverifiable
from resumeguard.findings import Finding, Severity, Verdict
from resumeguard.fingerprint import Fingerprint, take
from resumeguard.hints import explain
from resumeguard.policy import Policy, load_policy
from resumeguard.report import Report
from resumeguard.runrecord import (
    RunRecord,
    new_record,
    resume_entry,
    verified_record,
)
from resumeguard.stores.interface import StoredRun
from resumeguard.stores.layout import CONFIG_KEY, LIVE_SECONDS, RECORD_FILE, parse_time

log = logging.getLogger("resumeguard")


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


@dataclasses.dataclass(frozen=True)
class ResumeCheck:
    """The outcome of checking a resume against the run's record."""

    run_id: str
    """The run checked."""
    report: Report
    """What diverged, judged with :attr:`policy`."""
    stored: RunRecord | None
    """The run's record before this resume; None for a run that does not exist yet."""
    current: Fingerprint
    """This process's fingerprint."""
    policy: Policy
    """The policy the report was judged with (the run's own checkpoint files excluded)."""


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
    claim: bool = True,
) -> ResumeCheck:
    """Compare this process with the run's record, under ``policy`` (a Policy, preset name, TOML
    file, or None for the repo's ``[tool.resumeguard]`` over strict).

    Raises Unverifiable when the run has nothing recorded, or does not exist and ``intent.mode``
    is "must"; a run that does not exist otherwise is a new run (verdict ok, ``stored`` None).

    With ``claim``, a resume that is not blocked holds the run's claim (see
    :mod:`resumeguard.claims`) until its run finishes; without, the claim is only looked at."""
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
        report = Report(run=str(ref), verdict=Verdict.OK, reason=f"new run ({e})")
        return ResumeCheck(ref.id, report, None, current, _policy(policy, current))
    if stored.record is None:
        raise Unverifiable(
            f"run {ref} has no resumeguard record, so this resume cannot be checked; adopt it "
            f"with `resumeguard record --run-id {ref}` from the run's code and environment"
        )
    record = verified_record(stored, source=f"{RECORD_FILE} of run {ref}")
    assert record is not None
    recorded = record.fingerprint
    # Config keys not passed now keep their recorded value in W&B: only passed keys can differ.
    current = take(
        repo=repo,
        requirements=requirements,
        optimizer=optimizer,
        model=model,
        config={**recorded.config, **dict(config or {})},
    )
    from resumeguard.checkpoint import checkpoint_findings, own_checkpoint_rules

    # The run's own checkpoint files below the repo are verified by digest, not diffed as code.
    resolved = _policy(policy, current).with_rules(own_checkpoint_rules(record, current))
    extra = checkpoint_findings(record, store, ref)
    live = live_copy(stored.state, stored.heartbeat) if include_live else None
    if live is not None:
        extra.append(live)
    claim_path = _claim_path(store.name, stored)
    if include_live and live is None and not _claimed(claim_path, ref.id, take=claim):
        extra.append(explain("run.live", "another resume holds the run now", "starting again"))
    report = compare_fingerprints(
        recorded, current, run=str(ref), policy=resolved, repo=repo, extra=extra
    )
    if claim and report.verdict is Verdict.BLOCK:
        from resumeguard import claims

        claims.release(ref.id)
    return ResumeCheck(ref.id, report, record, current, resolved)


def _claim_path(store_name: str, stored: StoredRun) -> Path:
    from resumeguard import claims

    if store_name == "offline" and stored.directories:
        return claims.offline_claim_path(stored.directories[0])
    return claims.online_claim_path(str(stored.ref))


def _claimed(path: Path, run_id: str, *, take: bool) -> bool:
    """True when this process may go ahead: it took (or holds) the claim, or, only looking,
    no other process holds it."""
    from resumeguard import claims

    return claims.take(path, run_id) if take else not claims.held_elsewhere(path)


def _policy(policy: Policy | str | None, current: Fingerprint) -> Policy:
    """``policy`` resolved against the repository the fingerprint was taken in."""
    from resumeguard.collect.code import CodeRecord

    if isinstance(policy, Policy):
        return policy
    return load_policy(
        policy, repo=current.code.root if isinstance(current.code, CodeRecord) else None
    )


def live_copy(state: str, heartbeat: str | None) -> Finding | None:
    """A ``run.live`` finding when the run shows a fresh sign of life elsewhere."""
    beat = parse_time(heartbeat)
    if state != "running" or beat is None:
        return None
    age = (dt.datetime.now(dt.timezone.utc) - beat).total_seconds()
    if abs(age) > LIVE_SECONDS:  # stale, or from the future: no sign of life
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
    check: ResumeCheck | None = None
    if intent.resumes:
        check = check_resume(
            intent,
            project=wandb_kwargs.get("project"),
            entity=wandb_kwargs.get("entity"),
            offline=_offline(wandb_kwargs),
            wandb_dir=wandb_kwargs.get("dir"),
            repo=repo,
            requirements=requirements,
            policy=policy,
            config=config,
            optimizer=optimizer,
            model=model,
        )
        if check.report.verdict is Verdict.BLOCK:
            raise ResumeBlocked(check.report)
        warn_about(check.report)
    else:
        # Collected before wandb.init too: bad input must not leave a half-made run behind.
        current = take(
            repo=repo, requirements=requirements, optimizer=optimizer, model=model, config=config
        )
        fresh = Report(run=intent.run_id, verdict=Verdict.OK)
        check = ResumeCheck(intent.run_id or "", fresh, None, current, _policy(policy, current))
    run = wandb.init(**wandb_kwargs)
    attach(run, record_for(check), check.policy)
    return run


def warn_about(report: Report) -> None:
    """Log each warning of a resume that goes ahead."""
    for judged in report.warnings:
        log.warning("resumeguard: %s (%s)", judged.finding.message, judged.finding.path)


def record_for(check: ResumeCheck) -> RunRecord:
    """What a run carries after ``check``: the stored record with this resume (and what it
    allowed) added to the audit trail, or a fresh record for a new run."""
    if check.stored is None:
        return new_record(check.current)
    report = check.report
    allowed = [j.finding.path for j in report.findings if j.severity is not Severity.BLOCK]
    entry = resume_entry(check.current, report.verdict.value, allowed, check.policy.name)
    return check.stored.with_resume(entry)


def attach(run: Any, record: RunRecord, policy: Policy | None = None) -> None:
    """Publish ``record`` to a live run and start its heartbeat; ``policy`` is kept for the
    checks made later in the run (a restore's step check). An offline run holds the claim
    on its own directory too: the one later resumes claim when it is their oldest."""
    from resumeguard import claims, runfiles

    if getattr(run, "offline", False):
        claims.take(claims.offline_claim_path(Path(run.dir).parent), str(run.id))
    runfiles.publish(run, record, policy=policy)
    runfiles.write_state(run)
    runfiles.start_heartbeat(run)


def ensure_recorded(
    run: Any,
    *,
    check: ResumeCheck | None = None,
    policy: Policy | str | None = None,
    repo: str | Path = ".",
    requirements: Sequence[str | Path] = (),
) -> RunRecord:
    """The record of a live run, published first if this process has none for it yet: the
    ``check``ed record with this resume in its audit trail, the stored record of a run W&B
    resumed, else a fresh fingerprint (runs started by a plain wandb.init or a framework)."""
    from resumeguard import runfiles

    record = runfiles.current_record(run)
    if record is not None:
        return record
    if check is not None and check.stored is not None and check.run_id == run.id:
        record = record_for(check)
        attach(run, record, check.policy)
        return record
    existing = run.config.get(CONFIG_KEY) if hasattr(run.config, "get") else None
    if isinstance(existing, Mapping) and getattr(run, "resumed", False):
        # A resumed run whose record lives in the store: load it rather than re-record.
        from resumeguard.stores.interface import store_for_run

        store, ref = store_for_run(run)
        stored = store.fetch(ref)
        record = verified_record(stored, source=f"{RECORD_FILE} of run {ref}")
        if record is not None:
            attach(run, record)
            return record
    config = {k: v for k, v in dict(run.config).items() if k != CONFIG_KEY}
    current = take(repo=repo, requirements=requirements, config=config)
    record = new_record(current)
    attach(run, record, _policy(policy, current))
    return record


def exit_with(error: ResumeGuardError) -> NoReturn:
    """Print ``error`` as the CLI would (a blocked resume's report on rank 0 only, since every
    rank got it) and exit with its status: for entrypoints that must not go on."""
    if isinstance(error, ResumeBlocked):
        if rank_and_world()[0] == 0:
            from resumeguard.report import render

            render(error.report, file=sys.stderr)
    else:
        sys.stderr.write(f"resumeguard: {error}\n")
    sys.exit(error.exit_code)


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
            check: ResumeCheck | None = None
            if intent.resumes:
                kept: list[ResumeCheck] = []

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
                    return kept[-1].report.to_json()

                try:
                    # Rank 0 checks, every rank gets its verdict: all stop or go together.
                    report = Report.from_json(agree(decide, tag="check"))
                    if report.verdict is Verdict.BLOCK:
                        raise ResumeBlocked(report)
                except (Unverifiable, ResumeBlocked) as e:
                    if raise_on_block:
                        raise
                    exit_with(e)
                warn_about(report)
                if not kept:
                    return fn(*args, **kwargs)  # rank 0 holds the run's record
                check = kept[-1]
            with recording_new_runs(check, policy=policy, repo=repo, requirements=requirements):
                return fn(*args, **kwargs)

        return wrapper

    return decorate


@contextmanager
def recording_new_runs(
    check: ResumeCheck | None,
    *,
    policy: Policy | str | None,
    repo: str | Path,
    requirements: Sequence[str | Path],
) -> Iterator[None]:
    """While active, every run started through ``wandb.init`` gets its record published (see
    :func:`ensure_recorded`)."""
    import wandb

    original = wandb.init

    def init_and_record(*args: Any, **kwargs: Any) -> Any:
        run = original(*args, **kwargs)
        if run is not None:
            ensure_recorded(run, check=check, policy=policy, repo=repo, requirements=requirements)
        return run

    wandb.init = init_and_record
    try:
        yield
    finally:
        wandb.init = original
