"""Policy: finding paths -> severities, from a preset plus the user's glob rules.

How rules combine (documented in docs/policy.md, tested in tests/test_policy.py):
1. A user rule (pyproject.toml ``[tool.resumeguard]`` or a ``--policy`` file) beats the preset.
2. Among the rules of one level, the most specific pattern wins: the one with the most literal
   (non-wildcard) characters; an exact path is the most specific of all.
3. A tie in specificity goes to the stricter severity (block > warn > info > ignore).
4. With no user rule, a context finding (one that only explains others) is info, and so is a
   change that cannot change the computation (a run-control config key, a comment-only edit).
5. With no rule at all, the preset's default applies (strict: block, lenient: warn).
Patterns are fnmatch globs over the dotted path: ``*`` (and ``**``) match any run of characters,
dots and slashes included, so ``code.files.*.md`` matches markdown files in any folder.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from resumeguard.errors import BadInput
from resumeguard.verdict import paths as finding_paths
from resumeguard.verdict.downgrades import Downgrade, downgrade
from resumeguard.verdict.findings import Finding, Judged, Severity

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

LEVELS = ("ignore", "info", "warn", "block")


@dataclasses.dataclass(frozen=True)
class Rule:
    """A glob over finding paths and the severity it gives."""

    pattern: str
    """fnmatch glob over the dotted finding path."""
    severity: Severity
    """Severity for matching findings."""
    source: str
    """Where the rule comes from, e.g. "preset strict" or "pyproject.toml"."""
    needs: str = ""
    """A finding path this rule relies on being compared (a batch factor's warn relies on the
    effective batch size): where the record could not hold that fact, the rule is void."""

    @property
    def specificity(self) -> int:
        """Literal characters in the pattern: more means more specific."""
        return len(re.sub(r"[*?]|\[[^\]]*\]", "", self.pattern))

    def matches(self, path: str) -> bool:
        """True when the pattern matches the finding path."""
        return fnmatch.fnmatchcase(path, self.pattern)

    def __str__(self) -> str:
        return f'{self.severity.value} "{self.pattern}" ({self.source})'


def _preset(name: str, default: Severity, rules: Mapping[str, Severity]) -> Policy:
    source = f"preset {name}"
    dead = [p for p in rules if not finding_paths.can_match(p)]
    if dead:  # a preset rule that can never apply is a bug, caught at import
        raise AssertionError(f"{source}: rules {dead} match no registered finding path")
    return Policy(
        name=name,
        default=default,
        preset=tuple(Rule(p, s, source) for p, s in rules.items()),
    )


@dataclasses.dataclass(frozen=True)
class Policy:
    """A preset with the user's rules on top; pure and immutable."""

    name: str
    """Preset name."""
    default: Severity
    """Severity when no rule matches."""
    preset: tuple[Rule, ...] = ()
    """The preset's own rules."""
    rules: tuple[Rule, ...] = ()
    """The user's rules (they beat the preset)."""
    overrides: tuple[Rule, ...] = ()
    """Rules given explicitly for this check (``--policy FILE`` on a run with a recorded
    policy): they beat every other rule."""
    origin: str = ""
    """Where this policy comes from, in words, for the report."""

    def judge(self, finding: Finding) -> Judged:
        """The severity of one finding and the rule that decided it: a user rule, else the
        finding's downgrade (see :mod:`resumeguard.verdict.downgrades`), else the preset; a
        binding downgrade caps even a user rule."""
        rule = _best(self.overrides, finding.path) or _best(self.rules, finding.path)
        entry = downgrade(finding.downgrade) if finding.downgrade else None
        if entry is not None and (rule is None or (entry.binding and _above(rule, entry))):
            detail = f"{finding.detail}: " if finding.detail else ""
            return Judged(finding, entry.severity, f"{detail}{entry.reason}")
        rule = rule or _best(self.preset, finding.path)
        if rule is None:
            return Judged(finding, self.default, f"default of preset {self.name}")
        return Judged(finding, rule.severity, str(rule))

    def judge_all(self, findings: Iterable[Finding]) -> list[Judged]:
        """Judge each finding; ignored ones are dropped. A rule that needs a fact the record
        could not hold (see :attr:`Rule.needs`) does not apply."""
        findings = list(findings)
        unrecorded = {f.path for f in findings if f.unrecorded}
        policy = self
        if unrecorded:
            kept = tuple(r for r in self.preset if r.needs not in unrecorded)
            policy = dataclasses.replace(self, preset=kept)
        judged = (policy.judge(f) for f in findings)
        return [j for j in judged if j.severity is not Severity.IGNORE]

    def with_rules(self, rules: Iterable[Rule]) -> Policy:
        """This policy with more user rules."""
        return dataclasses.replace(self, rules=(*self.rules, *rules))

    def with_preset_rules(self, rules: Iterable[Rule]) -> Policy:
        """This policy with more preset-level rules (any user rule still beats them)."""
        return dataclasses.replace(self, preset=(*self.preset, *rules))

    def to_kept(self) -> dict[str, Any]:
        """The JSON form kept with a run: the preset and the user's rules with their sources."""
        return {
            "preset": self.name,
            "rules": [[r.severity.value, r.pattern, r.source] for r in self.rules],
        }

    @classmethod
    def from_kept(cls, data: Any, *, origin: str = "") -> Policy:
        """Rebuild a policy kept with a run; BadInput when malformed. Its rules are not
        validated again: they were in force, whatever later versions call their paths."""
        try:
            rules = tuple(
                Rule(str(p), Severity(level), str(src)) for level, p, src in data["rules"]
            )
            return dataclasses.replace(preset(str(data["preset"])), rules=rules, origin=origin)
        except (TypeError, KeyError, ValueError) as e:
            raise BadInput(f"the policy recorded with the run is malformed ({e})") from e

    def describe(self) -> str:
        """The preset and the user's rules in one line, e.g. 'strict; ignore code.files.*.md'."""
        rules = sorted(f"{r.severity.value} {r.pattern}" for r in self.rules)
        return "; ".join([self.name, *rules])


def _above(rule: Rule, entry: Downgrade) -> bool:
    """True when ``rule`` judges more severely than the downgrade ``entry`` allows."""
    return rule.severity.rank > entry.severity.rank


def _best(rules: Iterable[Rule], path: str) -> Rule | None:
    matching = [r for r in rules if r.matches(path)]
    if not matching:
        return None
    return max(matching, key=lambda r: (r.specificity, r.severity.rank))


B, W, INFO = Severity.BLOCK, Severity.WARN, Severity.INFO

PRESETS: dict[str, Policy] = {
    # Anything that can change what the run computes blocks; context and noise do not.
    "strict": _preset(
        "strict",
        B,
        {
            "code.root": INFO,
            "code.shallow": INFO,
            "code.remote": W,
            "code.branch": W,
            "code.submodules.*": B,
            "deps.installed.*": W,
            "deps.requirement_files.*": INFO,
            "deps.platform": W,
            "env.device_names": W,
            "run.step": W,
            "state.scheduler": W,
            "state.scaler": W,
            "state.rng": INFO,
            "state.data": INFO,
        },
    ),
    # Block only what breaks training mechanically or loses data; warn about the rest.
    "lenient": _preset(
        "lenient",
        W,
        {
            "code.root": INFO,
            "code.shallow": INFO,
            "deps.requirement_files.*": INFO,
            "optimizer.*": B,
            "model.*": B,
            "checkpoint.*": B,
            "run.*": B,
            "run.step": W,
            "state.rng": INFO,
            "state.data": INFO,
        },
    ),
}


def preset(name: str) -> Policy:
    """A preset by name; BadInput for an unknown one."""
    try:
        return PRESETS[name]
    except KeyError:
        raise BadInput(
            f"unknown policy preset {name!r}: use one of {', '.join(PRESETS)} or a TOML file"
        ) from None


def load_policy(spec: str | None = None, *, repo: str | Path | None = None) -> Policy:
    """The policy for a check.

    ``spec`` is a preset name or a TOML file path. A file replaces the repo's pyproject rules;
    a preset name keeps them (so ``--policy lenient`` still honours the team's ignores).
    """
    if is_file_spec(spec):
        assert spec is not None
        return dataclasses.replace(
            _from_table(_read_toml(Path(spec)), source=Path(spec).name, file_given=True),
            origin=f"policy file {spec}",
        )
    table: Mapping[str, Any] = {}
    if repo is not None:
        pyproject = Path(repo) / "pyproject.toml"
        if pyproject.is_file():
            table = _tool_table(_read_toml(pyproject), str(pyproject))
    policy = _from_table(table, source=PYPROJECT, file_given=False)
    if spec:
        policy = dataclasses.replace(preset(spec), rules=policy.rules)
    rules = " + pyproject.toml" if policy.rules else ""
    return dataclasses.replace(policy, origin=f"preset {policy.name}{rules}")


PYPROJECT = "pyproject.toml"
"""The source of rules read from the repository's ``[tool.resumeguard]``."""


def is_file_spec(spec: str | None) -> bool:
    """True when a ``--policy`` value names a TOML file rather than a preset."""
    return bool(spec) and (str(spec).endswith(".toml") or Path(str(spec)).is_file())


def file_preset(spec: str) -> str | None:
    """The preset a policy file sets, None when it sets none."""
    data = _read_toml(Path(spec))
    table = _tool_table(data, spec) if "tool" in data else data
    value = table.get("preset")
    return str(value) if value is not None else None


def _read_toml(path: Path) -> dict[str, Any]:
    from resumeguard.io import bounded

    try:
        return tomllib.loads(bounded.read_text(path))
    except OSError as e:
        raise BadInput(f"cannot read policy file {path}: {e.strerror or e}") from e
    except tomllib.TOMLDecodeError as e:
        raise BadInput(f"{path}: invalid TOML ({e})") from e
    except (ValueError, RecursionError) as e:
        raise BadInput(f"cannot read policy file {path}: {e}") from None


def _tool_table(data: Mapping[str, Any], source: str) -> Mapping[str, Any]:
    """``[tool.resumeguard]`` of a TOML document; BadInput when ``tool`` or it is not a table."""
    tool = data.get("tool", {})
    if not isinstance(tool, Mapping):
        raise BadInput(f"{source}: `tool` must be a table ([tool.resumeguard] holds the rules)")
    table = tool.get("resumeguard", {})
    if not isinstance(table, Mapping):
        raise BadInput(f"{source}: [tool.resumeguard] must be a table")
    return table


def _from_table(data: Mapping[str, Any], *, source: str, file_given: bool) -> Policy:
    table = data
    if file_given and "tool" in data:
        table = _tool_table(data, source)
    unknown = set(table) - {"preset", *LEVELS}
    if unknown:
        raise BadInput(
            f"{source}: unknown policy key(s) {', '.join(sorted(unknown))}; "
            f"allowed: preset, {', '.join(LEVELS)}"
        )
    base = preset(str(table.get("preset", "strict")))
    rules: list[Rule] = []
    for level in LEVELS:
        patterns = table.get(level, [])
        if isinstance(patterns, str):
            patterns = [patterns]
        if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
            raise BadInput(f"{source}: '{level}' must be a list of glob strings")
        for pattern in patterns:
            _check_pattern(pattern, source)
            rules.append(Rule(pattern, Severity(level), source))
    return base.with_rules(rules)


def _check_pattern(pattern: str, source: str) -> None:
    """BadInput for a rule that no finding path resumeguard emits can match (a typo would
    otherwise leave the finding it meant at another severity, silently)."""
    if finding_paths.can_match(pattern):
        return
    suggestion = finding_paths.nearest(pattern)
    if suggestion is not None:
        advice = f"did you mean {suggestion!r}?"
    elif finding_paths.section_paths(pattern):
        advice = "paths there: " + ", ".join(finding_paths.section_paths(pattern))
    else:
        advice = f"paths start with {', '.join(finding_paths.SECTIONS)} (e.g. 'code.files.docs/**')"
    raise BadInput(f"{source}: rule {pattern!r} matches no finding path; {advice}")
