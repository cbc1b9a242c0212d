"""Compare a recorded fingerprint with the current one: pure, recorded + current -> findings.

Nested records are diffed with deepdiff and each change is reported at a stable path whose depth
is fixed per section (``deps.installed.<name>``, ``optimizer.groups.<i>.<hyper>`` ...). Code is
compared per file: the effective content of each path is its working-tree blob where it was dirty or
untracked, else its blob in the commit, so a policy can ignore docs while blocking sources.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from resumeguard.collect.code import DELETED, CodeRecord
from resumeguard.collect.deps import DepsRecord
from resumeguard.collect.optimizer import ModelRecord, OptimizerRecord
from resumeguard.collect.record import Record, Unavailable
from resumeguard.records.fingerprint import Fingerprint
from resumeguard.redact import comparable_text, comparable_url, without_secret_keys
from resumeguard.verdict.codechange import History, mark_harmless_code
from resumeguard.verdict.findings import Finding
from resumeguard.verdict.fit import one_class_finding
from resumeguard.verdict.hints import explain, not_recorded
from resumeguard.verdict.runcontrol import mark_run_control, output_dirs

_ABSENT = object()


def compare(
    recorded: Fingerprint, current: Fingerprint, history: History | None = None
) -> list[Finding]:
    """Every divergence between ``recorded`` and ``current``, in a stable order."""
    findings: list[Finding] = []
    root = recorded.code.root if isinstance(recorded.code, CodeRecord) else None
    findings += _compare_code(
        recorded.code, current.code, history, output_dirs(recorded.config, root)
    )
    findings += _compare_section(
        "deps", _comparable_deps(recorded.deps), _comparable_deps(current.deps), depth=2
    )
    findings += _compare_section("env", recorded.env, current.env, depth=1, skip={"rank"})
    findings += _compare_optimizer(recorded.optimizer, current.optimizer)
    findings += _compare_model(recorded, current)
    findings += _compare_config(recorded, current)
    return findings


def _compare_config(recorded: Fingerprint, current: Fingerprint) -> list[Finding]:
    """``config.<key>`` per differing key; a key the record could not hold (a framework's fact
    that its older recorder did not collect) is not recorded, never changed."""
    # A record from before credentials were left out (or a file given to `diff`) may hold one:
    # it is not compared.
    then, now = without_secret_keys(recorded.config), without_secret_keys(current.config)
    missing = [k for k in recorded.unrecorded(current) if k in now]
    findings = mark_run_control(
        _diff_values("config", then, {k: v for k, v in now.items() if k not in missing}, depth=1),
        now,
    )
    return findings + [not_recorded(f"config.{k}", now[k]) for k in missing]


def _comparable_deps(deps: Record | Unavailable) -> Record | Unavailable:
    """Requirement lines compared without the credentials in their URLs (a record from before
    they were redacted holds them verbatim): a rotated token is no change, a new host, path,
    branch or commit still is."""
    if not isinstance(deps, DepsRecord):
        return deps
    lines = {comparable_text(k): comparable_text(v) for k, v in deps.requirements.items()}
    return dataclasses.replace(deps, requirements=lines)


def _compare_section(
    name: str,
    recorded: Record | Unavailable,
    current: Record | Unavailable,
    *,
    depth: int,
    skip: set[str] = frozenset(),  # type: ignore[assignment]
) -> list[Finding]:
    if isinstance(recorded, Unavailable) or isinstance(current, Unavailable):
        # Only a part that was recorded and is now missing is a divergence; "not given" is not.
        if (
            isinstance(current, Unavailable)
            and isinstance(recorded, Record)
            and current.reason != "not given"
        ):
            return [explain(f"{name}.unavailable", recorded.kind, current.reason)]
        return []
    r = {k: v for k, v in recorded.to_json().items() if k not in skip}
    c = {k: v for k, v in current.to_json().items() if k not in skip}
    return _diff_values(name, r, c, depth=depth)


def _compare_optimizer(
    recorded: Record | Unavailable, current: Record | Unavailable
) -> list[Finding]:
    if not (isinstance(recorded, OptimizerRecord) and isinstance(current, OptimizerRecord)):
        return _compare_section("optimizer", recorded, current, depth=3)
    # Slot names count only where both sides have them: a record from before names were kept,
    # or one taken without a model, cannot tell.
    named = all(p.name for p in recorded.params) and all(p.name for p in current.params)
    return one_class_finding(
        _diff_values("optimizer", _setup(recorded, named), _setup(current, named), depth=3)
    )


def _setup(record: OptimizerRecord, named: bool) -> dict[str, Any]:
    """What an optimizer's setup is compared by: not the state digest, which changes with every
    step (it identifies checkpoints), nor per-param state (a fresh optimizer has none yet; the
    restore compares it)."""
    data = record.to_json()
    params = [
        {k: v for k, v in p.items() if k != "state" and (named or k != "name")}
        for p in data["params"]
    ]
    return {"class": data["cls"], "groups": data["groups"], "params": params}


def _compare_model(recorded: Fingerprint, current: Fingerprint) -> list[Finding]:
    """Each parameter's shape and dtype, and the order they were registered in.

    The order matters because an optimizer built from ``model.parameters()`` keys its state by
    position: two equal-shaped layers that swap places pass every shape check and silently load
    each other's moments. deepdiff compares mappings without order, so the order is compared
    here, over the names both sides have (added or removed ones are reported on their own)."""
    r, c = recorded.model, current.model
    findings = _compare_section("model", r, c, depth=2, skip={"digest"})
    if not (isinstance(r, ModelRecord) and isinstance(c, ModelRecord)):
        return findings
    common = set(r.params) & set(c.params)
    before = [n for n in r.params if n in common]
    after = [n for n in c.params if n in common]
    moved = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
    if moved:
        # Where both optimizers name every slot, those names decide (optimizer.params.<i>.name):
        # an optimizer built from an explicit list is untouched by the order of registration.
        named = all(
            isinstance(o, OptimizerRecord) and o.params and all(p.name for p in o.params)
            for o in (recorded.optimizer, current.optimizer)
        )
        findings.append(
            explain(
                "model.order", [before[i] for i in moved], [after[i] for i in moved], context=named
            )
        )
    return findings


def _diff_values(
    prefix: str, recorded: Mapping[str, Any], current: Mapping[str, Any], *, depth: int
) -> list[Finding]:
    """deepdiff two JSON values and report each change at ``depth`` path components.

    ``threshold_to_diff_deeper=0``: by default deepdiff reports a mapping whose keys mostly
    changed as one replaced value, which would hide ``config.lr`` inside one ``config`` finding
    that no rule on ``config.lr`` matches; every differing key must stay its own finding."""
    if _same_json(recorded, current):
        return []  # the usual case, without loading deepdiff (and numpy) at all
    from deepdiff import DeepDiff

    tree = DeepDiff(
        dict(recorded), dict(current), view="tree", verbose_level=2, threshold_to_diff_deeper=0
    )
    seen: dict[tuple[Any, ...], None] = {}
    for changes in tree.values():
        for level in changes:
            seen.setdefault(tuple(level.path(output_format="list")[:depth]), None)
    findings = []
    for key in sorted(seen, key=lambda k: [str(p) for p in k]):
        r, c = _get(recorded, key), _get(current, key)
        path = ".".join([prefix, *(str(k) for k in key)])
        findings.append(explain(path, None if r is _ABSENT else r, None if c is _ABSENT else c))
    return findings


def _same_json(recorded: Any, current: Any) -> bool:
    """Equal as JSON, types included (``1``, ``1.0`` and ``true`` differ, as deepdiff says)."""
    try:
        return json.dumps(recorded, sort_keys=True) == json.dumps(current, sort_keys=True)
    except (TypeError, ValueError):
        return False


def _get(value: Any, key: tuple[Any, ...]) -> Any:
    for k in key:
        in_map = isinstance(value, Mapping) and k in value
        in_list = isinstance(value, list) and isinstance(k, int) and k < len(value)
        if in_map or in_list:
            value = value[k]
        else:
            return _ABSENT
    return value


def _compare_code(
    recorded: CodeRecord | Unavailable,
    current: CodeRecord | Unavailable,
    history: History | None,
    outputs: Sequence[str] = (),
) -> list[Finding]:
    if isinstance(recorded, Unavailable) or isinstance(current, Unavailable):
        if isinstance(recorded, CodeRecord) and isinstance(current, Unavailable):
            return [explain("code.repo", recorded.root, current.reason)]
        return []
    findings: list[Finding] = []
    for field in ("branch", "remote", "root"):
        r, c = getattr(recorded, field), getattr(current, field)
        if field == "remote" and r and c and comparable_url(r) == comparable_url(c):
            continue  # the same remote with other (or redacted) credentials
        if r != c:
            findings.append(explain(f"code.{field}", r, c))
    findings += _diff_values("code.submodules", recorded.submodules, current.submodules, depth=1)
    findings += mark_harmless_code(
        _compare_skipped(recorded, current), recorded, current, None, outputs
    )
    if current.shallow:
        findings.append(explain("code.shallow", recorded.shallow, current.shallow, context=True))
    same_commit = recorded.commit == current.commit
    resolved = same_commit or bool(
        history
        and recorded.commit
        and current.commit
        and history.has_commit(recorded.commit)
        and history.has_commit(current.commit)
    )
    if not same_commit:
        findings.append(explain("code.commit", recorded.commit, current.commit, context=resolved))
    if not resolved:
        # Without the recorded commit locally, files can't be attributed: report the diff whole.
        if recorded.diff_digest != current.diff_digest:
            findings.append(explain("code.diff", recorded.diff_digest, current.diff_digest))
        return findings
    files = _compare_files(recorded, current, history if not same_commit else None)
    findings += mark_harmless_code(files, recorded, current, history, outputs)
    return findings


def _compare_files(
    recorded: CodeRecord, current: CodeRecord, history: History | None
) -> Iterator[Finding]:
    paths = set(recorded.changed) | set(current.changed)
    paths |= set(recorded.untracked) | set(current.untracked)
    paths -= set(recorded.stamps) | set(current.stamps)  # see _compare_skipped
    # Left out by name in a record of schema 1-2, nothing recorded to compare with.
    paths -= set(recorded.skipped) - set(recorded.stamps)
    if history is not None and recorded.commit and current.commit:
        paths |= history.changed_between(recorded.commit, current.commit)
    for path in sorted(paths):
        r = _effective(recorded, current, path, history)
        c = _effective(current, recorded, path, history)
        if r == c:
            continue
        untracked = path in recorded.untracked or path in current.untracked
        tracked = path in recorded.changed or path in current.changed
        section = "untracked" if untracked and not tracked else "files"
        yield explain(f"code.{section}.{path}", r, c)


def _compare_skipped(recorded: CodeRecord, current: CodeRecord) -> list[Finding]:
    """``code.skipped.<path>`` for files left out of the digest (too large, unreadable, nested
    repositories) whose stamp changed, or that moved between being hashed and being left out.
    A path skipped without a stamp then (a record from before stamps were kept, or run output)
    has nothing to compare with."""
    findings = []
    for path in sorted(set(recorded.stamps) | set(current.stamps)):
        if path in recorded.skipped and path not in recorded.stamps:
            continue
        r = recorded.stamps.get(path, recorded.untracked.get(path))
        c = current.stamps.get(path, current.untracked.get(path))
        if r != c:
            findings.append(explain(f"code.skipped.{path}", r, c))
    return findings


def _effective(
    code: CodeRecord, other: CodeRecord, path: str, history: History | None
) -> str | None:
    """The blob of ``path`` as it was in that working tree; None when the file did not exist."""
    if path in code.changed:
        blob = code.changed[path]
        return None if blob == DELETED else blob
    if path in code.untracked:
        return code.untracked[path]
    if history is not None and code.commit:
        return history.blob(code.commit, path)
    if path in other.untracked:
        return None  # untracked there at the same commit, so not in the commit: absent here
    # Same commit on both sides and no history needed: the committed content is equal.
    return f"committed@{code.commit}"
