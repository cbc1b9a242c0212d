"""Does a Python source change touch the code, or only its layout? Compared as token streams.

Two versions of a file are "comments/whitespace only" apart when their ``tokenize`` streams are
equal once comments, blank lines and indentation widths are left out: Python compiles both to the
same code. Docstrings are string tokens, values the program can read (``__doc__``, docopt,
``argparse`` descriptions), so a docstring edit is a code change; it is named as such. Two
comments are code too: the interpreter line (``#!`` on line 1, which picks the Python that runs
the file) and the encoding declaration (PEP 263, line 1 or 2, which changes how it decodes).
"""

from __future__ import annotations

import ast
import enum
import io
import re
import tokenize
from collections.abc import Iterator

_SKIPPED = frozenset({tokenize.COMMENT, tokenize.NL})
# Their text is layout (the indentation's width, the newline's kind); their presence is code.
_TYPE_ONLY = frozenset({tokenize.INDENT, tokenize.DEDENT, tokenize.NEWLINE, tokenize.ENDMARKER})

_CODING = re.compile(r"^[ \t\f]*#.*?coding[:=]")
"""A PEP 263 encoding declaration (Python reads it on line 1 or 2)."""

PY_SUFFIXES = (".py", ".pyw", ".pyi")
"""Files compared token by token."""


class Change(str, enum.Enum):
    """What kind of edit separates two versions of a Python file."""

    LAYOUT = "comments/whitespace only"
    DOCSTRINGS = "docstrings only"
    CODE = "code"


def python_change(old: bytes, new: bytes) -> Change:
    """Classify the edit from ``old`` to ``new``; anything that does not parse is CODE."""
    try:
        before, after = list(_tokens(old)), list(_tokens(new))
        if [t[:2] for t in before] == [t[:2] for t in after]:
            return Change.LAYOUT
        if _without_docstrings(old, before) == _without_docstrings(new, after):
            return Change.DOCSTRINGS
    except (SyntaxError, tokenize.TokenError, ValueError, UnicodeDecodeError):
        pass
    return Change.CODE


def _tokens(source: bytes) -> Iterator[tuple[int, str, tuple[int, int]]]:
    """Significant tokens as (type, text, start); the text is "" where only the type counts."""
    for tok in tokenize.tokenize(io.BytesIO(source).readline):
        if tok.type in _SKIPPED and not _directive(tok):
            continue
        # The ENCODING token's text is the coding cookie's codec: it changes how strings decode.
        text = "" if tok.type in _TYPE_ONLY else tok.string
        yield tok.type, text, tok.start


def _directive(tok: tokenize.TokenInfo) -> bool:
    """True for a comment that is code: the interpreter line or an encoding declaration."""
    if tok.type != tokenize.COMMENT or tok.start[0] > 2:
        return False
    return (tok.start == (1, 0) and tok.string.startswith("#!")) or bool(_CODING.match(tok.line))


def _without_docstrings(
    source: bytes, tokens: list[tuple[int, str, tuple[int, int]]]
) -> list[tuple[int, str]]:
    """The token stream (positions dropped) without docstring statements: from a docstring's
    first token through its NEWLINE (a docstring statement holds only strings)."""
    starts = _docstring_starts(source)
    out: list[tuple[int, str]] = []
    in_docstring = False
    for kind, text, start in tokens:
        if start in starts:
            in_docstring = True
        if not in_docstring:
            out.append((kind, text))
        elif kind == tokenize.NEWLINE:
            in_docstring = False
    return out


def _docstring_starts(source: bytes) -> set[tuple[int, int]]:
    """Where the module's, classes' and functions' docstrings start (line, column)."""
    starts = set()
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        first = node.body[0] if node.body else None
        if (
            isinstance(first, ast.Expr)
            and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)
        ):
            # ast columns are UTF-8 byte offsets, tokenize's characters: equal at the start of a
            # statement, which only indentation (ASCII) precedes.
            starts.add((first.lineno, first.col_offset))
    return starts
