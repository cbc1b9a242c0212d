"""Nothing skipped in silence: files the code digest leaves out (over the size limit, nested
repositories) are stamped and reported as ``code.skipped.<path>`` when they change; a shallow
clone is said in the report."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
from helpers import cli_json, commit_all, git, make_repo, offline_project, write

import resumeguard
from resumeguard.collect.code import CodeRecord, collect_code
from resumeguard.records.fingerprint import dumps, take
from resumeguard.verdict.compare import compare

BIG = 2 << 20  # over the 1 MiB limit of the code digest


def _big_text(marker: str) -> str:
    body = "x = 0\n" * (BIG // 6)
    return body[: BIG // 2] + f"# {marker}\n" + body[BIG // 2 :]


def _code(repo: Path) -> CodeRecord:
    code = collect_code(repo)
    assert isinstance(code, CodeRecord)
    return code


def _skipped_findings(repo: Path, recorded: CodeRecord) -> list[str]:
    fp = take(repo=repo)
    findings = compare(dataclasses.replace(fp, code=recorded), fp)
    return [f.path for f in findings if f.path.startswith("code.")]


def test_a_large_file_edited_in_the_middle_is_reported(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"train.py": "x = 1\n"})
    write(repo, {"tables.py": _big_text("a")})
    recorded = _code(repo)
    assert "tables.py" in recorded.skipped and "tables.py" in recorded.stamps
    write(repo, {"tables.py": _big_text("b")})  # same size, one byte in the middle
    assert _skipped_findings(repo, recorded) == ["code.skipped.tables.py"]


def test_a_large_file_left_alone_or_only_touched_is_not_reported(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"train.py": "x = 1\n"})
    write(repo, {"tables.py": _big_text("a")})
    recorded = _code(repo)
    assert _skipped_findings(repo, recorded) == []
    os.utime(repo / "tables.py", ns=(1, 1))  # read or touched, same content
    assert _skipped_findings(repo, recorded) == []


def test_a_file_that_grew_past_the_limit_is_reported(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"train.py": "x = 1\n"})
    write(repo, {"tables.py": "x = 0\n"})
    recorded = _code(repo)
    assert "tables.py" in recorded.untracked
    write(repo, {"tables.py": _big_text("a")})
    assert _skipped_findings(repo, recorded) == ["code.skipped.tables.py"]


def test_a_nested_repository_is_stamped_by_commit_and_changes(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"train.py": "x = 1\n"})
    nested = make_repo(repo / "vendor" / "lib", {"lib.py": "A = 1\n"})
    recorded = _code(repo)
    assert recorded.skipped["vendor/lib"].startswith("nested git repository")
    assert recorded.stamps["vendor/lib"].startswith("commit ")
    assert _skipped_findings(repo, recorded) == []
    write(nested, {"lib.py": "A = 2\n"})  # a dirty edit inside
    assert _skipped_findings(repo, recorded) == ["code.skipped.vendor/lib"]
    commit_all(nested, "A = 2")  # the same edit, committed
    assert _skipped_findings(repo, recorded) == ["code.skipped.vendor/lib"]


def test_check_blocks_a_changed_nested_repository_and_passes_an_unchanged_one(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = offline_project(tmp_path, monkeypatch)
    nested = make_repo(project / "third_party" / "kernels", {"k.py": "K = 1\n"})
    resumeguard.init(project="p", id="skip1", repo=project).finish()
    code, report = cli_json(capsys, "check", "--run-id", "skip1")
    assert (code, report["findings"]) == (0, [])
    write(nested, {"k.py": "K = 2\n"})
    code, report = cli_json(capsys, "check", "--run-id", "skip1")
    assert code == 1
    assert [(f["path"], f["severity"]) for f in report["findings"]] == [
        ("code.skipped.third_party/kernels", "block")
    ]


def test_a_shallow_clone_is_said_in_the_report(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    origin = make_repo(tmp_path / "origin", {"train.py": "x = 1\n"})
    full = tmp_path / "full"
    git(tmp_path, "clone", "-q", origin.as_uri(), str(full))
    recorded = tmp_path / "recorded.json"
    recorded.write_text(dumps(take(repo=full)))
    write(origin, {"train.py": "x = 2\n"})
    commit_all(origin)
    shallow = tmp_path / "shallow"
    git(tmp_path, "clone", "-q", "--depth", "1", origin.as_uri(), str(shallow))
    current = tmp_path / "current.json"
    current.write_text(dumps(take(repo=shallow)))
    code, report = cli_json(capsys, "diff", str(recorded), str(current), "--repo", str(shallow))
    severities = {f["path"]: f["severity"] for f in report["findings"]}
    assert code == 1
    assert severities["code.shallow"] == "info" and severities["code.commit"] == "block"
    # The same shallow clone, unchanged: safe to resume, and still said.
    code, report = cli_json(capsys, "diff", str(current), str(current), "--repo", str(shallow))
    assert code == 0
    assert [(f["path"], f["severity"]) for f in report["findings"]] == [("code.shallow", "info")]
