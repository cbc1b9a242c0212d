"""Every finding path resumeguard can emit, as templates: one registry, used both when a finding
is made (an unregistered path is a bug) and when a policy rule is read (a rule no template can
match is bad input, with the nearest valid path suggested).

A template is a dotted path whose ``<placeholders>`` stand for one or more characters (dots
and slashes included, e.g. ``code.files.<path>``); ``<i>`` stands for a number.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re
import string
from collections.abc import Callable, Sequence


@dataclasses.dataclass(frozen=True)
class Template:
    """One family of finding paths."""

    text: str
    """The template, e.g. "deps.requirements.<name>"."""
    what: str
    """What a finding at this path means, in a few words."""

    @functools.cached_property
    def regex(self) -> re.Pattern[str]:
        """Matches exactly the paths of this template."""
        parts = re.split(r"(<[a-z_]+>)", self.text)
        body = "".join(
            (r"\d+" if p == "<i>" else ".+") if p.startswith("<") else re.escape(p) for p in parts
        )
        return re.compile(body + r"\Z", re.DOTALL)

    @property
    def literal(self) -> int:
        """Characters outside placeholders: more means more specific."""
        return len(re.sub(r"<[a-z_]+>", "", self.text))


def _t(text: str, what: str) -> Template:
    return Template(text, what)


TEMPLATES: tuple[Template, ...] = (
    _t("code.repo", "the run's git repository is not available now"),
    _t("code.commit", "HEAD is at another commit"),
    _t("code.branch", "another branch is checked out"),
    _t("code.remote", "the origin URL differs"),
    _t("code.root", "the repository lies elsewhere (context)"),
    _t("code.shallow", "the repository is a shallow clone: older commits may be missing"),
    _t("code.diff", "the uncommitted changes differ (recorded commit not available locally)"),
    _t("code.files.<path>", "a tracked file's content differs"),
    _t("code.untracked.<path>", "an untracked source file appeared, vanished or changed"),
    _t("code.skipped.<path>", "a file left out of the code digest (size, nested repo) changed"),
    _t("code.submodules.<path>", "a submodule is at another commit"),
    _t("deps.unavailable", "dependencies could not be read now"),
    _t("deps.python", "Python version"),
    _t("deps.implementation", "Python implementation"),
    _t("deps.platform", "OS and machine"),
    _t("deps.torch", "torch version"),
    _t("deps.cuda", "CUDA version torch was built with"),
    _t("deps.cudnn", "cuDNN version torch loads"),
    _t("deps.requirements.<name>", "a requirement line"),
    _t("deps.requirement_files.<file>", "a requirement file's digest (context)"),
    _t("deps.installed.<name>", "an installed distribution's version"),
    _t("env.unavailable", "the environment could not be read now"),
    _t("env.device_type", "device type"),
    _t("env.device_count", "number of devices"),
    _t("env.device_names", "device names"),
    _t("env.world_size", "torch.distributed world size"),
    _t("optimizer.unavailable", "the optimizer could not be fingerprinted now"),
    _t("optimizer.class", "optimizer class"),
    _t("optimizer.groups", "number of param groups"),
    _t("optimizer.groups.<i>", "a param group added or removed"),
    _t("optimizer.groups.<i>.<hyper>", "a param group's hyperparameter (or its param count)"),
    _t("optimizer.params.<i>", "an optimizer parameter added or removed"),
    _t("optimizer.params.<i>.shape", "an optimizer parameter's shape"),
    _t("optimizer.params.<i>.dtype", "an optimizer parameter's dtype"),
    _t("optimizer.params.<i>.name", "which model parameter holds an optimizer slot"),
    _t("optimizer.params.<i>.state.<key>", "a parameter's optimizer state key"),
    _t("model.unavailable", "the model could not be fingerprinted now"),
    _t("model.params.<name>", "a model parameter's shape or dtype, or one added or removed"),
    _t("model.buffers.<name>", "a model buffer's shape"),
    _t("model.order", "parameters registered in another order"),
    _t("config.<key>", "a config value"),
    _t("checkpoint.<name>.missing", "a recorded checkpoint file (or the run's copy) is gone"),
    _t("checkpoint.<name>.size", "a recorded checkpoint file (or copy) has another size"),
    _t("checkpoint.<name>.digest", "a recorded checkpoint file (or copy) has other bytes"),
    _t("checkpoint.<name>.record", "the record beside a checkpoint file is gone or differs"),
    _t("state.scheduler", "an LR scheduler was not saved, or not restored by the first step"),
    _t("state.scaler", "a GradScaler was not saved, or not restored by the first step"),
    _t("state.rng", "RNG states saved but not restored by the first step"),
    _t("state.data", "the data position was not saved mid-epoch, or not restored"),
    _t(
        "checkpoint.<name>.tensors.<key>",
        "a tensor of a sharded checkpoint that the state dict to load lacks or holds otherwise",
    ),
    _t("run.step", "the checkpoint is older than the run's last logged step"),
    _t("run.live", "another copy of the run looks alive"),
    _t("policy.rules", "the repository's policy differs from the one recorded with the run"),
)
"""Every finding path resumeguard emits."""

SECTIONS = tuple(dict.fromkeys(t.text.split(".", 1)[0] for t in TEMPLATES))
"""The first component of every finding path."""


def template_of(path: str) -> Template | None:
    """The most specific template that ``path`` is a path of, or None."""
    matching = [t for t in TEMPLATES if t.regex.match(path)]
    return max(matching, key=lambda t: t.literal) if matching else None


def require(path: str) -> str:
    """``path``, after checking that it is registered (an unregistered path is a bug)."""
    if template_of(path) is None:
        raise ValueError(f"finding path {path!r} is not registered in {__name__}.TEMPLATES")
    return path


@functools.cache
def can_match(pattern: str) -> bool:
    """True when the glob ``pattern`` matches at least one path some template can produce."""
    return any(_intersects(_glob_tokens(pattern), _template_tokens(t.text)) for t in TEMPLATES)


MOVED = {"checkpoint.step": "run.step", "optimizer.cls": "optimizer.class"}
"""Paths that earlier versions documented under another name."""


def nearest(pattern: str) -> str | None:
    """The valid pattern closest to ``pattern`` (e.g. "deps.requirements.torch" for
    "deps.requirement.torch"), or None when nothing is close."""
    if pattern in MOVED:
        return MOVED[pattern]
    parts = pattern.split(".")
    candidates: set[str] = set()
    for template in TEMPLATES:
        tparts = template.text.split(".")
        # The template's literal head, the rest of the pattern in place of its placeholders.
        for k in range(1, len(tparts) + 1):
            head = tparts[:k]
            if any(p.startswith("<") for p in head):
                break
            tail = parts[k:] if len(parts) > k else tparts[k:]
            candidates.add(".".join(head + [p if not p.startswith("<") else "*" for p in tail]))
    valid = [c for c in candidates if c != pattern and can_match(c)]
    section = parts[0] + "."
    if section[:-1] in SECTIONS:
        # A known section: a fix within it (a config key is not an env path misspelt).
        valid = [c for c in valid if c.startswith(section)]
    best = difflib.get_close_matches(pattern, valid, n=1, cutoff=0.6)
    return best[0] if best else None


def section_paths(pattern: str) -> list[str]:
    """The templates under the pattern's first component (e.g. every "env.*" path)."""
    head = pattern.split(".", 1)[0]
    return [t.text for t in TEMPLATES if t.text.split(".", 1)[0] == head]


# --- Does a glob meet a template? -----------------------------------------------------------------
# Both are sequences of tokens: one character of a set, or a run (any length) of a set. A glob's
# `*` is a run of any character, `?` one of any, `[...]` one of a class; a template placeholder
# is one character then a run (of digits for <i>). Two sequences share a string when a walk can
# pair them token by token; memoised over positions, this is quadratic in their lengths.

CharSet = Callable[[str], bool]


@dataclasses.dataclass(frozen=True)
class _Token:
    chars: CharSet
    run: bool
    witness: str = ""
    """Characters worth trying when intersecting with another set (literals and the like)."""


def _any(_: str) -> bool:
    return True


_ALPHABET = string.printable + "é"


def _template_tokens(text: str) -> tuple[_Token, ...]:
    tokens: list[_Token] = []
    for part in re.split(r"(<[a-z_]+>)", text):
        if part.startswith("<"):
            chars: CharSet = str.isdigit if part == "<i>" else _any
            tokens += [_Token(chars, False), _Token(chars, True)]
        else:
            tokens += [_Token(c.__eq__, False, c) for c in part]
    return tuple(tokens)


def _glob_tokens(pattern: str) -> tuple[_Token, ...]:
    """fnmatch's syntax: ``*``, ``?``, ``[seq]``, ``[!seq]``; an unclosed ``[`` is literal."""
    tokens: list[_Token] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            tokens.append(_Token(_any, True))
        elif c == "?":
            tokens.append(_Token(_any, False))
        elif c == "[" and (end := _class_end(pattern, i)) is not None:
            body = pattern[i + 1 : end]
            negate = body.startswith("!")
            members = _class_members(body[1:] if negate else body)
            tokens.append(_Token(_class(members, negate), False, "".join(members)))
            i = end
        else:
            tokens.append(_Token(c.__eq__, False, c))
        i += 1
    return tuple(tokens)


def _class_end(pattern: str, start: int) -> int | None:
    j = start + 1
    if j < len(pattern) and pattern[j] == "!":
        j += 1
    if j < len(pattern) and pattern[j] == "]":
        j += 1
    end = pattern.find("]", j)
    return None if end < 0 else end


def _class_members(body: str) -> set[str]:
    members: set[str] = set()
    i = 0
    while i < len(body):
        if i + 2 < len(body) and body[i + 1] == "-":
            members.update(chr(o) for o in range(ord(body[i]), ord(body[i + 2]) + 1))
            i += 3
        else:
            members.add(body[i])
            i += 1
    return members


def _class(members: set[str], negate: bool) -> CharSet:
    return (lambda ch: ch not in members) if negate else members.__contains__


def _meet(a: _Token, b: _Token) -> bool:
    """True when some character is in both sets."""
    if len(a.witness) == 1 and a.chars is not _any:
        return b.chars(a.witness)
    if len(b.witness) == 1 and b.chars is not _any:
        return a.chars(b.witness)
    return any(a.chars(ch) and b.chars(ch) for ch in a.witness + b.witness + _ALPHABET)


def _intersects(a: Sequence[_Token], b: Sequence[_Token]) -> bool:
    @functools.cache
    def walk(i: int, j: int) -> bool:
        if i == len(a) and j == len(b):
            return True
        if i < len(a) and a[i].run and walk(i + 1, j):
            return True
        if j < len(b) and b[j].run and walk(i, j + 1):
            return True
        if i == len(a) or j == len(b) or (a[i].run and b[j].run) or not _meet(a[i], b[j]):
            # Two runs side by side: skipping either (above) covers every way on.
            return False
        # Both consume one character; a run stays where it is to take more.
        return walk(i + (not a[i].run), j + (not b[j].run))

    return walk(0, 0)
