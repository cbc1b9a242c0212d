"""`resumeguard fingerprint` and `resumeguard diff` on real git repositories, real installed
distributions and real torch optimizers: each divergence at its path and strict severity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import cli, cli_json, commit_all, git, make_repo, write

from resumeguard.records.fingerprint import take
from resumeguard.verdict.check import compare_fingerprints

FILES = {
    "src/train.py": "LR = 1e-3\n",
    "docs/guide.md": "# Guide\n",
    "requirements.txt": "torch==2.13.0\nrich>=13\n",
    "pyproject.toml": '[tool.resumeguard]\nignore = ["code.files.docs/**"]\n',
}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "proj", FILES)


def snapshot(capsys: pytest.CaptureFixture[str], repo: Path, name: str) -> Path:
    code, out, _ = cli(capsys, "fingerprint", "--repo", str(repo), "--json")
    assert code == 0
    path = repo.parent / f"{name}.json"
    path.write_text(out)
    return path


def diff(capsys: pytest.CaptureFixture[str], repo: Path, a: Path, b: Path) -> tuple[int, dict]:
    return cli_json(capsys, "diff", str(a), str(b), "--repo", str(repo))


def severities(report: dict) -> dict[str, str]:
    return {f["path"]: f["severity"] for f in report["findings"]}


def test_identical_fingerprints_exit_0_without_findings(capsys, repo: Path) -> None:
    a = snapshot(capsys, repo, "a")
    b = snapshot(capsys, repo, "b")
    code, report = diff(capsys, repo, a, b)
    assert (code, report["verdict"], report["findings"]) == (0, "ok", [])
    assert report["schema"] == 1


def test_new_commit_blocks_with_the_changed_file(capsys, repo: Path) -> None:
    a = snapshot(capsys, repo, "a")
    write(repo, {"src/train.py": "LR = 5e-4\n"})
    commit_all(repo)
    code, report = diff(capsys, repo, a, snapshot(capsys, repo, "b"))
    assert code == 1 and report["verdict"] == "block"
    assert severities(report) == {"code.files.src/train.py": "block", "code.commit": "info"}


def test_dirty_edit_blocks(capsys, repo: Path) -> None:
    a = snapshot(capsys, repo, "a")
    write(repo, {"src/train.py": "LR = 5e-4\n"})
    code, report = diff(capsys, repo, a, snapshot(capsys, repo, "b"))
    assert code == 1
    assert severities(report) == {"code.files.src/train.py": "block"}


def test_untracked_source_file_blocks(capsys, repo: Path) -> None:
    a = snapshot(capsys, repo, "a")
    write(repo, {"src/augment.py": "FLIP = True\n"})
    code, report = diff(capsys, repo, a, snapshot(capsys, repo, "b"))
    assert code == 1
    assert severities(report) == {"code.untracked.src/augment.py": "block"}


def test_pyproject_rule_ignores_docs_so_verdict_is_ok(capsys, repo: Path) -> None:
    a = snapshot(capsys, repo, "a")
    write(repo, {"docs/guide.md": "# Guide, rewritten\n"})
    commit_all(repo, "docs")
    code, report = diff(capsys, repo, a, snapshot(capsys, repo, "b"))
    assert (code, report["verdict"]) == (0, "ok")
    # The moved commit is explained by the (ignored) docs change: info only.
    assert severities(report) == {"code.commit": "info"}


def test_without_the_rule_a_docs_change_blocks(capsys, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "p", {**FILES, "pyproject.toml": "[project]\nname='x'\n"})
    a = snapshot(capsys, repo, "a")
    write(repo, {"docs/guide.md": "# Guide, rewritten\n"})
    commit_all(repo, "docs")
    code, report = diff(capsys, repo, a, snapshot(capsys, repo, "b"))
    assert code == 1 and severities(report)["code.files.docs/guide.md"] == "block"


def test_requirement_pin_change_blocks(capsys, repo: Path) -> None:
    a = snapshot(capsys, repo, "a")
    write(repo, {"requirements.txt": "torch==2.14.0\nrich>=13\n"})
    commit_all(repo, "bump torch")
    code, report = diff(capsys, repo, a, snapshot(capsys, repo, "b"))
    assert code == 1
    found = {f["path"]: f for f in report["findings"]}
    torch_req = found["deps.requirements.torch"]
    assert torch_req["severity"] == "block"
    assert (torch_req["recorded"], torch_req["current"]) == ("torch==2.13.0", "torch==2.14.0")
    assert "pin torch==2.13.0 again" in torch_req["hint"]


def fake_distribution(site: Path, name: str, version: str) -> None:
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


def test_changed_installed_version_warns(capsys, repo: Path, tmp_path: Path, monkeypatch) -> None:
    old, new = tmp_path / "site-old", tmp_path / "site-new"
    fake_distribution(old, "resumeguard-probe", "1.0")
    fake_distribution(new, "resumeguard-probe", "1.1")
    monkeypatch.syspath_prepend(str(old))
    a = snapshot(capsys, repo, "a")
    monkeypatch.syspath_prepend(str(new))
    code, report = diff(capsys, repo, a, snapshot(capsys, repo, "b"))
    assert code == 0 and report["verdict"] == "warn"
    [finding] = report["findings"]
    assert finding["path"] == "deps.installed.resumeguard-probe"
    assert (finding["recorded"], finding["current"], finding["severity"]) == ("1.0", "1.1", "warn")


def model_and_opt(hidden: int = 8, lr: float = 1e-3, cls: type = torch.optim.AdamW):
    model = torch.nn.Sequential(torch.nn.Linear(4, hidden), torch.nn.Linear(hidden, 1))
    return model, cls(model.parameters(), lr=lr)


def optimizer_findings(repo: Path, recorded_setup, current_setup) -> dict[str, str]:
    m1, o1 = recorded_setup
    m2, o2 = current_setup
    recorded = take(repo=repo, optimizer=o1, model=m1)
    current = take(repo=repo, optimizer=o2, model=m2)
    report = compare_fingerprints(recorded, current, policy="strict", repo=repo)
    return {j.finding.path: j.severity.value for j in report.findings}


def test_optimizer_for_a_layer_of_different_shape_blocks(repo: Path) -> None:
    found = optimizer_findings(repo, model_and_opt(hidden=8), model_and_opt(hidden=16))
    assert found["optimizer.params.0.shape"] == "block"
    assert found["model.params.0.weight"] == "block"


def test_changed_lr_blocks(repo: Path) -> None:
    found = optimizer_findings(repo, model_and_opt(lr=1e-3), model_and_opt(lr=5e-4))
    assert found == {"optimizer.groups.0.lr": "block"}


def test_different_optimizer_class_blocks(repo: Path) -> None:
    found = optimizer_findings(repo, model_and_opt(), model_and_opt(cls=torch.optim.SGD))
    assert found["optimizer.class"] == "block"


def test_malformed_fingerprint_exits_2_with_one_line(capsys, repo: Path) -> None:
    good = snapshot(capsys, repo, "a")
    bad = repo.parent / "bad.json"
    bad.write_text('{"schema": 1, "code": {}')
    code, out, err = cli(capsys, "diff", str(bad), str(good))
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "not valid JSON" in err
    bad.write_text(json.dumps({"hello": "world"}))
    code, _, err = cli(capsys, "diff", str(bad), str(good))
    assert code == 2 and "not a resumeguard fingerprint" in err
    code, _, err = cli(capsys, "diff", str(repo / "missing.json"), str(good))
    assert code == 2 and "cannot read" in err and len(err.strip().splitlines()) == 1


def test_bad_policy_exits_2(capsys, repo: Path) -> None:
    a = snapshot(capsys, repo, "a")
    code, _, err = cli(capsys, "diff", str(a), str(a), "--policy", "paranoid")
    assert code == 2 and "unknown policy preset" in err


def test_human_report_names_path_and_hint(capsys, repo: Path) -> None:
    a = snapshot(capsys, repo, "a")
    write(repo, {"src/train.py": "LR = 5e-4\n"})
    b = snapshot(capsys, repo, "b")
    code, out, _ = cli(capsys, "diff", str(a), str(b), "--repo", str(repo))
    assert code == 1
    assert "blocked" in out and "code.files.src/train.py" in out and "restore" in out


def test_old_schema_fixtures_stay_readable(capsys) -> None:
    fixtures = Path(__file__).resolve().parent.parent / "fixtures" / "fingerprints"
    files = sorted(fixtures.glob("schema-*.json"))
    assert files, "fixtures/make_fixtures.py writes one fingerprint per schema"
    for path in files:
        code, report = cli_json(capsys, "diff", str(path), str(path))
        assert (code, report["findings"]) == (0, [])


def test_human_fingerprint_outside_a_repo_and_on_a_detached_head(capsys, tmp_path: Path) -> None:
    code, out, _ = cli(capsys, "fingerprint", "--repo", str(tmp_path))
    assert code == 0 and "not a git repository" in out
    repo = make_repo(tmp_path / "r", {"a.py": "x = 1\n"})
    git(repo, "checkout", "-q", "--detach")
    code, out, _ = cli(capsys, "fingerprint", "--repo", str(repo))
    assert code == 0 and "(detached)" in out
