"""A policy cannot excuse its own change: the policy in force when the run was recorded judges
its resumes; a repository policy that changed since is a finding; loosening takes an explicit
policy from outside the tree, which the report names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import cli_json, commit_all, offline_project, write

import resumeguard
from resumeguard.stores.layout import RECORD_FILE
from resumeguard.verdict.policy import Rule, Severity, preset
from resumeguard.verdict.runpolicy import POLICY_ENV

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
FILES = {
    "train.py": "LR = 0.1\n",
    "docs/guide.md": "# guide\n",
    "pyproject.toml": '[tool.resumeguard]\nignore = ["code.files.docs/**"]\n',
    ".gitignore": "*.pt\n",
}
LOOSENED = '[tool.resumeguard]\nignore = ["code.files.docs/**", "code.*"]\n'


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    repo = offline_project(tmp_path, monkeypatch, FILES)
    resumeguard.init(project="p", id="pol1", repo=repo).finish()
    return repo


def check(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, str], str]:
    code, report = cli_json(capsys, "check", "--run-id", "pol1", *args)
    return code, {f["path"]: f["severity"] for f in report["findings"]}, report.get("policy", "")


def test_the_policy_in_force_is_kept_with_the_run(project: Path, tmp_path: Path) -> None:
    [record_file] = (tmp_path / "wb").rglob(RECORD_FILE)
    kept = json.loads(record_file.read_text())["policy"]
    assert kept["preset"] == "strict"
    assert kept["rules"] == [["ignore", "code.files.docs/**", "pyproject.toml"]]


def test_show_names_the_kept_policy(capsys: pytest.CaptureFixture[str], project: Path) -> None:
    from helpers import cli

    write(project, {"pyproject.toml": LOOSENED})  # the repository's policy now is not the run's
    code, out, _ = cli(capsys, "show", "--run-id", "pol1")
    assert code == 0
    assert "policy: strict; ignore code.files.docs/**\n" in out


def test_a_commit_that_loosens_the_policy_cannot_excuse_itself(
    capsys: pytest.CaptureFixture[str], project: Path
) -> None:
    write(project, {"train.py": "LR = 0.5\n", "pyproject.toml": LOOSENED})
    commit_all(project, "tune lr; quiet the guard")
    code, found, policy = check(capsys)
    assert code == 1
    assert found["code.files.train.py"] == "block"
    assert found["policy.rules"] == "block"
    assert "recorded with the run" in policy


def test_what_the_recorded_policy_allows_goes_ahead(
    capsys: pytest.CaptureFixture[str], project: Path
) -> None:
    write(project, {"docs/guide.md": "# guide, reworded\n"})
    commit_all(project, "docs")
    code, found, _ = check(capsys)
    assert code == 0, found
    assert "policy.rules" not in found


def test_a_rescue_is_one_explicit_policy_file_named_in_the_report(
    capsys: pytest.CaptureFixture[str], project: Path, tmp_path: Path
) -> None:
    write(project, {"train.py": "LR = 0.5\n"})
    commit_all(project, "tune lr")
    assert check(capsys)[0] == 1
    rescue = tmp_path / "rescue.toml"  # outside the tree under judgement
    rescue.write_text('warn = ["code.files.train.py"]\n')
    code, found, policy = check(capsys, "--policy", str(rescue))
    assert code == 0
    assert found == {"code.files.train.py": "warn", "code.commit": "info"}
    assert str(rescue) in policy and "given explicitly" in policy
    # The recorded rules still hold under the rescue: the docs stay ignored.
    write(project, {"docs/guide.md": "# again\n"})
    assert check(capsys, "--policy", str(rescue))[1] == found


def test_a_job_script_rescues_with_the_environment(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(project, {"train.py": "LR = 0.5\n"})
    with pytest.raises(resumeguard.ResumeBlocked):
        resumeguard.init(project="p", id="pol1", repo=project, resume="must")
    rescue = tmp_path / "rescue.toml"
    rescue.write_text('ignore = ["code.files.train.py"]\n')
    monkeypatch.setenv(POLICY_ENV, str(rescue))
    run = resumeguard.init(project="p", id="pol1", repo=project, resume="must")
    run.finish()  # type: ignore[attr-defined]


def test_policy_argument_is_explicit(project: Path) -> None:
    write(project, {"train.py": "LR = 0.5\n", "pyproject.toml": LOOSENED})
    with pytest.raises(resumeguard.ResumeBlocked) as info:
        resumeguard.init(project="p", id="pol1", repo=project, resume="must")
    assert "policy.rules" in {f.path for f in info.value.report.blocking}
    allow = preset("strict").with_rules([Rule("code.*", Severity.IGNORE, "release script")])
    run = resumeguard.init(project="p", id="pol1", repo=project, resume="must", policy=allow)
    run.finish()  # type: ignore[attr-defined]


def test_a_preset_name_keeps_the_recorded_rules(
    capsys: pytest.CaptureFixture[str], project: Path
) -> None:
    write(project, {"train.py": "LR = 0.5\n", "docs/guide.md": "# x\n", "pyproject.toml": LOOSENED})
    code, found, policy = check(capsys, "--policy", "lenient")
    assert code == 0
    assert found["code.files.train.py"] == "warn"
    assert found["policy.rules"] == "warn"
    assert "code.files.docs/guide.md" not in found, "the recorded ignore still holds"
    assert "preset lenient" in policy


def test_a_tighter_repository_policy_is_reported_too(
    capsys: pytest.CaptureFixture[str], project: Path
) -> None:
    write(project, {"pyproject.toml": '[tool.resumeguard]\nblock = ["deps.installed.*"]\n'})
    code, found, _ = check(capsys)
    assert found["policy.rules"] == "block" and code == 1


def test_records_without_a_kept_policy_are_judged_by_the_repository(tmp_path: Path) -> None:
    from resumeguard.records.run import record_from_json
    from resumeguard.verdict.runpolicy import for_resume

    old = json.loads((FIXTURES / "fingerprints" / "schema-1.json").read_text())
    assert record_from_json(old).policy is None  # old records stay readable
    (tmp_path / "pyproject.toml").write_text('[tool.resumeguard]\nwarn = ["config.*"]\n')
    policy, findings = for_resume(None, None, tmp_path)
    assert findings == []
    assert [r.pattern for r in policy.rules] == ["config.*"]


def test_a_bare_preset_object_keeps_the_recorded_rules(tmp_path: Path) -> None:
    """A ``Policy`` without rules of its own swaps the preset like a preset name: the recorded
    rules stay, and a changed repository policy is still a finding."""
    from resumeguard.verdict.runpolicy import for_resume

    (tmp_path / "pyproject.toml").write_text(LOOSENED)
    docs = [["ignore", "code.files.docs/**", "pyproject.toml"]]
    kept = {"preset": "strict", "rules": docs, "repository": {"preset": "strict", "rules": docs}}
    policy, findings = for_resume(preset("strict"), kept, tmp_path)
    assert [r.pattern for r in policy.rules] == ["code.files.docs/**"]
    assert [f.path for f in findings] == ["policy.rules"]
    assert policy.judge(findings[0]).severity is Severity.BLOCK


def test_the_repositorys_preset_never_judges_a_recorded_run(tmp_path: Path) -> None:
    """A repository that now says ``preset = "lenient"`` changes nothing of what judges the
    resume: its change is ``policy.rules``, blocked by the recorded strict preset; the same
    preset given explicitly does judge."""
    from resumeguard.verdict.runpolicy import for_resume

    (tmp_path / "pyproject.toml").write_text('[tool.resumeguard]\npreset = "lenient"\n')
    kept = {"preset": "strict", "rules": [], "repository": {"preset": "strict", "rules": []}}
    policy, findings = for_resume(None, kept, tmp_path)
    assert policy.name == "strict"
    assert [policy.judge(f).severity for f in findings] == [Severity.BLOCK]
    policy, findings = for_resume("lenient", kept, tmp_path)
    assert policy.name == "lenient" and "given explicitly" in policy.origin


def test_for_resume_names_each_policy_it_picks_and_what_changed(tmp_path: Path) -> None:
    """Each way of choosing the policy of a resume, with the origin the report names: the
    kept one, a bare preset object, a policy object with rules of its own (it judges alone),
    and an explicit preset for a record from before policies were kept."""
    from resumeguard.verdict.policy import Policy
    from resumeguard.verdict.runpolicy import for_resume

    docs = [["ignore", "code.files.docs/**", "pyproject.toml"]]
    kept = {"preset": "strict", "rules": docs, "repository": {"preset": "strict", "rules": docs}}
    (tmp_path / "pyproject.toml").write_text(
        '[tool.resumeguard]\nignore = ["code.files.docs/**"]\n'
    )
    policy, findings = for_resume(None, kept, tmp_path)
    assert (policy.origin, findings) == ("recorded with the run", [])
    policy, findings = for_resume(preset("lenient"), kept, tmp_path)
    assert policy.origin == (
        "preset lenient, given explicitly, with the rules recorded with the run"
    )
    assert findings == [], "the repository's policy is unchanged"
    own = Policy("strict", Severity.BLOCK, rules=(Rule("config.lr", Severity.WARN, "mine"),))
    policy, findings = for_resume(own, kept, tmp_path)
    assert (policy.rules, policy.origin, findings) == (own.rules, "given as policy=", [])
    assert for_resume("lenient", None, tmp_path)[0].name == "lenient"
    (tmp_path / "pyproject.toml").write_text('[tool.resumeguard]\nignore = ["code.*"]\n')
    [changed] = for_resume(None, kept, tmp_path)[1]
    assert (changed.recorded, changed.current) == (
        "strict; ignore code.files.docs/**",
        "strict; ignore code.*",
    )


def test_a_policy_asked_for_outside_the_tree_is_checked_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from resumeguard.errors import BadInput
    from resumeguard.verdict.runpolicy import validate

    validate("lenient")
    validate(None)
    missing = tmp_path / "missing.toml"
    with pytest.raises(BadInput, match=r"^cannot read policy file .*missing\.toml"):
        validate(str(missing))
    with pytest.raises(BadInput, match=r"^unknown policy preset 'paranoid'"):
        validate("paranoid")
    monkeypatch.setenv(POLICY_ENV, "paranoid")
    with pytest.raises(BadInput, match=r"^unknown policy preset 'paranoid'"):
        validate(None)


def test_only_a_repository_policy_is_kept_as_the_repositorys(tmp_path: Path) -> None:
    from resumeguard.verdict.policy import load_policy
    from resumeguard.verdict.runpolicy import for_resume, to_keep

    (tmp_path / "pyproject.toml").write_text('[tool.resumeguard]\nignore = ["code.root"]\n')
    from_tree = to_keep(load_policy(None, repo=tmp_path), tmp_path)
    assert from_tree["repository"] == {
        "preset": "strict",
        "rules": [["ignore", "code.root", "pyproject.toml"]],
    }
    given = tmp_path / "mine.toml"
    given.write_text('warn = ["config.lr"]\n')
    assert to_keep(load_policy(str(given)), tmp_path)["repository"] is None
    policy, findings = for_resume(str(given), from_tree, tmp_path)
    assert policy.origin == (
        f"policy file {given}, given explicitly, on top of the policy recorded with the run"
    )
    assert [r.pattern for r in policy.overrides] == ["config.lr"] and findings == []
