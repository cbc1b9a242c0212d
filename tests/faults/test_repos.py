"""Odd repositories: no exit 4, and no verdict of "ok" where the code cannot be fingerprinted."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable

import pytest
from faultkit import Case, run_cli

Setup = Callable[[Case], None]


def git(case: Case, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=T", "-c", "user.email=t@example.com", *args],
        cwd=case.repo,
        check=True,
        capture_output=True,
    )


def untracked_newline(case: Case) -> None:
    (case.repo / "new\nline.py").write_text("print(1)\n")


def renamed_to_newline(case: Case) -> None:
    git(case, "mv", "train.py", "tr\nain.py")


def lfs_without_binary(required: bool) -> Setup:
    def setup(case: Case) -> None:
        (case.repo / ".gitattributes").write_text("*.bin filter=lfs diff=lfs merge=lfs -text\n")
        (case.repo / "weights.bin").write_text("v1\n")
        git(case, "add", "-A", ".gitattributes", "weights.bin")
        git(case, "commit", "-qm", "lfs")
        git(case, "config", "filter.lfs.clean", "git-lfs clean -- %f")
        git(case, "config", "filter.lfs.smudge", "git-lfs smudge -- %f")
        if required:
            git(case, "config", "filter.lfs.required", "true")
        (case.repo / "weights.bin").write_text("v2\n")

    return setup


def bad_specifiers(case: Case) -> None:
    (case.repo / "requirements.txt").write_text("numpy>=1.0,<<2\ntorch===\nfoo @ \n[bad\n")


def malformed_gitmodules(case: Case) -> None:
    (case.repo / ".gitmodules").write_text('[submodule "x"\n\tpath = \nurl\n[[[')
    git(case, "add", ".gitmodules")


@pytest.mark.parametrize(
    ("setup", "code", "finding"),
    [
        pytest.param(untracked_newline, 1, "code.untracked.new\nline.py", id="untracked-newline"),
        pytest.param(renamed_to_newline, 1, "code.files.tr\nain.py", id="renamed-to-newline"),
        pytest.param(lfs_without_binary(True), 3, None, id="lfs-required-no-binary"),
        pytest.param(lfs_without_binary(False), 3, None, id="lfs-no-binary"),
        pytest.param(bad_specifiers, 1, "deps.requirements", id="invalid-specifiers"),
        pytest.param(malformed_gitmodules, 1, "code.files..gitmodules", id="malformed-gitmodules"),
    ],
)
def test_odd_repositories(case: Case, setup: Setup, code: int, finding: str | None) -> None:
    setup(case)
    result = run_cli(case, "check", "--run-id", "faultrun", "--json")
    assert result.code == code, result
    assert "Traceback" not in result.err
    report = json.loads(result.out)
    if finding is None:
        assert report["verdict"] == "unverified" or result.err.count("\n") == 1, result
    else:
        paths = [f["path"] for f in report["findings"]]
        assert any(p.startswith(finding) for p in paths), paths


def test_newline_names_are_fingerprinted_exactly(case: Case) -> None:
    """The look-alike: the same names fingerprint fine, each under its exact name."""
    untracked_newline(case)
    renamed_to_newline(case)
    result = run_cli(case, "fingerprint", "--json")
    assert result.code == 0, result
    code = json.loads(result.out)["code"]
    # The case's checkpoint is not ignored there: present when recorded, it counts as code too.
    assert set(code["untracked"]) == {"new\nline.py", "ckpt.pt"}
    assert set(code["changed"]) == {"tr\nain.py", "train.py"}
    assert code["changed"]["train.py"] == "deleted" and len(code["changed"]["tr\nain.py"]) == 40
