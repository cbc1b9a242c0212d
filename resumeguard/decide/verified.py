"""The one line a resume that goes ahead logs: what was verified (run, code, deps, checkpoint)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from resumeguard.decide.intent import ResumeCheck
from resumeguard.verdict.findings import Severity, Verdict

log = logging.getLogger("resumeguard")


class _UntilConfigured(logging.StreamHandler):  # type: ignore[type-arg]
    """stderr for resumeguard's lines while the program has configured no logging; once it
    has (a handler on the root logger), its handlers show them, and this one stays quiet, so
    that each line is printed once."""

    def emit(self, record: logging.LogRecord) -> None:
        if not logging.getLogger().handlers:
            super().emit(record)


def say(line: str) -> None:
    """Log ``line`` at INFO through the ``resumeguard`` logger, shown on stderr when the
    program has not configured logging (as frameworks do for their own logger)."""
    if not log.hasHandlers():
        handler = _UntilConfigured(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        if log.level == logging.NOTSET:
            log.setLevel(logging.INFO)
    log.info(line)


def log_verified(check: ResumeCheck) -> None:
    """:func:`say` :func:`verified_line` for a resume of an existing run that goes ahead."""
    if check.stored is not None and check.report.verdict in (Verdict.OK, Verdict.WARN):
        say(verified_line(check))


def verified_line(
    check: ResumeCheck,
    *,
    checkpoint: str | None = None,
    extra: Sequence[str] = (),
) -> str:
    """One line: the run, the code, the deps, the config, the checkpoint and the verdict.

    ``checkpoint`` names the one a framework verified and loaded; without it, the newest
    recorded one ("digest verified" only when this check read its bytes)."""
    from resumeguard.collect.code import CodeRecord
    from resumeguard.collect.deps import DepsRecord

    report = check.report
    by_section: dict[str, list[Severity]] = {}
    for j in report.findings:
        by_section.setdefault(j.finding.path.split(".", 1)[0], []).append(j.severity)

    code = check.current.code
    if isinstance(code, CodeRecord):
        state = "clean" if not code.diff_digest else f"{len(code.changed)} uncommitted change(s)"
        commit = (code.commit or "(no commit)")[:12]
        code_text = f"code {commit} ({state}{_noted(by_section, 'code')})"
    else:
        code_text = "code not in a git repository"
    deps = check.current.deps
    if isinstance(deps, DepsRecord):
        torch = f", torch {deps.torch}" if deps.torch else ""
        deps_text = (
            f"deps python {deps.python}{torch}, {len(deps.installed)} installed"
            f"{_noted(by_section, 'deps')}"
        )
    else:
        deps_text = "deps unavailable"
    keys = check.config_keys
    parts = [code_text, deps_text]
    if keys:  # only a config this check was given was compared
        new = sum(1 for j in report.findings if j.finding.unrecorded)
        older = f" ({new} not recorded by an older resumeguard: recorded now)" if new else ""
        parts.append(f"config {keys} keys{_noted(by_section, 'config')}{older}")
    parts += extra
    if checkpoint is not None:
        parts.append(f"checkpoint {checkpoint} (digest verified)")
    else:
        parts.append(_latest(check))
    warnings = sum(1 for j in report.findings if j.severity is Severity.WARN)
    infos = sum(1 for j in report.findings if j.severity is Severity.INFO)
    return (
        f"resumeguard: resume of run {report.run or check.run_id} verified: {'; '.join(parts)}; "
        f"policy {check.policy.name}: {warnings} warning(s), {infos} info"
    )


def _noted(by_section: dict[str, list[Severity]], section: str) -> str:
    """ ", 2 info" when a section had findings that did not block."""
    found = by_section.get(section, [])
    if not found:
        return ", as recorded"
    counts: dict[str, int] = {}
    for severity in found:
        counts[severity.value] = counts.get(severity.value, 0) + 1
    return ", " + ", ".join(f"{n} {name}" for name, n in sorted(counts.items()))


def _latest(check: ResumeCheck) -> str:
    """The checkpoint a resume most likely loads: the newest recorded one."""
    from resumeguard.verdict.step import newest_checkpoint

    newest = newest_checkpoint(check.stored) if check.stored is not None else None
    if newest is None:
        return "no checkpoint recorded yet"
    name, record = newest
    step = f" step {record.step}" if record.step is not None else ""
    which = f"checkpoint {name}{step} {record.digest[:27]}..."
    if name in check.verified:
        return f"{which} (digest verified)"
    return f"newest {which} (bytes not read here: its restore verifies them)"
