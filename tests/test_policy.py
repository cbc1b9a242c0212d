"""Policy: presets, user rules from pyproject.toml and --policy files, and how rules combine."""

from __future__ import annotations

from pathlib import Path

import pytest

from resumeguard.errors import BadInput
from resumeguard.verdict.findings import Finding, Severity
from resumeguard.verdict.policy import Rule, load_policy, preset


def finding(path: str, *, context: bool = False) -> Finding:
    return Finding(path, "a", "b", "m", "h", downgrade="context" if context else "")


def severity(policy_spec: str | None, path: str, repo: Path | None = None, **kw: bool) -> Severity:
    return load_policy(policy_spec, repo=repo).judge(finding(path, **kw)).severity


def test_strict_blocks_code_and_requirements_warns_installed() -> None:
    assert severity("strict", "code.files.src/train.py") is Severity.BLOCK
    assert severity("strict", "deps.requirements.torch") is Severity.BLOCK
    assert severity("strict", "deps.installed.numpy") is Severity.WARN
    assert severity("strict", "optimizer.groups.0.lr") is Severity.BLOCK
    assert severity("strict", "code.root") is Severity.INFO


def test_default_preset_is_strict() -> None:
    assert severity(None, "config.lr") is Severity.BLOCK


def test_lenient_warns_code_but_blocks_optimizer() -> None:
    assert severity("lenient", "code.files.src/train.py") is Severity.WARN
    assert severity("lenient", "optimizer.params.3.shape") is Severity.BLOCK
    assert severity("lenient", "checkpoint.ckpt.pt.size") is Severity.BLOCK
    assert severity("lenient", "run.step") is Severity.WARN
    assert severity("strict", "run.step") is Severity.WARN


def test_user_rule_beats_preset(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.resumeguard]\nignore = ["code.files.docs/**"]\n'
    )
    assert severity(None, "code.files.docs/guide/intro.md", tmp_path) is Severity.IGNORE
    assert severity(None, "code.files.src/train.py", tmp_path) is Severity.BLOCK


def test_most_specific_user_rule_wins(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        "[tool.resumeguard]\n"
        'warn = ["deps.installed.*"]\n'
        'block = ["deps.installed.numpy"]\n'
        'ignore = ["code.files.*.md"]\n'
    )
    assert severity(None, "deps.installed.numpy", tmp_path) is Severity.BLOCK
    assert severity(None, "deps.installed.rich", tmp_path) is Severity.WARN
    # '*' crosses dots and slashes: markdown anywhere.
    assert severity(None, "code.files.docs/a/b.md", tmp_path) is Severity.IGNORE


def test_tie_goes_to_the_stricter_severity(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.resumeguard]\nignore = ["config.*"]\nblock = ["config.*"]\n'
    )
    assert severity(None, "config.lr", tmp_path) is Severity.BLOCK


def test_context_findings_are_info_unless_a_user_rule_names_them(tmp_path: Path) -> None:
    assert severity(None, "code.commit", context=True) is Severity.INFO
    (tmp_path / "pyproject.toml").write_text('[tool.resumeguard]\nblock = ["code.commit"]\n')
    assert severity(None, "code.commit", tmp_path, context=True) is Severity.BLOCK


def test_unmatched_path_takes_the_preset_default() -> None:
    policy = preset("lenient")
    judged = policy.judge(finding("config.batch_size"))
    assert judged.severity is Severity.WARN
    assert "default" in judged.rule


def test_policy_file_replaces_pyproject_and_sets_preset(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.resumeguard]\nignore = ["config.*"]\n')
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text('preset = "lenient"\nblock = ["config.lr"]\n')
    policy = load_policy(str(policy_file), repo=tmp_path)
    assert policy.name == "lenient"
    assert policy.judge(finding("config.lr")).severity is Severity.BLOCK
    assert policy.judge(finding("config.seed")).severity is Severity.WARN  # pyproject not used


def test_a_rule_given_as_a_string_is_one_pattern(tmp_path: Path) -> None:
    """Documented: ``block = "config.lr"`` is ``block = ["config.lr"]`` (not its characters)."""
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text('preset = "lenient"\nblock = "config.lr"\n')
    policy = load_policy(str(policy_file))
    assert [r.pattern for r in policy.rules] == ["config.lr"]
    assert policy.judge(finding("config.lr")).severity is Severity.BLOCK
    assert policy.judge(finding("config.seed")).severity is Severity.WARN


def test_policy_file_may_use_the_tool_table(tmp_path: Path) -> None:
    policy_file = tmp_path / "p.toml"
    policy_file.write_text('[tool.resumeguard]\nwarn = ["code.*"]\n')
    assert severity(str(policy_file), "code.files.a.py") is Severity.WARN


def test_preset_name_keeps_pyproject_rules(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.resumeguard]\nignore = ["config.seed"]\n')
    assert severity("lenient", "config.seed", tmp_path) is Severity.IGNORE


def test_ignored_findings_are_dropped() -> None:
    policy = preset("strict").with_rules([Rule("config.*", Severity.IGNORE, "test")])
    assert policy.judge_all([finding("config.lr"), finding("code.commit")])[0].finding.path == (
        "code.commit"
    )


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('bogus = ["x"]\n', "unknown policy key"),
        ('ignore = "cod.files.x"\n', "matches no finding path"),
        ("ignore = [1]\n", "must be a list of glob strings"),
        ('preset = "loose"\n', "unknown policy preset"),
        ("ignore = [\n", "invalid TOML"),
    ],
)
def test_bad_policy_files_are_bad_input(tmp_path: Path, text: str, needle: str) -> None:
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(text)
    with pytest.raises(BadInput, match=needle):
        load_policy(str(policy_file))


def test_unknown_preset_name() -> None:
    with pytest.raises(BadInput, match="unknown policy preset"):
        load_policy("paranoid")


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ('ignore = ["cod.files.x"]\n', "rule 'cod.files.x' matches no finding path; did you mean "
         "'code.files.x'?"),
        ('ignore = ["checkpoint.step"]\n', "rule 'checkpoint.step' matches no finding path; did "
         "you mean 'run.step'?"),
        ('warn = ["env.bogus_key"]\n', "rule 'env.bogus_key' matches no finding path; paths "
         "there: env.unavailable, env.device_type, env.device_count, env.device_names, "
         "env.world_size"),
        ('block = ["zzz"]\n', "rule 'zzz' matches no finding path; paths start with code, deps, "
         "env, optimizer, model, config, checkpoint, state, run, policy (e.g. "
         "'code.files.docs/**')"),
        ("tool = 1\n", "`tool` must be a table ([tool.resumeguard] holds the rules)"),
        ("[tool]\nresumeguard = 1\n", "[tool.resumeguard] must be a table"),
        ("ignore = [1]\n", "'ignore' must be a list of glob strings"),
        ('bogus = ["x"]\nother = 1\n', "unknown policy key(s) bogus, other; allowed: preset, "
         "ignore, info, warn, block"),
    ],
)  # fmt: skip
def test_a_bad_policy_file_is_one_line_naming_the_file_and_the_fix(
    tmp_path: Path, text: str, line: str
) -> None:
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(text)
    with pytest.raises(BadInput) as bad:
        load_policy(str(policy_file))
    assert str(bad.value) == f"policy.toml: {line}"


def test_a_bad_repository_policy_names_its_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("tool = 1\n")
    with pytest.raises(BadInput) as bad:
        load_policy(None, repo=tmp_path)
    assert str(bad.value) == (
        f"{tmp_path / 'pyproject.toml'}: `tool` must be a table ([tool.resumeguard] holds "
        "the rules)"
    )
    missing = tmp_path / "missing.toml"
    with pytest.raises(BadInput) as unread:
        load_policy(str(missing))
    assert str(unread.value) == f"cannot read policy file {missing}: No such file or directory"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[tool.resumeguard]\npreset = "lenient"\n', "lenient"),
        ('preset = "lenient"\n', "lenient"),
        ('[tool.other]\npreset = "lenient"\n', None),
        ('ignore = ["code.root"]\n', None),
    ],
)
def test_the_preset_a_policy_file_sets(tmp_path: Path, text: str, expected: str | None) -> None:
    from resumeguard.verdict.policy import file_preset

    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(text)
    assert file_preset(str(policy_file)) == expected
    policy_file.write_text("tool = 1\n")
    with pytest.raises(BadInput) as bad:
        file_preset(str(policy_file))
    assert str(bad.value).startswith(f"{policy_file}: `tool` must be a table")


def test_a_preset_is_its_rules_under_its_name_and_a_dead_rule_is_a_bug() -> None:
    from resumeguard.verdict.policy import _preset

    built = _preset("mine", Severity.WARN, {"code.root": Severity.INFO, "model.*": Severity.BLOCK})
    assert (built.name, built.default, built.rules, built.overrides) == (
        "mine",
        Severity.WARN,
        (),
        (),
    )
    assert built.preset == (
        Rule("code.root", Severity.INFO, "preset mine"),
        Rule("model.*", Severity.BLOCK, "preset mine"),
    )
    with pytest.raises(AssertionError, match=r"^preset mine: rules \['cod.root'\] match no "):
        _preset("mine", Severity.WARN, {"code.root": Severity.INFO, "cod.root": Severity.INFO})


def test_a_rule_at_a_binding_downgrades_severity_decides_and_is_named() -> None:
    """A binding downgrade caps only a rule above it: a rule at its severity is the rule that
    judged, and a stricter one is capped."""
    unrecorded = Finding("config.trainer", None, 3, "m", "h", downgrade="not-recorded")
    at = preset("strict").with_rules([Rule("config.trainer", Severity.INFO, "pyproject.toml")])
    judged = at.judge(unrecorded)
    assert (judged.severity, judged.rule) == (
        Severity.INFO,
        'info "config.trainer" (pyproject.toml)',
    )
    above = preset("strict").with_rules([Rule("config.trainer", Severity.WARN, "pyproject.toml")])
    assert above.judge(unrecorded).severity is Severity.INFO
    assert above.judge(unrecorded).rule.startswith("not recorded when the run started")


def test_a_repository_without_a_tool_table_has_no_rules(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    policy = load_policy(None, repo=tmp_path)
    assert (policy.name, policy.rules, policy.origin) == ("strict", (), "preset strict")


def test_preset_level_rules_lose_to_the_users() -> None:
    base = preset("strict").with_rules([Rule("config.lr", Severity.WARN, "pyproject.toml")])
    framed = base.with_preset_rules(
        [Rule("config.*", Severity.INFO, "lightning"), Rule("config.lr", Severity.IGNORE, "x")]
    )
    assert framed.judge(finding("config.epochs")).severity is Severity.INFO
    assert framed.judge(finding("config.lr")).severity is Severity.WARN
    assert framed.preset[-2:] == (
        Rule("config.*", Severity.INFO, "lightning"),
        Rule("config.lr", Severity.IGNORE, "x"),
    )


def test_a_kept_policy_round_trips_and_a_malformed_one_is_bad_input() -> None:
    from resumeguard.verdict.policy import Policy

    mine = preset("lenient").with_rules([Rule("config.lr", Severity.BLOCK, "mine.toml")])
    back = Policy.from_kept(mine.to_kept())
    assert (back.name, back.rules, back.origin) == ("lenient", mine.rules, "")
    with pytest.raises(BadInput) as bad:
        Policy.from_kept({"preset": "strict", "rules": [["loud", "config.lr", "x"]]})
    assert str(bad.value) == (
        "the policy recorded with the run is malformed ('loud' is not a valid Severity)"
    )


def test_a_policy_file_that_is_not_text_is_one_line(tmp_path: Path) -> None:
    policy_file = tmp_path / "policy.toml"
    policy_file.write_bytes(b'ignore = ["code.root"]\n\xff\n')
    with pytest.raises(BadInput) as bad:
        load_policy(str(policy_file))
    assert str(bad.value) == f"cannot read policy file {policy_file}: not UTF-8 text (byte 23)"


def test_a_preset_rule_that_needs_an_unrecorded_fact_is_void() -> None:
    """A factor's warn relies on the product being compared: where the record could not hold
    the product, the factor's change keeps the preset's block; where it could, it warns."""
    factor = Rule("config.batch_size", Severity.WARN, "batch factors", needs="config.effective")
    policy = preset("strict").with_preset_rules([factor])
    changed = finding("config.batch_size")
    unrecorded = Finding("config.effective", None, 64, "m", "h", downgrade="not-recorded")
    [judged] = policy.judge_all([changed])
    assert (judged.severity, judged.rule) == (Severity.WARN, str(factor))
    void = policy.judge_all([changed, unrecorded])
    assert [(j.finding.path, j.severity) for j in void] == [
        ("config.batch_size", Severity.BLOCK),
        ("config.effective", Severity.INFO),
    ]
    assert policy.preset[-1] == factor, "the policy itself is unchanged"


def test_a_policy_names_where_it_came_from(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.resumeguard]\nignore = ["code.root"]\n')
    assert load_policy(None, repo=tmp_path).origin == "preset strict + pyproject.toml"
    assert load_policy("lenient", repo=tmp_path).origin == "preset lenient + pyproject.toml"
    assert load_policy("lenient").origin == "preset lenient"
    given = tmp_path / "mine.toml"
    given.write_text('preset = "lenient"\n')
    assert load_policy(str(given)).origin == f"policy file {given}"
    with pytest.raises(BadInput) as bad:
        load_policy("paranoid")
    assert str(bad.value) == (
        "unknown policy preset 'paranoid': use one of strict, lenient or a TOML file"
    )
