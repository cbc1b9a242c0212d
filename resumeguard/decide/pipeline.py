"""The resume decision, one pipeline for every front door.

resolve the intent -> fetch the run -> compare -> judge -> report.

:func:`resolve_intent` answers "is this process resuming a run, and which"; :func:`decide` takes
that answer to a :class:`ResumeCheck`. ``resumeguard.init``, ``@guard``, ``resumeguard check``
and the framework callbacks only call these, :func:`check_live_run` for a run a framework or a
plain ``wandb.init`` has started already, and :func:`ensure_recorded` to make sure a live run
carries a record (checked, never replaced).

Fail closed: only a store that answers "no such run" (:class:`~resumeguard.errors.RunNotFound`)
makes a fresh run; a store that cannot answer (:class:`~resumeguard.errors.StoreError`), a run
with nothing recorded, or a resume of a run that is not there (mode "must") is
:class:`~resumeguard.errors.Unverifiable`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import glob
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from resumeguard.checkpoint.reach import Digests, checkpoint_findings
from resumeguard.decide import claims, runfiles
from resumeguard.decide.intent import RESUME_MODES, ResumeCheck, ResumeIntent
from resumeguard.decide.jobshape import JobShape, as_the_job
from resumeguard.errors import BadInput, ResumeBlocked, RunNotFound, Unverifiable
from resumeguard.options import DEFAULT, Options
from resumeguard.records.fingerprint import Fingerprint, take, user_config
from resumeguard.records.run import (
    CheckpointRecord,
    RunRecord,
    new_record,
    resume_entry,
    verified_record,
)
from resumeguard.stores.choice import open_store, store_for_run
from resumeguard.stores.interface import RunRef, StoredRun
from resumeguard.stores.layout import CONFIG_KEY, LIVE_SECONDS, RECORD_FILE, parse_time
from resumeguard.verdict import runpolicy
from resumeguard.verdict.check import compare_fingerprints
from resumeguard.verdict.findings import Finding, Severity, Verdict
from resumeguard.verdict.hints import explain
from resumeguard.verdict.judge import judge, verdict_of
from resumeguard.verdict.policy import Policy, Rule
from resumeguard.verdict.report import Report
from resumeguard.verdict.step import counts_wandb_steps, step_finding, step_findings

log = logging.getLogger("resumeguard")

"""``resume`` values under which wandb.init continues an existing run."""


OWN_CHECKPOINT_RULE = "a checkpoint file recorded by resumeguard (verified by its digest)"

NOT_SEEN_FROM_OUTSIDE = (
    "config (hyper-parameters, effective batch size), optimizer and model state, and the step "
    "training starts at: checked when the script resumes (resumeguard.init, restore_checkpoint "
    "or a framework callback)"
)


# --- resolve the intent ------------------------------------------------------------------------


def resolve_intent(
    run_id: str | None = None,
    resume: str | bool | None = None,
    *,
    wandb_dir: str | Path | None = None,
) -> ResumeIntent:
    """Resolve the run id and resume mode as ``wandb.init`` will: the arguments, then
    ``WANDB_RUN_ID`` / ``WANDB_RESUME``, then (mode "auto" without an id) the run id wandb kept
    in ``wandb-resume.json`` under the wandb directory."""
    source = "argument"
    if not run_id and os.environ.get("WANDB_RUN_ID"):
        run_id, source = os.environ["WANDB_RUN_ID"], "WANDB_RUN_ID"
    mode: str | None
    if resume is True:
        mode = "auto"
    elif resume is False:
        mode = None
    else:
        mode = resume or os.environ.get("WANDB_RESUME") or None
    if not run_id and mode == "auto":
        run_id = _autoresume_id(wandb_dir)
        source = "wandb-resume.json"
    return ResumeIntent(run_id=run_id or None, mode=mode, source=source)


def checkpoint_intent(path: str | os.PathLike[str]) -> ResumeIntent | None:
    """A resume from checkpoint ``path`` (a file, or a framework's checkpoint directory): the
    run it was saved in, from the record resumeguard keeps beside it (mode "must": that run
    has to be there). None when the checkpoint has no such record (unknown origin);
    ``run_id`` None when it was saved without a run."""
    from resumeguard.checkpoint.beside import checkpoint_origin

    origin = checkpoint_origin(Path(path))
    if origin is None:
        return None
    if origin.run is None:
        return ResumeIntent(None, None, "checkpoint")
    return ResumeIntent(
        origin.run.id,
        "must",
        "checkpoint",
        project=origin.run.project or None,
        entity=origin.run.entity or None,
        offline=True if origin.offline else None,
        wandb_dir=origin.wandb_dir,
    )


def check_checkpoint_run(
    path: str | os.PathLike[str], options: Options = DEFAULT
) -> ResumeCheck | None:
    """A resume from checkpoint ``path`` that no run check covered: check this process against
    the run the checkpoint was saved in (ResumeBlocked / Unverifiable as for any resume).
    None when the checkpoint names no run: unknown origin (see :func:`unknown_origin`), or
    saved without one."""
    intent = checkpoint_intent(path)
    if intent is None or intent.run_id is None:
        return None
    check = decide(
        intent,
        Options(policy=options.policy, repo=options.repo, requirements=options.requirements),
        # That run is not continued here (a new run, or none, goes on from its checkpoint):
        # its claim and its step are not this process's.
        include_step=False,
        claim=False,
    )
    raise_if_blocked(check)
    return check


def unknown_origin(path: str | os.PathLike[str]) -> str:
    """The one line for a resume from a checkpoint no guarded run recorded."""
    return (
        f"checkpoint {path} was not saved by a run resumeguard records (no record beside it), "
        "so this resume from it is not checked; save checkpoints with save_checkpoint or a "
        "resumeguard callback, or resume the W&B run that saved it"
    )


def _autoresume_id(wandb_dir: str | Path | None) -> str | None:
    """The run id wandb's resume="auto" will reuse: ``<root>/wandb/wandb-resume.json``
    (``.wandb/`` when that folder exists), written by the last run that did not finish."""
    root = Path(wandb_dir or os.environ.get("WANDB_DIR") or os.getcwd()).expanduser()
    folder = root / (".wandb" if (root / ".wandb").exists() else "wandb")
    try:
        data = json.loads((folder / "wandb-resume.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    run_id = data.get("run_id") if isinstance(data, dict) else None
    return run_id if isinstance(run_id, str) and run_id else None


# --- fetch, compare, judge ---------------------------------------------------------------------


def decide(
    intent: ResumeIntent,
    options: Options = DEFAULT,
    *,
    preset_rules: Sequence[Rule] = (),
    config: Mapping[str, Any] | None = None,
    facts: Mapping[str, Any] | None = None,
    optimizer: Any = None,
    model: Any = None,
    include_live: bool = True,
    include_step: bool = True,
    digests: Digests = "stat",
    claim: bool = True,
    files: bool = False,
    job: JobShape | None = None,
) -> ResumeCheck:
    """Check this process against the record of the run ``intent`` names, with the settings
    a front door was given (``options``: policy, repository, requirements, where the run is).

    A run id the store does not know is a new run (Unverifiable with mode "must"); a run that
    exists is compared whatever the mode (BadInput with mode "never"); one with nothing
    recorded, or a store that cannot answer, is Unverifiable. ``digests`` says how recorded
    checkpoint copies are checked (in a training process "stat": its restore reads and
    verifies the bytes of the checkpoint it loads); ``include_live`` and ``include_step`` add
    ``run.live`` and ``run.step`` (a newest checkpoint older than the last logged step);
    ``files`` the checkpoint files at their recorded paths, and the records beside them (a
    check from outside: the training process verifies the file it restores).
    ``facts`` are what a framework callback knows of the run (compared as config keys; ones
    a record from before facts were kept lacks are reported as not recorded), and
    ``preset_rules`` its preset-level rules, added once the policy is resolved (any user rule
    beats them; they never bring the repository's own preset in).

    With ``claim``, a resume that is not blocked holds the run's claim (see
    :mod:`resumeguard.decide.claims`) until its run finishes; without, the claim is only
    looked at."""
    policy, repo = options.policy, options.repo
    runpolicy.validate(policy)

    def collect(config_now: Mapping[str, Any] | None) -> Fingerprint:
        return take(
            repo=repo,
            requirements=options.requirements,
            optimizer=optimizer,
            model=model,
            config=config_now,
            facts=facts,
        )

    if not intent.run_id:
        return _fresh(intent, collect(config), policy, "new run", preset_rules)
    where = options.where(
        project=intent.project,
        entity=intent.entity,
        offline=intent.offline,
        wandb_dir=intent.wandb_dir,
    )
    ref = RunRef.parse(intent.run_id, project=where.project, entity=where.entity)
    store = open_store(
        offline=where.offline,
        wandb_dir=str(where.wandb_dir) if where.wandb_dir else None,
        timeout=where.timeout,
    )
    try:
        stored = store.fetch(ref)  # StoreError propagates: unreachable is never "new"
    except RunNotFound as e:
        if intent.mode == "must":
            raise
        return _fresh(intent, collect(config), policy, f"new run ({e})", preset_rules)
    if intent.mode == "never":
        raise BadInput(
            f"run {ref} already exists and resume='never' was asked: pick a new run id, or "
            "resume it (resume='allow')"
        )
    if stored.record is None:
        raise Unverifiable(
            f"run {ref} has no resumeguard record, so this resume cannot be checked; adopt it "
            f"with `resumeguard record --run-id {ref}` from the run's code and environment"
        )
    record = verified_record(stored, source=f"{RECORD_FILE} of run {ref}")
    assert record is not None
    recorded = record.fingerprint
    # Config keys not passed now keep their recorded value in W&B: only passed keys can differ.
    current = collect({**recorded.config, **dict(config or {})})
    outside: list[str] = []
    if job is not None:
        env, outside = as_the_job(recorded.env, current.env, job)
        current = dataclasses.replace(current, env=env)
    # The policy kept with the run judges, not the one in the tree being judged.
    base, extra = runpolicy.for_resume(policy, record.policy, _root(current))
    # The run's own checkpoint files below the repo are verified by digest, not diffed as code.
    resolved = base.with_rules(own_checkpoint_rules(record, current)).with_preset_rules(
        preset_rules
    )
    reached = checkpoint_findings(
        record, store, ref, digests=digests, files=files, last_step=stored.last_step
    )
    extra += reached.findings
    if include_step:
        extra.extend(
            step_findings(record, stored.last_step, run_id=ref.id, unknown=stored.step_unknown)
        )
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
        claims.release(ref.id)
    unchecked = (*outside, *reached.elsewhere, *reached.rotated)
    report = dataclasses.replace(report, unchecked=unchecked)
    given = None if config is None and facts is None else {**(config or {}), **(facts or {})}
    return ResumeCheck(
        ref.id,
        report,
        record,
        current,
        resolved,
        stored.last_step,
        store.name,
        stored.step_unknown,
        reached.verified,
        None if given is None else len(user_config(given)),
    )


def _claim_path(store_name: str, stored: StoredRun) -> Path:
    if store_name == "offline" and stored.directories:
        return claims.offline_claim_path(stored.directories[0])
    return claims.online_claim_path(str(stored.ref))


def _claimed(path: Path, run_id: str, *, take: bool) -> bool:
    """True when this process may go ahead: it took (or holds) the claim, or, only looking,
    no other process holds it."""
    return claims.take(path, run_id) if take else not claims.held_elsewhere(path)


def _fresh(
    intent: ResumeIntent,
    current: Fingerprint,
    policy: Policy | str | None,
    reason: str,
    preset_rules: Sequence[Rule] = (),
) -> ResumeCheck:
    """The check of a run that does not exist yet: this process's fingerprint, nothing compared."""
    report = Report(run=intent.run_id, verdict=Verdict.OK, reason=reason)
    resolved = _policy(policy, current).with_preset_rules(preset_rules)
    return ResumeCheck(intent.run_id or "", report, None, current, resolved)


def _policy(policy: Policy | str | None, current: Fingerprint) -> Policy:
    """``policy`` resolved against the repository the fingerprint was taken in."""
    return runpolicy.at_start(policy, _root(current))


def _root(current: Fingerprint) -> str | None:
    """The repository the fingerprint was taken in."""
    from resumeguard.collect.code import CodeRecord

    return current.code.root if isinstance(current.code, CodeRecord) else None


def check_live_run(
    run: Any,
    options: Options = DEFAULT,
    *,
    mode: str | None = None,
    preset_rules: Sequence[Rule] = (),
    facts: Mapping[str, Any] | None = None,
    include_step: bool = True,
) -> ResumeCheck:
    """Check a run that a framework or a plain ``wandb.init`` has started already: a run with
    data from before this process is a resume, whatever the mode, and is compared with its
    record; a run without is new (Unverifiable with mode "must"). ``facts`` are what the
    framework knows of the run's config before it logs it (over the run's own);
    ``preset_rules`` as for :func:`decide`."""
    if started_fresh(run):
        if mode == "must":
            raise Unverifiable(
                f"run {run.id} was to be resumed (resume='must') but has no earlier data to "
                "compare with"
            )
        current = take(
            repo=options.repo,
            requirements=options.requirements,
            config=_user_config(run),
            facts=facts,
        )
        intent = ResumeIntent(str(run.id), mode, "live run")
        return _fresh(intent, current, options.policy, "new run", preset_rules)
    offline = bool(getattr(run, "offline", False))
    return decide(
        ResumeIntent(str(run.id), mode if mode in RESUME_MODES else "allow", "live run"),
        dataclasses.replace(
            options,
            project=getattr(run, "project", None) or None,
            entity=getattr(run, "entity", None) or None,
            offline=True if offline else None,
            wandb_dir=str(run.settings.root_dir) if offline else None,
        ),
        preset_rules=preset_rules,
        facts=facts,
        # Online, W&B shows the run running because of this very process: a live copy can no
        # longer be told apart. Offline each process has its own directory.
        include_live=offline,
        include_step=include_step,
        digests="stat",
    )


def started_fresh(run: Any) -> bool:
    """True when ``run`` has no data from before this process: nothing to compare with.

    Online, W&B says so (``run.resumed``). Offline, every ``wandb.init`` makes a new directory
    and ``resumed`` is always False, so look for other directories of the same id."""
    if not getattr(run, "offline", False):
        return not bool(getattr(run, "resumed", False))
    from resumeguard.stores.offline import OfflineStore

    try:
        dirs = OfflineStore(run.settings.root_dir).dirs(RunRef(run.id))
    except RunNotFound:
        return True
    own = Path(run.dir).parent.resolve()
    return all(d.resolve() == own for d in dirs)


def _user_config(run: Any) -> dict[str, Any]:
    return {k: v for k, v in dict(run.config).items() if k != CONFIG_KEY}


# --- what is checked besides the fingerprints --------------------------------------------------


def live_copy(state: str, heartbeat: str | None) -> Finding | None:
    """A ``run.live`` finding when the run shows a fresh sign of life elsewhere."""
    beat = parse_time(heartbeat)
    if state != "running" or beat is None:
        return None
    age = (dt.datetime.now(dt.timezone.utc) - beat).total_seconds()
    if abs(age) > LIVE_SECONDS:  # stale, or from the future: no sign of life
        return None
    return explain("run.live", f"running (heartbeat {int(age)} s ago)", "starting again")


def unchecked_from_outside(check: ResumeCheck, digests: Digests) -> list[str]:
    """What a check from outside the training process did not see, to say so in its report
    (with what the check itself found it could not reach, already in the report)."""
    notes = [NOT_SEEN_FROM_OUTSIDE]
    record = check.stored
    if record is None:
        return notes
    if digests == "stat" and record.checkpoints:
        notes.append(
            "checkpoint bytes: sizes (and modification times) compared (--quick), a file whose "
            "time changed was read; the restore verifies the digest of what it loads"
        )
        if check.store == "online":
            notes.append("checkpoint copies in the W&B run: not fetched (--quick)")
    return [*notes, *check.report.unchecked]


def own_checkpoint_rules(stored: RunRecord, current: Fingerprint) -> list[Rule]:
    """Ignore rules for the recorded checkpoint files that lie inside the repository.

    Frameworks write their checkpoints below the working directory by default (Lightning's
    ``<project>/<id>/checkpoints``, a Trainer's ``output_dir``): untracked files that appear
    after the run was recorded, which strict would block as ``code.untracked.*``. They are
    the checkpoint, not code, and their bytes are verified against the record instead."""
    from resumeguard.checkpoint.findings import own_file_rules
    from resumeguard.collect.code import CodeRecord

    rules = own_file_rules()
    if not isinstance(current.code, CodeRecord):
        return rules
    root = Path(current.code.root).resolve()
    for checkpoint in stored.checkpoints.values():
        if not checkpoint.source:
            continue
        try:
            rel = Path(checkpoint.source).relative_to(root).as_posix()
        except ValueError:
            continue
        rules.append(
            Rule(f"code.untracked.{glob.escape(rel)}", Severity.IGNORE, OWN_CHECKPOINT_RULE)
        )
    return rules


# --- what the run carries afterwards -----------------------------------------------------------


def warn_about(report: Report) -> None:
    """Log each warning of a resume that goes ahead."""
    for judged in report.warnings:
        log.warning("resumeguard: %s (%s)", judged.finding.message, judged.finding.path)


def raise_if_blocked(check: ResumeCheck) -> None:
    """ResumeBlocked when the check blocks, Unverifiable when something it needs could not be
    read; its warnings logged otherwise."""
    raise_for(check.report)


def raise_for(report: Report) -> None:
    """ResumeBlocked when ``report`` blocks, Unverifiable when it is unverified; its warnings
    logged otherwise."""
    if report.verdict is Verdict.BLOCK:
        raise ResumeBlocked(report)
    if report.verdict is Verdict.UNVERIFIED:
        raise Unverifiable(f"resume of run {report.run or '?'} cannot be checked: {report.reason}")
    warn_about(report)


def rewound(check: ResumeCheck) -> tuple[ResumeCheck | None, int | None]:
    """When ``run.step`` is all that blocks: the check without it, and the step to rewind the
    run to (the newest checkpoint's); ``(None, None)`` otherwise."""
    report = check.report
    steps = [j for j in report.findings if j.finding.path == "run.step"]
    if not steps or any(p != "run.step" for p in (f.path for f in report.blocking)):
        return None, None
    rest = [j for j in report.findings if j.finding.path != "run.step"]
    kept = dataclasses.replace(report, findings=tuple(rest), verdict=verdict_of(rest))
    step = steps[0].finding.current
    return dataclasses.replace(check, report=kept), step if isinstance(step, int) else None


def record_for(check: ResumeCheck) -> RunRecord:
    """What a run carries after ``check``: the stored record with this resume added to the
    audit trail (pending until it goes ahead), or a fresh record for a new run."""
    if check.stored is None:
        return new_record(check.current, runpolicy.to_keep(check.policy, _root(check.current)))
    report = check.report
    allowed = [j.finding.path for j in report.findings if j.severity is not Severity.BLOCK]
    policy = check.policy.origin or check.policy.name
    entry = resume_entry(check.current, report.verdict.value, allowed, policy)
    return check.stored.with_resume(entry)


def attach(run: Any, record: RunRecord, policy: Policy | None = None) -> None:
    """Publish ``record`` to a live run and start its heartbeat; ``policy`` is kept for the
    checks made later in the run (a restore's step check). An offline run holds the claim
    on its own directory too: the one later resumes claim when it is their oldest."""
    if getattr(run, "offline", False):
        claims.take(claims.offline_claim_path(Path(run.dir).parent), str(run.id))
    runfiles.publish(run, record, policy=policy)
    runfiles.write_state(run)
    runfiles.start_heartbeat(run)


def ensure_recorded(
    run: Any,
    options: Options = DEFAULT,
    *,
    check: ResumeCheck | None = None,
    facts: Mapping[str, Any] | None = None,
) -> RunRecord:
    """The record of a live run, published first if this process has none for it yet: the
    ``check``ed record with this resume in its audit trail, else (a run started by a plain
    wandb.init or a framework) the result of checking it now: its stored record if it has
    data from before (ResumeBlocked / Unverifiable when that check refuses), a fresh
    fingerprint if it is new (with ``facts``, what a framework knows before it logs it, over
    the run's config). A stored record is never replaced."""
    record = runfiles.current_record(run)
    if record is not None:
        return record
    if check is None or check.fresh or check.run_id != str(run.id):
        # Which checkpoint this resume restores is known only at the restore, which checks it.
        check = check_live_run(run, options, facts=facts, include_step=False)
        raise_if_blocked(check)
    record = record_for(check)
    attach(run, record, check.policy)
    return record


def step_check(
    run: Any, record: RunRecord, checkpoint: CheckpointRecord, name: str, policy: Any
) -> None:
    """Before a restore: ResumeBlocked (or a warning, by policy) when ``checkpoint`` is older
    than the run's last logged step, naming a newer recorded checkpoint if there is one."""
    last, unknown = last_logged_step(run)
    newer = sorted(
        (c.step, n)
        for n, c in record.checkpoints.items()
        if counts_wandb_steps(c) and c.step is not None and last is not None and c.step >= last
    )
    prefix = f"restore {newer[-1][1]} (step {newer[-1][0]}) instead, or " if newer else ""
    finding = step_finding(checkpoint, last, run_id=str(run.id), newer=prefix, unknown=unknown)
    if finding is None:
        return
    raise_for(judge(str(run.id), [finding], restore_policy(run, record, policy)))


def restore_policy(run: Any, record: RunRecord | None, policy: Any) -> Policy:
    """The policy that judges what a restore finds: unless told otherwise, the one the run was
    checked or recorded with (without a run or record: the one a new run would start with)."""
    kept = runfiles.current_policy(run) if policy is None and run is not None else None
    if kept is not None:
        return kept
    if record is None:
        return runpolicy.at_start(policy, ".")
    return runpolicy.for_resume(policy, record.policy, ".")[0]


def last_logged_step(run: Any) -> tuple[int | None, str]:
    """The run's last logged step as W&B holds it, and why it cannot be known ("" when it
    can). Online, a resumed run starts at it plus one; otherwise the store says (offline: the
    transaction logs of every directory)."""
    if getattr(run, "resumed", False) and isinstance(getattr(run, "starting_step", None), int):
        starting: int = run.starting_step
        return (starting - 1 if starting > 0 else None), ""
    store, ref = store_for_run(run)
    try:
        stored = store.fetch(ref)
    except RunNotFound:
        return None, ""  # nothing of the run reached the store yet: nothing logged
    return stored.last_step, stored.step_unknown
