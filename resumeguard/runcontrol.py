"""Run-control config keys: settings that steer a run without changing what it computes.

Training scripts keep their whole config in the one dict W&B records, including keys that only
say how long the run lasts, where it resumes from, how often it evaluates, logs or saves, and
where its outputs go. A resume that only extends the run or moves its outputs changes these, so a
``config.<key>`` finding for one of them is info (unless a policy rule names it); every other
config key keeps its preset severity (strict: block).

The names come from the configs of widely used training scripts: nanoGPT's ``train.py``,
Hugging Face ``TrainingArguments`` and Lightning's ``Trainer`` and ``ModelCheckpoint`` arguments.
Keys are matched on the last component of the finding path, lower-cased, with ``-`` read as ``_``
(``--max-iters`` parsed by argparse, or ``trainer.max_epochs`` in a nested config).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from resumeguard.findings import Finding

LENGTH = frozenset(
    {
        "max_iters",  # nanoGPT
        "max_iter",
        "num_iters",
        "max_steps",  # TrainingArguments, Lightning Trainer
        "min_steps",  # Lightning Trainer
        "train_steps",
        "num_train_steps",
        "max_epochs",  # Lightning Trainer
        "min_epochs",  # Lightning Trainer
        "num_train_epochs",  # TrainingArguments
        "epochs",
        "num_epochs",
        "n_epochs",
        "max_time",  # Lightning Trainer
    }
)
"""How long the run lasts."""

RESUME = frozenset(
    {
        "init_from",  # nanoGPT: 'scratch' | 'resume' | 'gpt2*'
        "resume",
        "auto_resume",
        "resume_from",
        "resume_from_checkpoint",  # TrainingArguments, Trainer.train()
        "resume_checkpoint",
        "resume_ckpt",
        "resume_path",
        "ckpt_path",  # Lightning Trainer.fit()
        "checkpoint_path",
        "restore_callback_states_from_checkpoint",  # TrainingArguments
        "ignore_data_skip",  # TrainingArguments: skip replaying batches on resume
    }
)
"""Where and how the run resumes."""

INTERVALS = frozenset(
    {
        "eval_interval",  # nanoGPT
        "log_interval",  # nanoGPT
        "save_interval",
        "checkpoint_interval",
        "ckpt_interval",
        "eval_every",
        "log_every",
        "save_every",
        "eval_freq",
        "log_freq",
        "save_freq",
        "always_save_checkpoint",  # nanoGPT
        "eval_steps",  # TrainingArguments
        "eval_strategy",  # TrainingArguments
        "evaluation_strategy",  # TrainingArguments (older name)
        "eval_delay",  # TrainingArguments
        "eval_on_start",  # TrainingArguments
        "logging_steps",  # TrainingArguments
        "logging_strategy",  # TrainingArguments
        "logging_first_step",  # TrainingArguments
        "save_steps",  # TrainingArguments
        "save_strategy",  # TrainingArguments
        "save_total_limit",  # TrainingArguments
        "val_check_interval",  # Lightning Trainer
        "check_val_every_n_epoch",  # Lightning Trainer
        "log_every_n_steps",  # Lightning Trainer
        "num_sanity_val_steps",  # Lightning Trainer
        "every_n_train_steps",  # Lightning ModelCheckpoint
        "every_n_epochs",  # Lightning ModelCheckpoint
        "save_top_k",  # Lightning ModelCheckpoint
        "save_last",  # Lightning ModelCheckpoint
        "enable_checkpointing",  # Lightning Trainer
        "enable_progress_bar",  # Lightning Trainer
        "enable_model_summary",  # Lightning Trainer
        "disable_tqdm",  # TrainingArguments
        "log_level",  # TrainingArguments
    }
)
"""How often the run evaluates, logs or saves (and how it shows progress)."""

OUTPUTS = frozenset(
    {
        "out_dir",  # nanoGPT
        "output_dir",  # TrainingArguments
        "overwrite_output_dir",  # TrainingArguments (older versions)
        "logging_dir",  # TrainingArguments
        "log_dir",
        "logdir",
        "default_root_dir",  # Lightning Trainer
        "dirpath",  # Lightning ModelCheckpoint
        "checkpoint_dir",
        "ckpt_dir",
        "save_dir",
        "results_dir",
        "run_name",  # TrainingArguments
        "report_to",  # TrainingArguments
        "wandb_log",  # nanoGPT
        "wandb_project",  # nanoGPT
        "wandb_run_name",  # nanoGPT
        "push_to_hub",  # TrainingArguments
        "hub_model_id",  # TrainingArguments
        "hub_strategy",  # TrainingArguments
    }
)
"""Where outputs, logs and checkpoints go."""

FAMILIES: Mapping[str, frozenset[str]] = {
    "how long the run lasts": LENGTH,
    "where the run resumes from": RESUME,
    "how often it evaluates, logs or saves": INTERVALS,
    "where its outputs go": OUTPUTS,
}
"""Each run-control family and its key names."""

RUN_CONTROL_KEYS = frozenset().union(*FAMILIES.values())
"""Every run-control key name."""


def normalize(key: str) -> str:
    """``Max-Iters`` -> ``max_iters``: how keys are matched."""
    return key.strip().lower().replace("-", "_")


def run_control_family(key: str) -> str | None:
    """What a run-control key steers (e.g. "how long the run lasts"), None for any other key."""
    name = normalize(key)
    for family, names in FAMILIES.items():
        if name in names:
            return family
    return None


def mark_run_control(findings: Iterable[Finding]) -> list[Finding]:
    """``config.<key>`` findings of run-control keys marked harmless (info unless a rule names
    them); every other finding unchanged. A nested section (``config.trainer``) is harmless when
    every key that differs inside it is a run-control key (``trainer.max_epochs``)."""
    out = []
    for f in findings:
        families = _families(f) if f.path.startswith("config.") else None
        if families:
            lasts = "how long the run lasts" in families
            f = dataclasses.replace(
                f,
                benign=f"run-control config key ({', '.join(families)})",
                hint=(
                    "nothing to do: it steers the run, not what it computes"
                    + (
                        " (if this key also sets your LR schedule's length, add a block rule"
                        f' for it: block = ["{f.path}"])'
                        if lasts
                        else ""
                    )
                ),
            )
        out.append(f)
    return out


def _families(f: Finding) -> list[str] | None:
    """The run-control families of what differs at a config finding; None when anything else
    differs."""
    keys = _differing_keys(f.path.rsplit(".", 1)[-1], f.recorded, f.current)
    families = [run_control_family(k) for k in keys]
    if not families or any(family is None for family in families):
        return None
    return sorted({family for family in families if family is not None})


def _differing_keys(key: str, recorded: Any, current: Any) -> list[str]:
    """The names of the leaf keys that differ between two values of config ``key``."""
    if isinstance(recorded, Mapping) and isinstance(current, Mapping):
        found: list[str] = []
        for name in sorted(set(recorded) | set(current), key=str):
            r, c = recorded.get(name, _MISSING), current.get(name, _MISSING)
            if r != c:
                found += _differing_keys(str(name), r, c)
        return found
    return [key]


_MISSING = object()
