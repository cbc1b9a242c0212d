"""The downgrade registry is data the judge reads: one row per entry, each proven both ways
(no rule: the entry's severity and reason; a user rule naming the finding: the rule, unless the
entry is binding)."""

from __future__ import annotations

import pytest

from resumeguard.verdict.downgrades import DOWNGRADES, Downgrade
from resumeguard.verdict.findings import Finding, Severity
from resumeguard.verdict.policy import Rule, preset

EXPECTED = {
    "context": (Severity.INFO, False),
    "comment-only": (Severity.INFO, False),
    "git-ignore-rules": (Severity.INFO, False),
    "run-output": (Severity.INFO, False),
    "left-out-file": (Severity.INFO, False),
    "run-control": (Severity.INFO, False),
    "schedule-length": (Severity.WARN, False),
    "not-recorded": (Severity.INFO, True),
}


def test_the_registry_holds_exactly_the_documented_entries() -> None:
    assert {name: (d.severity, d.binding) for name, d in DOWNGRADES.items()} == EXPECTED


@pytest.mark.parametrize("entry", DOWNGRADES.values(), ids=lambda d: d.name)
def test_each_downgrade_judges_by_its_row(entry: Downgrade) -> None:
    finding = Finding("config.lr", 1, 2, "m", "h", downgrade=entry.name, detail="seen")
    for name in ("strict", "lenient"):
        judged = preset(name).judge(finding)
        assert (judged.severity, judged.rule) == (entry.severity, f"seen: {entry.reason}")
    blocked = preset("strict").with_rules([Rule("config.lr", Severity.BLOCK, "pyproject.toml")])
    expected = entry.severity if entry.binding else Severity.BLOCK
    assert blocked.judge(finding).severity is expected
    ignored = preset("strict").with_rules([Rule("config.lr", Severity.IGNORE, "pyproject.toml")])
    assert ignored.judge(finding).severity is Severity.IGNORE, "a rule may always quiet it"
    # The harmful look-alike: the same change without the downgrade keeps the preset's severity.
    plain = Finding("config.lr", 1, 2, "m", "h")
    assert preset("strict").judge(plain).severity is Severity.BLOCK


def test_each_entry_gives_a_reason_in_words() -> None:
    for entry in DOWNGRADES.values():
        assert len(entry.reason.split()) >= 5, entry.name


def test_the_docs_list_every_downgrade_with_its_severity() -> None:
    from pathlib import Path

    page = Path(__file__).resolve().parent.parent / "docs" / "not-a-divergence.md"
    text = page.read_text()
    for entry in DOWNGRADES.values():
        assert f"| `{entry.name}` | {entry.severity.value}" in text, entry.name
