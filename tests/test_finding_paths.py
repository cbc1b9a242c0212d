"""The finding-path registry: every path emitted is registered, every rule must be able to match
one (exit 2 with the nearest valid path otherwise), presets hold no dead rules, and each family
of paths is reported at the severity docs/finding-paths.md promises."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from helpers import cli, cli_json, make_repo, offline_project, write

import resumeguard
from resumeguard.collect.env import EnvRecord
from resumeguard.errors import BadInput
from resumeguard.records.fingerprint import Fingerprint, dumps, take
from resumeguard.verdict import paths as finding_paths
from resumeguard.verdict.compare import compare
from resumeguard.verdict.findings import Severity
from resumeguard.verdict.hints import explain
from resumeguard.verdict.policy import PRESETS, load_policy, preset


def test_presets_hold_no_dead_rules() -> None:
    for policy in PRESETS.values():
        for rule in policy.preset:
            assert finding_paths.can_match(rule.pattern), rule


def test_an_unregistered_path_cannot_be_emitted() -> None:
    with pytest.raises(ValueError, match="not registered"):
        explain("checkpoint.step", 1, 2)
    assert explain("run.step", 5, 2).path == "run.step"


@pytest.mark.parametrize(
    ("pattern", "suggestion"),
    [
        ("deps.requirement.torch", "deps.requirements.torch"),
        ("code.file.src/train.py", "code.files.src/train.py"),
        ("optimzer.*", "optimizer.*"),
        ("checkpoint.step", "run.step"),
        ("deps.instaled.numpy", "deps.installed.numpy"),
    ],
)
def test_a_rule_that_cannot_match_is_bad_input_with_the_nearest_path(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, pattern: str, suggestion: str
) -> None:
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(f'ignore = ["{pattern}"]\n')
    with pytest.raises(BadInput, match=f"did you mean '{suggestion}'"):
        load_policy(str(policy_file))
    fp = tmp_path / "fp.json"
    fp.write_text(dumps(take(repo=None)))
    code, out, err = cli(capsys, "diff", str(fp), str(fp), "--policy", str(policy_file))
    assert code == 2 and f"did you mean '{suggestion}'" in err, (out, err)
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "pattern",
    [
        "deps.requirements.torch",
        "deps.requirements.torch*",
        "code.files.docs/**",
        "code.files.*.md",
        "code.untracked.[a-z]*.py",
        "optimizer.groups.*.lr",
        "model.params.encoder.*",
        "checkpoint.*",
        "run.step",
        "config.lr",
        "*",
    ],
)
def test_rules_that_can_match_are_accepted(tmp_path: Path, pattern: str) -> None:
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(f'warn = ["{pattern}"]\n')
    load_policy(str(policy_file))


def test_the_pyproject_rules_are_checked_the_same_way(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.resumeguard]\nwarn = ["env.rank"]\n')
    with pytest.raises(BadInput, match=r"env\.device_type"):
        load_policy(None, repo=tmp_path)


# --- Every family at the severity the docs promise -------------------------------------------


def _net(hidden: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, hidden), torch.nn.Linear(hidden, 1))


def _code(repo: Path) -> None:
    write(repo, {"train.py": "HIDDEN = 16\n"})


def _branch(repo: Path) -> None:
    from helpers import git

    git(repo, "checkout", "-qb", "other")


def _requirement(repo: Path) -> None:
    write(repo, {"requirements.txt": "rich==14.0.0\n"})


FAMILIES: list[
    tuple[
        str,
        Callable[[Path], None] | None,
        Callable[[Fingerprint], Fingerprint] | None,
        str,
        str,
        str,
    ]
] = [
    # (family, change to the repo, change to the fingerprint, path, strict, lenient)
    ("code", _code, None, "code.files.train.py", "block", "warn"),
    ("code", _branch, None, "code.branch", "warn", "warn"),
    ("deps", _requirement, None, "deps.requirements.rich", "block", "warn"),
    (
        "deps",
        None,
        lambda fp: dataclasses.replace(
            fp,
            deps=dataclasses.replace(fp.deps, installed={**fp.deps.installed, "rich": "0.1"}),  # type: ignore[union-attr,arg-type]
        ),
        "deps.installed.rich",
        "warn",
        "warn",
    ),
    (
        "optimizer",
        None,
        lambda fp: dataclasses.replace(
            fp,
            optimizer=take(
                repo=None, optimizer=torch.optim.AdamW(_net(8).parameters(), lr=0.5)
            ).optimizer,
        ),
        "optimizer.groups.0.lr",
        "block",
        "block",
    ),
    (
        "model",
        None,
        lambda fp: dataclasses.replace(fp, model=take(repo=None, model=_net(16)).model),
        "model.params.0.weight",
        "block",
        "block",
    ),
    (
        "config",
        None,
        lambda fp: dataclasses.replace(fp, config={"lr": 0.5}),
        "config.lr",
        "block",
        "warn",
    ),
    (
        "env",
        None,
        lambda fp: dataclasses.replace(fp, env=dataclasses.replace(fp.env, world_size=16)),  # type: ignore[type-var]
        "env.world_size",
        "block",
        "warn",
    ),
    (
        "env",
        None,
        lambda fp: dataclasses.replace(fp, env=EnvRecord("cuda", 1, ("H100",))),
        "env.device_names",
        "warn",
        "warn",
    ),
]


def _take(repo: Path) -> Fingerprint:
    """A fingerprint of the repo, a fresh model and optimizer, a config and a fixed GPU."""
    net = _net(8)
    fp = take(
        repo=repo,
        model=net,
        optimizer=torch.optim.AdamW(net.parameters(), lr=1e-3),
        config={"lr": 1e-3},
    )
    return dataclasses.replace(fp, env=EnvRecord("cuda", 1, ("A100",)))


@pytest.mark.parametrize(
    ("family", "repo_change", "fp_change", "path", "strict", "lenient"), FAMILIES
)
def test_each_family_is_reported_at_the_promised_severity(
    tmp_path: Path,
    family: str,
    repo_change: Callable[[Path], None] | None,
    fp_change: Callable[[Fingerprint], Fingerprint] | None,
    path: str,
    strict: str,
    lenient: str,
) -> None:
    repo = make_repo(
        tmp_path / "proj", {"train.py": "HIDDEN = 8\n", "requirements.txt": "rich==13.7.0\n"}
    )
    recorded = _take(repo)
    if repo_change is not None:
        repo_change(repo)
    current = _take(repo)
    if fp_change is not None:
        current = fp_change(current)
    from resumeguard.collect.code import open_history

    findings = compare(recorded, current, open_history(repo))
    assert path.split(".")[0] == family
    assert path in [f.path for f in findings], [f.path for f in findings]
    finding = next(f for f in findings if f.path == path)
    assert preset("strict").judge(finding).severity is Severity(strict)
    assert preset("lenient").judge(finding).severity is Severity(lenient)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return offline_project(tmp_path, monkeypatch)


def _severities(capsys: pytest.CaptureFixture[str], policy: str) -> tuple[int, dict[str, str]]:
    code, report = cli_json(capsys, "check", "--run-id", "fam1", "--policy", policy)
    return code, {f["path"]: f["severity"] for f in report["findings"]}


def test_checkpoint_and_run_families_at_the_promised_severity(
    capsys: pytest.CaptureFixture[str], project: Path
) -> None:
    run = resumeguard.init(project="p", id="fam1", repo=project)
    resumeguard.save_checkpoint(
        run, {"step": 1, "w": torch.zeros(64)}, "ckpt.pt", storage="latest+upload"
    )
    # run.live: the run is still running here.
    for policy in ("strict", "lenient"):
        assert _severities(capsys, policy) == (1, {"run.live": "block"})
    run.finish()
    copies = list(Path(run.dir).rglob("resumeguard/checkpoints/**/ckpt.pt"))
    assert copies
    with open(copies[0], "r+b") as f:
        f.truncate(10)
    for policy in ("strict", "lenient"):
        assert _severities(capsys, policy) == (1, {"checkpoint.ckpt.pt.size": "block"})
    step = explain("run.step", 9, 2)
    assert preset("strict").judge(step).severity is Severity.WARN
    assert preset("lenient").judge(step).severity is Severity.WARN
