"""What each finding path means and what to do about it: one table, used by compare and fit."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any

from resumeguard.verdict.findings import Finding
from resumeguard.verdict.paths import require

Text = Callable[[str, Any, Any], str]


def _short(value: Any) -> str:
    if value is None:
        return "(none)"
    text = str(value)
    if len(text) == 40 and all(ch in "0123456789abcdef" for ch in text):
        return text[:12]  # a commit sha
    return text if len(text) <= 60 else text[:57] + "..."


def _leaf(path: str, depth: int) -> str:
    return path.split(".", depth)[-1]


def _index(key: str) -> str:
    """A dotted key path of a state as Python indexing: ``sched.0`` -> ``["sched"][0]``; a
    state file of a checkpoint folder (``scheduler.pt``) as its load."""
    if key.endswith((".pt", ".pth", ".bin")):
        return f' loaded from the checkpoint\'s "{key}"'
    return "".join(f"[{k}]" if k.isdigit() else f'["{k}"]' for k in key.split(".") if k)


def _checkpoint(path: str) -> str:
    """The checkpoint name of ``checkpoint.<name>.<what>`` (names may hold dots)."""
    return path.split(".", 1)[1].rsplit(".", 1)[0]


def _file_change(path: str, r: Any, c: Any) -> str:
    name = _leaf(path, 2)
    if r is None:
        return f"{name} was added since the run was recorded"
    if c is None:
        return f"{name} was deleted since the run was recorded"
    return f"{name} was modified since the run was recorded"


def _version_change(label: str) -> Text:
    return lambda p, r, c: f"{label.format(leaf=_leaf(p, 2))}: {_short(r)} -> {_short(c)}"


# (glob, message, hint) — the first matching row explains a finding.
_TABLE: list[tuple[str, Text, Text]] = [
    (
        "code.repo",
        lambda p, r, c: f"the run was recorded in the git repository {r}; now: {c}",
        lambda p, r, c: "run the check inside the run's repository, or pass --repo",
    ),
    (
        "code.commit",
        lambda p, r, c: f"HEAD moved from {_short(r)} to {_short(c)}",
        lambda p, r, c: (
            f"check out {_short(r)} to resume the same code, or add code.commit "
            "to warn (fetch the recorded commit to see which files differ)"
        ),
    ),
    (
        "code.diff",
        lambda p, r, c: "the uncommitted changes differ from those recorded",
        lambda p, r, c: (
            "restore the recorded working tree, or fetch the recorded commit for a per-file report"
        ),
    ),
    (
        "code.files.*",
        _file_change,
        lambda p, r, c: (
            f"restore {_leaf(p, 2)} as it was, or, if it cannot change results, pass a policy "
            f'file with ignore = ["{p}"] (--policy FILE)'
        ),
    ),
    (
        "code.untracked.*",
        lambda p, r, c: (
            f"untracked file {_leaf(p, 2)} "
            + ("appeared" if r is None else "disappeared" if c is None else "changed")
        ),
        lambda p, r, c: "commit it, remove it, or add it to .gitignore",
    ),
    (
        "code.skipped.*",
        lambda p, r, c: (
            f"{_leaf(p, 2)}, left out of the code digest, "
            + ("appeared" if r is None else "vanished" if c is None else "changed")
            + f": {_short(r)} -> {_short(c)}"
        ),
        lambda p, r, c: (
            f"restore {_leaf(p, 2)} as it was, or add {p} to ignore if it cannot change results"
        ),
    ),
    (
        "code.shallow",
        lambda p, r, c: (
            "the repository is a shallow clone: commits older than its depth are missing, so "
            "changes since the recorded commit may be reported whole (code.diff), not per file"
        ),
        lambda p, r, c: "git fetch --unshallow for a per-file report",
    ),
    (
        "code.submodules.*",
        _version_change("submodule {leaf}"),
        lambda p, r, c: f"run `git submodule update` to check out {_short(r)} again",
    ),
    (
        "code.*",
        lambda p, r, c: f"{_leaf(p, 1)} changed: {_short(r)} -> {_short(c)}",
        lambda p, r, c: f"add {p} to warn or ignore if this is expected",
    ),
    (
        "deps.requirements.*",
        lambda p, r, c: f"requirement {_leaf(p, 2)}: {_short(r)} -> {_short(c)}",
        lambda p, r, c: (
            f"pin {r} again, or add {p} to warn" if r else f"remove it, or add {p} to warn"
        ),
    ),
    (
        "deps.installed.*",
        _version_change("installed {leaf}"),
        lambda p, r, c: (
            f"pip install '{_leaf(p, 2)}=={r}' to match the run, or add {p} to ignore"
            if r
            else f"pip uninstall {_leaf(p, 2)}, or add {p} to ignore"
        ),
    ),
    (
        "deps.torch",
        _version_change("torch"),
        lambda p, r, c: f"pip install 'torch=={r}' again (numerics can change between versions)",
    ),
    (
        "deps.*",
        lambda p, r, c: f"{_leaf(p, 1)}: {_short(r)} -> {_short(c)}",
        lambda p, r, c: f"resume in the recorded environment, or add {p} to warn",
    ),
    (
        "optimizer.class",
        lambda p, r, c: f"optimizer class changed: {_short(r)} -> {_short(c)}",
        lambda p, r, c: f"build the optimizer as recorded ({_short(r)}), or start a new run",
    ),
    (
        "optimizer.groups.*.*",
        lambda p, r, c: f"param group {p.split('.')[2]} {_leaf(p, 3)}: {_short(r)} -> {_short(c)}",
        lambda p, r, c: (
            "the checkpoint's value overrides yours on load_state_dict: restore "
            "the config, or set the value after loading and add this path to warn"
        ),
    ),
    (
        "optimizer.params*",
        lambda p, r, c: (
            f"optimizer parameter {'.'.join(p.split('.')[2:]) or 'list'} changed: "
            f"{_short(r)} -> {_short(c)}"
        ),
        lambda p, r, c: (
            "the model's parameters changed: the recorded optimizer state no "
            "longer fits; start a new run"
        ),
    ),
    (
        "optimizer.params.*.name",
        lambda p, r, c: (
            f"optimizer slot {p.split('.')[2]} held {_short(r)} when recorded, now {_short(c)}: "
            "its state would load into another parameter"
        ),
        lambda p, r, c: (
            "register the layers in the recorded order (or build the optimizer from the same "
            "parameter list), or start a new run"
        ),
    ),
    (
        "model.order",
        lambda p, r, c: (
            f"parameters registered in another order ({', '.join(map(str, r or []))} moved): "
            "an optimizer keeps its state by position, so each would get another's moments"
        ),
        lambda p, r, c: "assign the layers in __init__ in the recorded order, or start a new run",
    ),
    (
        "policy.rules",
        lambda p, r, c: (
            "the repository's resumeguard policy changed since the run was recorded "
            f"({_short(r)} -> {_short(c)}); the recorded policy judges this resume"
        ),
        lambda p, r, c: (
            "to resume under the new rules, pass them explicitly: --policy FILE "
            "(or policy= in init/guard, or RESUMEGUARD_POLICY)"
        ),
    ),
    (
        "model.*",
        lambda p, r, c: f"model parameter {_leaf(p, 2)}: {_short(r)} -> {_short(c)}",
        lambda p, r, c: (
            "the model changed shape: checkpoints of this run no longer fit; start a new run"
        ),
    ),
    (
        "config.*",
        lambda p, r, c: f"config {_leaf(p, 1)}: {_short(r)} -> {_short(c)}",
        lambda p, r, c: f"resume with the recorded value, or add {p} to warn if intended",
    ),
    (
        "env.*",
        lambda p, r, c: f"{_leaf(p, 1).replace('_', ' ')}: {_short(r)} -> {_short(c)}",
        lambda p, r, c: (
            "resume on the recorded hardware, or adjust batch size and lr "
            f"deliberately and add {p} to warn"
        ),
    ),
    (
        "checkpoint.*.missing",
        lambda p, r, c: (
            f"checkpoint {_checkpoint(p)} is recorded but its file is gone from the run"
        ),
        lambda p, r, c: "restore it from a backup, or resume from another recorded checkpoint",
    ),
    (
        "checkpoint.*.size",
        lambda p, r, c: (
            f"checkpoint {_checkpoint(p)} is {c} bytes, recorded {r}: "
            "it was truncated or changed after it was saved"
        ),
        lambda p, r, c: "resume from an intact copy or another recorded checkpoint",
    ),
    (
        "checkpoint.*.digest",
        lambda p, r, c: (
            f"checkpoint {_checkpoint(p)} does not match its recorded "
            "digest: its bytes changed after it was saved"
        ),
        lambda p, r, c: "resume from an intact copy or another recorded checkpoint",
    ),
    (
        "checkpoint.*.record",
        lambda p, r, c: f"the record beside checkpoint {_checkpoint(p)} is gone or differs",
        lambda p, r, c: "`resumeguard restore` writes the file and its record back",
    ),
    (
        "run.step",
        lambda p, r, c: (
            f"the checkpoint is at step {c} but the run already logged up to step "
            f"{r}: W&B drops every log call below {int(r) + 1}, so those metrics would be lost"
        ),
        lambda p, r, c: (
            "resume from a newer checkpoint, or start a new run (fork) to keep the "
            "metrics; add run.step to warn to accept the gap"
        ),
    ),
    (
        "state.scheduler",
        lambda p, r, c: (
            f"the checkpoint holds no LR scheduler state: the schedule restarts at step {c}"
            if r is None
            else f"the scheduler was saved at step {r['step']}, running at step {c}"
        ),
        lambda p, r, c: (
            "save scheduler.state_dict() with the checkpoint and pass scheduler= to "
            "restore_checkpoint"
            if r is None
            else f"call scheduler.load_state_dict(state{_index(r['key'])}) before training, or "
            "pass scheduler= to restore_checkpoint"
        ),
    ),
    (
        "state.scaler",
        lambda p, r, c: (
            f"the run uses a GradScaler but the checkpoint holds none: the loss scale restarts "
            f"at {c}"
            if r is None
            else f"the GradScaler was saved at scale {r['scale']:g}, running at scale {c:g}"
        ),
        lambda p, r, c: (
            "save scaler.state_dict() with the checkpoint and pass scaler= to restore_checkpoint"
            if r is None
            else f"call scaler.load_state_dict(state{_index(r['key'])}) before training, or pass "
            "scaler= to restore_checkpoint"
        ),
    ),
    (
        "state.rng",
        lambda p, r, c: (
            f"the checkpoint holds RNG states ({', '.join(r['owners'])}) that were not restored "
            "by the first step: dropout and augmentation repeat their random draws"
        ),
        lambda p, r, c: "pass rng=True to restore_checkpoint, or set them (torch.set_rng_state)",
    ),
    (
        "state.data",
        lambda p, r, c: (
            f"the checkpoint holds no data position and its step {c} is inside an epoch: the "
            "resumed run trains again on the batches of the current epoch"
            if r is None
            else f"the checkpoint holds a data position (state{_index(r['key'])}) that was not "
            "restored by the first step: the resumed run trains again on batches it has seen"
        ),
        lambda p, r, c: (
            "save the data loader's state_dict() (e.g. torchdata's StatefulDataLoader) with the "
            "checkpoint"
            if r is None
            else "pass dataloader= to restore_checkpoint, or call its load_state_dict"
        ),
    ),
    (
        "run.live",
        lambda p, r, c: f"another copy of this run looks alive: {r}",
        lambda p, r, c: (
            "stop the other job first (or wait for its heartbeat to go stale); "
            "two writers corrupt the run"
        ),
    ),
    (
        "*",
        lambda p, r, c: f"{p}: {_short(r)} -> {_short(c)}",
        lambda p, r, c: f"add {p} to warn or ignore if this is expected",
    ),
]


def explain(path: str, recorded: Any, current: Any, *, context: bool = False) -> Finding:
    """A finding at ``path`` (a registered finding path) with the message and hint of the first
    matching row."""
    require(path)
    for pattern, message, hint in _TABLE:
        if fnmatch.fnmatchcase(path, pattern):
            return Finding(
                path=path,
                recorded=recorded,
                current=current,
                message=message(path, recorded, current),
                hint="nothing to do for this line: the findings listed with it say what changed"
                if context
                else hint(path, recorded, current),
                downgrade="context" if context else "",
            )
    raise AssertionError("the last row matches every path")


def not_recorded(path: str, current: Any) -> Finding:
    """A finding for a fact the record could not hold (its older recorder did not collect it):
    nothing recorded differs, so it is info at most."""
    return Finding(
        path=require(path),
        recorded=None,
        current=current,
        message=f"{path} was not recorded when the run started (recorded by an older "
        f"resumeguard): nothing to compare; now {_short(current)}",
        hint="nothing to do: a framework callback records it once this resume goes ahead, and "
        "later resumes compare it",
        downgrade="not-recorded",
    )
