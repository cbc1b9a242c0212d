"""Run-control config keys: settings that steer a run without changing what it computes.

Training scripts keep their whole config in the one dict W&B records, including keys that only
say how long the run lasts, where it resumes from, how often it evaluates, logs or saves, and
where its outputs go. A resume that only extends the run or moves its outputs changes these, so a
``config.<key>`` finding for one of them is info (unless a policy rule names it); every other
config key keeps its preset severity (strict: block).

Keys are matched exactly as the frameworks name them (:data:`KEYS`, one row per key with who
names it): a top-level config key, or a key of a framework's own section (Lightning's Trainer
arguments under ``trainer``: a nested ``trainer.max_epochs`` or the callback's
``trainer/max_epochs``). Never by the last name at any depth: ``scheduler.epochs``,
``warmup.max_steps`` or ``lr_schedule.total_steps`` set the learning-rate schedule and block.
Where a framework derives the learning-rate schedule from the run's length (Transformers'
``max_steps``/``num_train_epochs`` with a decaying ``lr_scheduler_type``), a change of that
length is a warning that names the schedule (:data:`SCHEDULES`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from resumeguard.verdict.downgrades import RUN_CONTROL, SCHEDULE_LENGTH
from resumeguard.verdict.findings import Finding

LENGTH = "how long the run lasts"
RESUME = "where the run resumes from"
INTERVALS = "how often it evaluates, logs or saves"
OUTPUTS = "where its outputs go"

NANOGPT = "nanoGPT train.py"
HF = "Transformers TrainingArguments"
PL = "Lightning Trainer"
PL_CKPT = "Lightning ModelCheckpoint"
COMMON = "common script argument"


@dataclasses.dataclass(frozen=True)
class RunControlKey:
    """One run-control key, as a framework names it."""

    name: str
    """The key, exactly."""
    family: str
    """What it steers (e.g. "how long the run lasts")."""
    origin: str
    """Who names it so (the framework, or common use in training scripts)."""


_TABLE: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (LENGTH, NANOGPT, ("max_iters",)),
    (LENGTH, HF, ("max_steps", "num_train_epochs")),
    (LENGTH, PL, ("max_epochs", "min_epochs", "min_steps", "max_time")),
    (LENGTH, COMMON, ("max_iter", "num_iters", "train_steps", "num_train_steps")),
    (LENGTH, COMMON, ("epochs", "num_epochs", "n_epochs")),
    (RESUME, NANOGPT, ("init_from",)),
    (RESUME, HF, ("resume_from_checkpoint", "restore_callback_states_from_checkpoint")),
    (RESUME, PL, ("ckpt_path",)),
    (RESUME, COMMON, ("resume", "auto_resume", "resume_from", "resume_checkpoint")),
    (RESUME, COMMON, ("resume_ckpt", "resume_path", "checkpoint_path")),
    (INTERVALS, NANOGPT, ("eval_interval", "log_interval", "always_save_checkpoint")),
    (INTERVALS, HF, ("eval_steps", "eval_strategy", "evaluation_strategy", "eval_delay")),
    (INTERVALS, HF, ("eval_on_start", "logging_steps", "logging_strategy")),
    (INTERVALS, HF, ("logging_first_step", "save_steps", "save_strategy")),
    (INTERVALS, HF, ("save_total_limit", "disable_tqdm", "log_level")),
    (INTERVALS, PL, ("val_check_interval", "check_val_every_n_epoch", "log_every_n_steps")),
    (INTERVALS, PL, ("num_sanity_val_steps", "enable_checkpointing")),
    (INTERVALS, PL, ("enable_progress_bar", "enable_model_summary")),
    (INTERVALS, PL_CKPT, ("every_n_train_steps", "every_n_epochs", "save_top_k")),
    (INTERVALS, PL_CKPT, ("save_last",)),
    (INTERVALS, COMMON, ("save_interval", "checkpoint_interval", "ckpt_interval")),
    (INTERVALS, COMMON, ("eval_every", "log_every", "save_every")),
    (INTERVALS, COMMON, ("eval_freq", "log_freq", "save_freq")),
    (OUTPUTS, NANOGPT, ("out_dir", "wandb_log", "wandb_project", "wandb_run_name")),
    (OUTPUTS, HF, ("output_dir", "overwrite_output_dir", "logging_dir", "run_name")),
    (OUTPUTS, HF, ("report_to", "push_to_hub", "hub_model_id", "hub_strategy")),
    (OUTPUTS, PL, ("default_root_dir",)),
    (OUTPUTS, PL_CKPT, ("dirpath",)),
    (OUTPUTS, COMMON, ("log_dir", "logdir", "checkpoint_dir", "ckpt_dir", "save_dir")),
    (OUTPUTS, COMMON, ("results_dir",)),
)
"""What each row of keys steers, and who names them so."""

KEYS: tuple[RunControlKey, ...] = tuple(
    RunControlKey(name, family, origin) for family, origin, names in _TABLE for name in names
)
"""Every run-control key. Not here, on purpose: keys that change what data is trained on
(``ignore_data_skip``, which replays or skips the batches seen before a resume; ``seed``,
``data_seed``) and every key of the learning-rate schedule (``warmup_steps``...)."""

SECTIONS: Mapping[str, str] = {"trainer": PL}
"""A framework's own config section and whose keys it holds (Lightning's Trainer arguments:
LightningCLI's ``trainer:`` section, the Lightning callback's ``trainer/`` facts)."""

BY_NAME: Mapping[str, RunControlKey] = {k.name: k for k in KEYS}
"""The registry by key name."""

RUN_CONTROL_KEYS = frozenset(BY_NAME)
"""Every run-control key name."""

SCHEDULES: Mapping[str, tuple[str, frozenset[str], frozenset[str]]] = {
    # TrainingArguments builds its scheduler from max_steps (or num_train_epochs x steps per
    # epoch): with a decaying schedule, a longer run decays more slowly from the resume on.
    HF: (
        "lr_scheduler_type",
        frozenset({"max_steps", "num_train_epochs"}),
        frozenset({"constant", "constant_with_warmup", "reduce_lr_on_plateau"}),
    ),
}
"""Per framework: the config key naming its learning-rate schedule, the length keys it derives
the schedule from, and the schedules that do not depend on the length."""


def run_control_key(path: tuple[str, ...]) -> RunControlKey | None:
    """The registry row of a config key path (``("max_epochs",)``, ``("trainer",
    "max_epochs")``); None for any other key."""
    if len(path) == 1 and "/" in path[0]:
        path = tuple(path[0].split("/"))
    if len(path) == 1:
        return BY_NAME.get(path[0])
    if len(path) == 2 and path[0] in SECTIONS:
        row = BY_NAME.get(path[1])
        return row if row is not None and row.origin == SECTIONS[path[0]] else None
    return None


def run_control_family(key: str) -> str | None:
    """What a top-level run-control key steers (e.g. "how long the run lasts"), None for any
    other key."""
    row = run_control_key((key,))
    return row.family if row is not None else None


def schedule_of(path: tuple[str, ...], config: Mapping[str, Any]) -> str | None:
    """The learning-rate schedule a framework derives from this length key, None when it
    derives none (or the config does not say which schedule it runs)."""
    row = run_control_key(path)
    if row is None or row.origin not in SCHEDULES:
        return None
    key, lengths, flat = SCHEDULES[row.origin]
    kind = config.get(key)
    if row.name not in lengths or not isinstance(kind, str) or kind in flat:
        return None
    return f"{kind} ({key})"


def mark_run_control(
    findings: Iterable[Finding], config: Mapping[str, Any] | None = None
) -> list[Finding]:
    """``config.<key>`` findings of run-control keys marked harmless (info unless a rule names
    them), a length a schedule derives from marked a warning that names it (``config``: the
    current config); every other finding unchanged. A nested section (``config.trainer``) is
    harmless when every key that differs inside it is a run-control key of that section."""
    out = []
    for f in findings:
        paths = _differing(f) if f.path.startswith("config.") else []
        rows = [run_control_key(p) for p in paths]
        if paths and all(r is not None for r in rows):
            schedules = sorted({s for p in paths if (s := schedule_of(p, config or {}))})
            families = sorted({r.family for r in rows if r is not None})
            f = _scheduled(f, schedules) if schedules else _harmless(f, families)
        out.append(f)
    return out


def output_dirs(config: Mapping[str, Any], root: str | None) -> list[str]:
    """The run's output folders its config names (``out_dir``, ``output_dir``,
    ``default_root_dir``...), relative to the repository ``root`` and strictly inside it."""
    from pathlib import PurePosixPath

    found = []
    for key, value in config.items():
        row = run_control_key((key,))
        folder = row is not None and row.family == OUTPUTS and "dir" in row.name
        if not folder or not isinstance(value, str) or not value:
            continue
        path = PurePosixPath(value)
        if path.is_absolute():
            if root is None or not path.is_relative_to(root):
                continue
            path = path.relative_to(root)
        if path.parts and ".." not in path.parts:
            found.append(path.as_posix())
    return sorted(set(found))


def _harmless(f: Finding, families: list[str]) -> Finding:
    lasts = LENGTH in families
    hint = "nothing to do: it steers the run, not what it computes"
    if lasts:
        hint += (
            " (if this key also sets your LR schedule's length, add a block rule for it: "
            f'block = ["{f.path}"])'
        )
    return dataclasses.replace(
        f,
        downgrade=RUN_CONTROL,
        detail=f"run-control config key ({', '.join(families)})",
        hint=hint,
    )


def _scheduled(f: Finding, schedules: list[str]) -> Finding:
    named = ", ".join(schedules)
    return dataclasses.replace(
        f,
        downgrade=SCHEDULE_LENGTH,
        detail=f"the {named} learning-rate schedule is derived from it",
        message=f"{f.message}; the {named} learning-rate schedule is derived from the run's "
        "length, so it changes from the resume on",
        hint="go ahead if the stretched schedule is what you want; to keep the recorded one, "
        "resume with the recorded length (or set a constant schedule)",
    )


def _differing(f: Finding) -> list[tuple[str, ...]]:
    """The key paths (from the config's root) of the leaves that differ at a config finding."""
    return _differing_keys((f.path.split(".", 1)[1],), f.recorded, f.current)


def _differing_keys(path: tuple[str, ...], recorded: Any, current: Any) -> list[tuple[str, ...]]:
    if isinstance(recorded, Mapping) and isinstance(current, Mapping):
        found: list[tuple[str, ...]] = []
        for name in sorted(set(recorded) | set(current), key=str):
            r, c = recorded.get(name, _MISSING), current.get(name, _MISSING)
            if r != c:
                found += _differing_keys((*path, str(name)), r, c)
        return found
    return [path]


_MISSING = object()
