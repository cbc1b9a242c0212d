"""Front doors for a training script: ``init`` (wraps wandb.init) and the ``guard`` decorator.

They only wire the pipeline: resolve the resume, fetch the record, compare, judge, and publish.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from resumeguard.collect.configured import watch_optimizers
from resumeguard.collect.env import rank_and_world
from resumeguard.decide.distributed import agree
from resumeguard.decide.intent import ResumeCheck
from resumeguard.decide.pipeline import (
    attach,
    decide,
    ensure_recorded,
    raise_if_blocked,
    record_for,
    resolve_intent,
    rewound,
    warn_about,
)
from resumeguard.decide.verified import log_verified
from resumeguard.errors import BadInput, ResumeBlocked, ResumeGuardError
from resumeguard.options import REPORT_ENV, Options, disabled, under_launcher
from resumeguard.stores.layout import CONFIG_KEY
from resumeguard.verdict.findings import Verdict
from resumeguard.verdict.policy import Policy
from resumeguard.verdict.report import Report

__all__ = ["exit_with", "guard", "init", "recording_new_runs"]


def init(
    *,
    policy: Policy | str | None = None,
    repo: str | Path = ".",
    requirements: Sequence[str | Path] = (),
    optimizer: Any = None,
    model: Any = None,
    rewind: bool = False,
    **wandb_kwargs: Any,
) -> Any:
    """``wandb.init`` with a guard: check BEFORE wandb.init, then record. A run id that already
    exists is compared with its record whatever ``resume`` says (blocked: ResumeBlocked and
    the run untouched; nothing recorded, store unreachable, or resume="must" of a run that is
    not there: Unverifiable); a new run is recorded.

    Takes wandb.init's arguments plus ``policy``, ``repo``, ``requirements``, optionally the
    ``optimizer`` and ``model`` to record their structure, and ``rewind``: when the only thing
    blocking is ``run.step`` (the newest checkpoint is older than the last logged step), rewind
    the run to the checkpoint's step with W&B's ``resume_from`` instead (online only).

    Under torch.distributed call it on rank 0 only, or on every rank: rank 0 decides and
    starts the W&B run; the other ranks wait for its verdict (ResumeBlocked, Unverifiable or
    RankFailed on every rank alike), start no run and return None."""
    import wandb

    if disabled():
        return wandb.init(**wandb_kwargs)
    watch_optimizers()  # so a checkpoint saved from a state dict records what was configured
    config = dict(wandb_kwargs.get("config") or {})
    if CONFIG_KEY in config:
        raise BadInput(
            f"your config has a {CONFIG_KEY!r} key; resumeguard owns that one key of run.config "
            "and never overwrites yours: rename it"
        )
    intent = resolve_intent(
        wandb_kwargs.get("id"), wandb_kwargs.get("resume"), wandb_dir=wandb_kwargs.get("dir")
    )
    offline = _offline(wandb_kwargs)
    options = Options(
        policy=policy,
        repo=repo,
        requirements=tuple(requirements),
        project=wandb_kwargs.get("project"),
        entity=wandb_kwargs.get("entity"),
        offline=offline,
        wandb_dir=wandb_kwargs.get("dir"),
    )
    kept: list[tuple[ResumeCheck, dict[str, Any]]] = []

    def on_rank_0() -> dict[str, Any]:
        # Collected before wandb.init, also for a new run: bad input leaves no half-made run.
        check = decide(intent, options, config=config, optimizer=optimizer, model=model)
        kwargs = dict(wandb_kwargs)
        if rewind and check.report.verdict is Verdict.BLOCK:
            check, kwargs = _rewound(check, kwargs, offline)
        raise_if_blocked(check)
        kept.append((check, kwargs))
        return check.report.to_json()

    # Rank 0 decides for every rank that calls init; it waits for none (it may be the only one).
    agree(on_rank_0, tag="init", call="resumeguard.init")
    if rank_and_world()[0] != 0 or not kept:
        return None  # rank 0 holds the run
    check, wandb_kwargs = kept[-1]
    log_verified(check)
    run = wandb.init(**wandb_kwargs)
    attach(run, record_for(check), check.policy)
    return run


def _rewound(
    check: ResumeCheck, wandb_kwargs: dict[str, Any], offline: bool | None
) -> tuple[ResumeCheck, dict[str, Any]]:
    """When only ``run.step`` blocks: the check without it, and wandb.init's arguments that
    rewind the run to the newest checkpoint's step (online only)."""
    rewound_check, step = rewound(check)
    if rewound_check is None or step is None:
        return check, wandb_kwargs
    if offline or _store_is_offline(offline):
        raise BadInput(
            f"run {check.run_id}: rewind (resume_from) needs W&B online; offline, "
            "resume from a checkpoint at the last logged step"
        )
    kwargs = {k: v for k, v in wandb_kwargs.items() if k != "resume"}
    kwargs["resume_from"] = f"{check.run_id}?_step={step}"
    return rewound_check, kwargs


def _store_is_offline(offline: bool | None) -> bool:
    from resumeguard.stores.choice import open_store

    return offline is None and open_store().name == "offline"


def exit_with(error: ResumeGuardError) -> NoReturn:
    """Print ``error`` as the CLI would (a blocked resume's report on rank 0 only, since every
    rank got it) and exit with its status: for entrypoints that must not go on."""
    if isinstance(error, ResumeBlocked):
        if rank_and_world()[0] == 0:
            from resumeguard.verdict.report import render

            render(error.report, file=sys.stderr)
    else:
        sys.stderr.write(f"resumeguard: {error}\n")
    sys.exit(error.exit_code)


def end_if_launched(error: ResumeGuardError) -> None:
    """Under ``resumeguard run``: end the process with ``error`` (:func:`exit_now`), whatever
    the script would catch; otherwise return, and the caller raises or exits as it would."""
    if under_launcher():
        exit_now(error)


def exit_now(error: ResumeGuardError) -> NoReturn:
    """End this process with ``error``'s report and exit status (the verdict written for
    ``resumeguard run``), by ``os._exit``: no ``except`` in a script can turn a refused resume
    into a fresh start."""
    _write_verdict(error)
    try:
        exit_with(error)
    except SystemExit as done:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(int(done.code or 0))
    os._exit(error.exit_code)  # pragma: no cover - exit_with always exits


def _write_verdict(error: ResumeGuardError) -> None:
    target = os.environ.get(REPORT_ENV)
    if not target:
        return
    from resumeguard.io import atomic
    from resumeguard.verdict.report import unverified

    report = getattr(error, "report", None)
    body = report.to_json() if report is not None else unverified(None, str(error)).to_json()
    body["verdict"] = {1: "block", 2: "bad-input"}.get(error.exit_code, "unverified")
    if report is None:
        body["reason"] = str(error)
    body["exit_code"] = error.exit_code
    with contextlib.suppress(OSError):
        atomic.write_json(Path(target), body)


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
    """Decorate a train entrypoint: check BEFORE its body runs (run id and mode from the
    arguments, WANDB_RUN_ID / WANDB_RESUME, or wandb's auto-resume file), and record a new run
    when the body starts it, with resumeguard.init, its own wandb.init, or a framework's W&B
    logger. A run id that already exists is compared with its record whatever the mode.

    Blocked, before the body or inside it (a restore, a framework callback): the report on
    stderr and exit status 1 (or ResumeBlocked with raise_on_block).
    Unverifiable (nothing recorded, store unreachable, resume "must" of a run that is not
    there): one line on stderr and exit status 3 (or Unverifiable)."""

    options = Options(
        policy=policy,
        repo=repo,
        requirements=tuple(requirements),
        project=project,
        entity=entity,
        offline=offline,
        wandb_dir=wandb_dir,
    )

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if disabled():
                return fn(*args, **kwargs)
            intent = resolve_intent(run_id, resume, wandb_dir=wandb_dir)
            check: ResumeCheck | None = None
            if intent.run_id:
                kept: list[ResumeCheck] = []

                def on_rank_0() -> dict[str, Any]:
                    kept.append(decide(intent, options))
                    return kept[-1].report.to_json()

                try:
                    # Rank 0 checks, every rank gets its verdict: all stop or go together.
                    report = Report.from_json(
                        agree(on_rank_0, tag="check", call="@resumeguard.guard")
                    )
                    if report.verdict is Verdict.BLOCK:
                        raise ResumeBlocked(report)
                except ResumeGuardError as e:
                    if raise_on_block:
                        raise
                    exit_with(e)
                warn_about(report)
                if not kept:
                    return body(*args, **kwargs)  # rank 0 holds the run's record
                check = kept[-1]
                log_verified(check)
            with recording_new_runs(check, options):
                return body(*args, **kwargs)

        def body(*args: Any, **kwargs: Any) -> Any:
            """The entrypoint's body: a resume blocked inside it (at a restore, by a callback)
            ends as the decorator's own block does."""
            try:
                return fn(*args, **kwargs)
            except ResumeBlocked as e:
                if raise_on_block:
                    raise
                exit_with(e)

        return wrapper

    return decorate


@contextmanager
def recording_new_runs(check: ResumeCheck | None, options: Options) -> Iterator[None]:
    """While active, every run started through ``wandb.init`` is checked and carries a record
    (see :func:`resumeguard.decide.pipeline.ensure_recorded`)."""
    import wandb

    original = wandb.init

    def init_and_record(*args: Any, **kwargs: Any) -> Any:
        run = original(*args, **kwargs)
        if run is not None:
            ensure_recorded(run, options, check=check)
        return run

    wandb.init = init_and_record
    try:
        yield
    finally:
        wandb.init = original
