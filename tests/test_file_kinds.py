"""The file-kind registry is data the code-change judge reads: one row per entry, each proven
both ways on real files (the kind's rule, and the look-alike the rule does not cover)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from resumeguard.collect import filekinds
from resumeguard.collect.code import CodeRecord, read_head
from resumeguard.collect.filekinds import is_log, new_file_reason, run_output_reason
from resumeguard.verdict.codechange import mark_harmless_code
from resumeguard.verdict.findings import Finding
from resumeguard.verdict.hints import explain

SOURCE = [".py", ".pyw", ".pyi", ".pyx", ".pxd", ".ipynb", ".so", ".pyd", ".dylib", ".dll"]
SOURCE += [".c", ".cc", ".cpp", ".cxx", ".h", ".hh", ".hpp", ".cu", ".cuh", ".sh", ".bash", ".zsh"]
CONFIG = [".yaml", ".yml", ".toml", ".json", ".jsonnet", ".cfg", ".ini", ".conf", ".env"]
WEIGHTS = [".pt", ".pth", ".ckpt", ".safetensors", ".bin"]
FOLDERS = ["lightning_logs", ".hydra", "outputs", "multirun", "runs", "mlruns"]
LOGS = [".log", ".out", ".err"]


def test_the_registry_holds_exactly_these_rows() -> None:
    assert sorted(filekinds.SOURCE_SUFFIXES) == sorted(SOURCE)
    assert sorted(filekinds.CONFIG_SUFFIXES) == sorted(CONFIG)
    assert sorted(filekinds.WEIGHTS_SUFFIXES) == sorted(WEIGHTS)
    assert sorted(filekinds.OUTPUT_FOLDERS) == sorted(FOLDERS)
    assert sorted(filekinds.LOG_SUFFIXES) == sorted(LOGS)


def touch(root: Path, *paths: str) -> None:
    for path in paths:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text("x\n")


@pytest.mark.parametrize("suffix", SOURCE)
def test_new_source_is_code_even_in_a_folder_the_run_writes(tmp_path: Path, suffix: str) -> None:
    touch(tmp_path, f"outputs/gen{suffix}", "out/model.pt")
    for path in (f"outputs/gen{suffix}", f"out/gen{suffix.upper()}", f"gen{suffix}"):
        assert new_file_reason(path, tmp_path, ["out"], set()) is None, path
        assert run_output_reason(path, tmp_path) is None, path
    # The look-alike: a data file beside it is run output.
    assert new_file_reason("outputs/gen.txt", tmp_path, [], set()) is not None


@pytest.mark.parametrize("suffix", CONFIG)
def test_configuration_counts_unless_a_run_wrote_it(tmp_path: Path, suffix: str) -> None:
    name = f"train{suffix}"
    touch(tmp_path, f"conf/{name}", f"ckpt/{name}", "ckpt/model.safetensors")
    assert new_file_reason(f"conf/{name}", tmp_path, [], set()) is None
    assert run_output_reason(f"conf/{name}", tmp_path) is None
    for written in (f"outputs/{name}", f"exp/outputs/{name}"):
        assert run_output_reason(written, tmp_path) == (
            "configuration written into the run output folder outputs/"
        )
    # A folder that is gone (the file was deleted since) holds no checkpoint: it counts.
    assert run_output_reason(f"gone/{name}", tmp_path) is None
    assert run_output_reason(f"ckpt/{name}", tmp_path) == (
        "configuration saved beside a checkpoint (run output, not code)"
    )


@pytest.mark.parametrize("suffix", WEIGHTS)
def test_weights_are_run_output_and_mark_their_folder(tmp_path: Path, suffix: str) -> None:
    touch(tmp_path, f"ckpt/model{suffix}", "ckpt/config.json", "conf/config.json")
    reason = "a checkpoint or weights file that appeared since the run was recorded"
    assert new_file_reason(f"model{suffix.upper()}", tmp_path, [], set()) == reason
    assert run_output_reason(f"model{suffix}", tmp_path) == (
        "checkpoint or weights file (run output, not code)"
    )
    beside = "appeared since the run was recorded, beside a checkpoint the run wrote"
    assert new_file_reason("ckpt/config.json", tmp_path, [], set()) == beside
    # The look-alikes: a weights file the record already held marks nothing, nor does a folder
    # without one.
    assert new_file_reason("ckpt/config.json", tmp_path, [], {f"ckpt/model{suffix}"}) is None
    assert new_file_reason("conf/config.json", tmp_path, [], set()) is None


@pytest.mark.parametrize("folder", FOLDERS)
def test_a_frameworks_output_folder_holds_run_output(tmp_path: Path, folder: str) -> None:
    reason = f"appeared since the run was recorded, in {folder}/, a folder frameworks write"
    for path in (f"{folder}/metrics.csv", f"exp/{folder}/v0/hparams.yaml"):
        assert new_file_reason(path, tmp_path, [], set()) == reason, path
    # The look-alikes: a file of that name, and a folder that only begins so, count as code.
    assert new_file_reason(folder, tmp_path, [], set()) is None
    assert new_file_reason(f"{folder}_old/metrics.csv", tmp_path, [], set()) is None


@pytest.mark.parametrize("suffix", LOGS)
def test_a_log_is_what_a_job_appends_to(suffix: str) -> None:
    assert is_log(f"slurm-123{suffix}") and is_log(f"logs/train{suffix.upper()}")
    assert not is_log(f"slurm-123{suffix}.py") and not is_log(f"train{suffix}s")


def test_the_runs_own_output_folder_holds_run_output(tmp_path: Path) -> None:
    reason = "appeared since the run was recorded, in the run's output folder exp/a/"
    assert new_file_reason("exp/a/metrics.csv", tmp_path, ["exp/a"], set()) == reason
    assert new_file_reason("exp/ab/metrics.csv", tmp_path, ["exp/a"], set()) is None


def test_under_old_records_a_script_without_an_ending_is_code_and_a_log_is_not(
    tmp_path: Path,
) -> None:
    (tmp_path / "train").write_text("#!/bin/sh\npython train.py\n")
    (tmp_path / "notes").write_text("no shebang\n")
    assert run_output_reason("train", tmp_path) is None
    other = "not source or configuration (run output such as a log)"
    assert run_output_reason("notes", tmp_path) == other
    assert run_output_reason("missing", tmp_path) == other
    assert run_output_reason("train.log", tmp_path) == other
    assert run_output_reason(".env", tmp_path) is None


# --- what the code-change judge makes of them -------------------------------------------------


def marked(root: Path, path: str, recorded: CodeRecord, *, current: str | None = "b") -> Finding:
    [found] = mark_harmless_code(
        [explain(path, "a", current)], recorded, CodeRecord(str(root), "c", "main"), None
    )
    return found


def test_old_records_judge_untracked_files_by_their_names(tmp_path: Path) -> None:
    """Schema 1-2 records (no log heads) sorted untracked files by name: a log or data file is
    run output (info, with the reason); a Python file or configuration beside no checkpoint
    is code."""
    touch(tmp_path, "train.log", "train.py", "conf/train.yaml", "outputs/train.yaml")
    old = CodeRecord(str(tmp_path), "c", "main", untracked={"train.log": "x"})
    found = marked(tmp_path, "code.untracked.train.log", old)
    assert (found.downgrade, found.detail, found.hint) == (
        "run-output",
        "not source or configuration (run output such as a log)",
        "nothing to do: it is not code",
    )
    outputs = marked(tmp_path, "code.untracked.outputs/train.yaml", old)
    assert outputs.detail == "configuration written into the run output folder outputs/"
    for code in ("code.untracked.train.py", "code.untracked.conf/train.yaml"):
        assert marked(tmp_path, code, old).downgrade == "", code
    assert marked(tmp_path, "code.skipped.train.log", old).downgrade == "run-output"


def test_new_records_leave_out_only_what_the_run_wrote_or_appended(tmp_path: Path) -> None:
    touch(tmp_path, "outputs/metrics.csv", "notes.txt")
    (tmp_path / "train.log").write_text("epoch 1\nepoch 2\n")
    head = read_head(tmp_path / "train.log", len("epoch 1\n"))
    assert head is not None
    new = CodeRecord(
        str(tmp_path), "c", "main", untracked={"train.log": "x", "notes.txt": "y"}, logs={}
    )
    wrote = marked(tmp_path, "code.untracked.outputs/metrics.csv", new)
    assert (wrote.downgrade, wrote.hint) == ("run-output", "nothing to do: the run wrote it")
    assert marked(tmp_path, "code.untracked.notes.txt", new).downgrade == "", "recorded: code"
    appended = dataclasses.replace(new, logs={"train.log": head})
    grew = marked(tmp_path, "code.untracked.train.log", appended)
    assert (grew.downgrade, grew.detail, grew.hint) == (
        "left-out-file",
        "train.log only grew (from 8 bytes) by appending",
        "nothing to do: its recorded bytes are unchanged",
    )
    # The look-alikes: a log whose first bytes changed, or that is gone, counts.
    edited = dataclasses.replace(new, logs={"train.log": dataclasses.replace(head, digest="x")})
    assert marked(tmp_path, "code.untracked.train.log", edited).downgrade == ""
    assert marked(tmp_path, "code.untracked.train.log", appended, current=None).downgrade == ""


def test_git_ignore_rules_are_info_with_their_reason(tmp_path: Path) -> None:
    record = CodeRecord(str(tmp_path), "c", "main", logs={})
    found = marked(tmp_path, "code.files.sub/.gitignore", record)
    assert (found.downgrade, found.hint) == (
        "git-ignore-rules",
        "nothing to do: .gitignore only decides which files git lists",
    )


def test_a_content_git_no_longer_holds_is_never_comment_only(tmp_path: Path) -> None:
    """The recorded blob gone from the object database: the blob digests decide (a change),
    even when the current file holds only comments; both contents present, it is comment-only."""
    from helpers import git, make_repo

    from resumeguard.collect.code import open_history

    repo = make_repo(tmp_path / "repo", {"train.py": "# the trainer\n"})
    (repo / "train.py").write_text("# the trainer, annotated\n")
    new = git(repo, "hash-object", "-w", "train.py").strip()
    old = git(repo, "rev-parse", "HEAD:train.py").strip()
    history = open_history(repo)
    assert history is not None
    record = CodeRecord(str(repo), "c", "main", logs={})
    [layout] = mark_harmless_code(
        [explain("code.files.train.py", old, new)], record, record, history
    )
    assert layout.downgrade == "comment-only"
    [lost] = mark_harmless_code(
        [explain("code.files.train.py", "0" * 40, new)], record, record, history
    )
    assert lost.downgrade == ""
