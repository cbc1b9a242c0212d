"""The report: judged findings and a verdict, rendered as a terminal table or the --json object."""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, Any

from resumeguard.redact import redact_text
from resumeguard.verdict.findings import Finding, Judged, Severity, Verdict

JSON_SCHEMA = 1


@dataclasses.dataclass(frozen=True)
class Report:
    """The outcome of one check."""

    run: str | None
    """The run checked (or the file compared)."""
    verdict: Verdict
    """Worst severity: ok, warn or block; unverified when nothing could be compared."""
    findings: tuple[Judged, ...] = ()
    """Judged findings, most severe first; ignored ones are left out."""
    reason: str = ""
    """Why the check is unverified, when it is."""
    unchecked: tuple[str, ...] = ()
    """What this check could not see (a check from outside the training process), so that
    "ok" is not read as more than it is."""
    policy: str = ""
    """Which policy judged the findings and where it comes from (e.g. a file given with
    ``--policy`` instead of the policy recorded with the run)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "reason", redact_text(self.reason))
        object.__setattr__(self, "unchecked", tuple(redact_text(u) for u in self.unchecked))

    @property
    def blocking(self) -> list[Finding]:
        """Findings at block severity."""
        return [j.finding for j in self.findings if j.severity is Severity.BLOCK]

    @property
    def warnings(self) -> list[Judged]:
        """Findings at warn severity."""
        return [j for j in self.findings if j.severity is Severity.WARN]

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` object docs/commands.md documents (schema, run, verdict, findings)."""
        data: dict[str, Any] = {
            "schema": JSON_SCHEMA,
            "run": self.run,
            "verdict": self.verdict.value,
            "findings": [j.to_json() for j in self.findings],
        }
        if self.reason:
            data["reason"] = self.reason
        if self.unchecked:
            data["unchecked"] = list(self.unchecked)
        if self.policy:
            data["policy"] = self.policy
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Report:
        """Rebuild a report from ``to_json`` (to share a verdict between processes)."""
        judged = tuple(
            Judged(
                Finding(
                    path=f["path"],
                    recorded=f.get("recorded"),
                    current=f.get("current"),
                    message=f.get("message", ""),
                    hint=f.get("hint", ""),
                ),
                Severity(f["severity"]),
                f.get("rule", ""),
            )
            for f in data.get("findings", [])
        )
        return cls(
            run=data.get("run"),
            verdict=Verdict(data["verdict"]),
            findings=judged,
            reason=data.get("reason", ""),
            unchecked=tuple(data.get("unchecked", ())),
            policy=str(data.get("policy", "")),
        )

    def text(self, *, headline: str | None = None) -> str:
        """The human report (a table of what diverged), under ``headline``."""
        return render_text(self, headline=headline)

    def dumps(self) -> str:
        """The ``--json`` text."""
        return json.dumps(self.to_json(), indent=2, default=str)


def unverified(run: str | None, reason: str) -> Report:
    """A report for a check that could not compare anything."""
    return Report(run=run, verdict=Verdict.UNVERIFIED, reason=reason)


_STYLE = {
    Severity.BLOCK: "bold red",
    Severity.WARN: "yellow",
    Severity.INFO: "dim",
    Severity.IGNORE: "dim",
}
_HEADLINE = {
    Verdict.OK: ("[green]ok[/]: safe to resume", "nothing diverged"),
    Verdict.WARN: ("[yellow]warn[/]: safe to resume, with warnings", ""),
    Verdict.BLOCK: ("[bold red]blocked[/]: this is no longer the same experiment", ""),
    Verdict.UNVERIFIED: ("[magenta]unverified[/]: cannot check this resume", ""),
}


SHOWN_PER_FAMILY = 5
"""A family (``code.files``, ``deps.installed`` ...) with more findings than SUMMARY_OVER shows
this many, then one summary row with the counts of the rest."""
SUMMARY_OVER = 8


def family(path: str) -> str:
    """The family of a finding path: ``code.files`` for ``code.files.src/a.py``, ``config`` for
    ``config.lr`` (the first two components of deeper paths, else the first)."""
    parts = path.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 else parts[0]


def render(
    report: Report,
    file: IO[str] | None = None,
    *,
    width: int | None = None,
    headline: str | None = None,
    listed_by: str = "",
) -> None:
    """Print the human report: a headline, then a table of what diverged and what to do. With
    ``listed_by`` (what lists every path: "--json"), a family of many findings is summarised
    with counts; without, every finding gets its row."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=file, width=width, highlight=False, soft_wrap=False)
    default, detail = _HEADLINE[report.verdict]
    who = f"run {report.run}: " if report.run else ""
    if headline is not None:
        console.print(headline, markup=False)
    else:
        console.print(f"{who}{default}")
    if report.reason:
        console.print(f"  {report.reason}", markup=False)
    for note in report.unchecked:
        console.print(f"  not checked from here: {note}", markup=False)
    if report.policy:
        console.print(f"  policy: {report.policy}", markup=False)
    if not report.findings:
        if detail:
            console.print(f"  {detail}")
        return
    table = Table(show_lines=False, pad_edge=False, expand=False)
    table.add_column("severity", no_wrap=True)
    table.add_column("what diverged", overflow="fold")
    table.add_column("what to do", overflow="fold")
    for severity, what, todo in _rows(report.findings, listed_by):
        table.add_row(f"[{_STYLE[severity]}]{severity.value}[/]", what, todo)
    console.print(table)


def render_text(report: Report, *, headline: str | None = None, width: int = 110) -> str:
    """The human report as plain text (no colour), for exception messages and logs."""
    import io

    buffer = io.StringIO()
    listed_by = "the exception's .report.findings"
    render(report, buffer, width=width, headline=headline, listed_by=listed_by)
    return buffer.getvalue().rstrip("\n")


def counts(findings: Iterable[Judged]) -> str:
    """ "2 block, 1 info": how many findings at each severity, worst first."""
    by: dict[Severity, int] = {}
    for j in findings:
        by[j.severity] = by.get(j.severity, 0) + 1
    ordered = sorted(by.items(), key=lambda item: -item[0].rank)
    return ", ".join(f"{n} {severity.value}" for severity, n in ordered)


def _rows(findings: Sequence[Judged], listed_by: str) -> Iterator[tuple[Severity, str, str]]:
    """Table rows (severity, what diverged, what to do), large families summarised when
    ``listed_by`` names what lists every path."""
    riders = same_change(findings)
    riding = {path for paths in riders.values() for path in paths}
    findings = [j for j in findings if j.finding.path not in riding]
    families: dict[str, list[Judged]] = {}
    for j in findings:
        families.setdefault(family(j.finding.path), []).append(j)
    summarised: set[str] = set()
    for j in findings:
        name = family(j.finding.path)
        members = families[name]
        if listed_by and len(members) > SUMMARY_OVER and members.index(j) >= SHOWN_PER_FAMILY:
            if name not in summarised:
                summarised.add(name)
                rest = members[SHOWN_PER_FAMILY:]
                worst = max((r.severity for r in rest), key=lambda s: s.rank)
                yield (
                    worst,
                    f"[bold]+{len(rest)} more {_escape(name)}.*[/] ({counts(rest)}; "
                    f"{len(members)} in all)",
                    f"every path is listed by {listed_by}",
                )
            continue
        f = j.finding
        also = riders.get(f.path, [])
        same = f"\nthe same change: {_escape(', '.join(also))}" if also else ""
        yield (
            j.severity,
            f"[bold]{_escape(f.path)}[/]\n{_escape(f.message)}{same}",
            _escape(f.hint),
        )


_GROUP_HYPER = re.compile(r"optimizer\.groups\.\d+\.[^.]+")


def same_change(findings: Sequence[Judged]) -> dict[str, list[str]]:
    """One row per changed hyperparameter: the ``optimizer.groups.<i>.<hyper>`` findings that
    carry the same change (values and severity) as one config key's ride on its row, else on
    the first of them. Returns each row's path -> the paths riding on it (``--json`` and the
    rules still see every path)."""

    def change(j: Judged) -> tuple[str, str, str]:
        f = j.finding
        dump = functools.partial(json.dumps, sort_keys=True, default=str)
        return j.severity.value, dump(f.recorded), dump(f.current)

    groups: dict[tuple[str, str, str], list[Judged]] = {}
    keys: dict[tuple[str, str, str], list[Judged]] = {}
    for j in findings:
        if _GROUP_HYPER.fullmatch(j.finding.path):
            groups.setdefault(change(j), []).append(j)
        elif j.finding.path.startswith("config."):
            keys.setdefault(change(j), []).append(j)
    riders: dict[str, list[str]] = {}
    for key, group in groups.items():
        leads = keys.get(key, [])
        lead, members = (leads[0], group) if len(leads) == 1 else (group[0], group[1:])
        if members:
            riders[lead.finding.path] = [m.finding.path for m in members]
    return riders


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
