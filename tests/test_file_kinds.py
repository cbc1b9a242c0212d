"""The file-kind registry is data the code-change judge reads: one row per entry, each proven
both ways on real files (the kind's rule, and the look-alike the rule does not cover)."""

from __future__ import annotations

from pathlib import Path

import pytest

from resumeguard.collect import filekinds
from resumeguard.collect.filekinds import is_log, new_file_reason, run_output_reason

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
