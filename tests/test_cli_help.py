"""Every command's ``--help`` wraps to the terminal: no sentence is broken by a hard line break
(a docstring's own line ends), at a narrow and a wide terminal alike."""

from __future__ import annotations

import contextlib
import itertools
import re

import pytest

from resumeguard.cli.main import main

COMMANDS = ["fingerprint", "diff", "check", "record", "show", "restore", "digest", "demo", "run"]
WIDTHS = [80, 100, 200]


def render(
    args: list[str], width: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> str:
    monkeypatch.setenv("COLUMNS", str(width))
    monkeypatch.delenv("TERMINAL_WIDTH", raising=False)
    with contextlib.suppress(SystemExit):  # argparse's --help (``resumeguard run``) exits
        main(args)
    return capsys.readouterr().out


def hard_breaks(text: str) -> list[str]:
    """Line pairs where the first word of the next line would have fit on the line before: a
    wrapping renderer never breaks there, so the break is the source text's own.

    Checked are the description (prose up to the first box or argparse section, which ends at
    the text's width) and the continuation lines of a box's last column (``│ ... │``, which end
    at the box's right edge); typer's markers (``[default: ...]``, ``[required]``) go on a line
    of their own by design."""
    found = []
    lines = text.splitlines()
    width = max((len(line) for line in lines), default=0)
    prose = True
    for before, after in itertools.pairwise(lines):
        if after.lstrip().startswith("╭") or (
            after.rstrip().endswith(":") and not after[:1].isspace()
        ):
            prose = False
        if not before.strip() or not after.strip() or before.lower().lstrip().startswith("usage:"):
            continue
        if before.startswith("│") and after.startswith("│"):
            inside = after[1:].rstrip()[:-1]
            if len(inside) - len(inside.lstrip()) <= 8 or inside.lstrip().startswith("["):
                continue  # the next row of a table, or a marker of typer's
            edge = len(before.rstrip()) - 2  # the last column ends before " │"
            used = len(before.rstrip()[:-1].rstrip())
            first = inside.split()[0]
        elif prose and not before.startswith("│"):
            edge, used, first = width, len(before.rstrip()), after.split()[0]
        else:
            continue
        if used + 1 + len(first) <= edge - 4:
            found.append(f"{before.rstrip()!r} / {after.strip()!r}")
    return found


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("command", COMMANDS)
def test_help_wraps_to_the_terminal(
    command: str, width: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text = render([command, "--help"], width, monkeypatch, capsys)
    assert "--help" in text, text
    assert max(len(line) for line in text.splitlines()) <= width
    assert hard_breaks(text) == [], text
    split = [line for line in text.splitlines() if re.search(r"\w-$", line.rstrip(" │"))]
    assert split == [], "a word (an option name) split at its hyphen"


@pytest.mark.parametrize("width", WIDTHS)
def test_the_command_list_wraps_and_lists_every_command(
    width: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text = render(["--help"], width, monkeypatch, capsys)
    listed = [
        line.split()[1] for line in text.splitlines() if line.startswith("│ ") and line[2] != " "
    ]
    assert [name for name in listed if not name.startswith("-")] == COMMANDS
    assert hard_breaks(text) == [], text


def test_a_docstring_with_hard_breaks_is_caught() -> None:
    """The look-alike that must fail: the description's own line ends, kept at 200 columns."""
    broken = (
        " Usage: x\n\n Predicts what the resume will refuse from outside the\n training process.\n"
    )
    assert hard_breaks(broken.ljust(200)) != []
    wrapped = (
        " Usage: x\n\n Predicts what the resume will refuse from outside the training process.\n"
    )
    assert hard_breaks(wrapped) == []
