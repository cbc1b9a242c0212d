"""resumeguard check verifies every recorded checkpoint file this host can reach: the file at
its recorded path, the record beside it, the run's copy; a file on another node's own disk is
listed as not checked from here, one on shared storage that is gone blocks."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest
from helpers import cli, cli_json, model_and_opt, offline_project, rewrite_record, start

import resumeguard
from resumeguard.checkpoint.beside import beside


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return offline_project(tmp_path, monkeypatch)


def save(run: Any, name: str, step: int, storage: str = "digest") -> Path:
    model, opt = model_and_opt()
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step}
    resumeguard.save_checkpoint(run, state, name, storage=storage)
    return Path(name).resolve()


def saved_run(project: Path, storage: str = "digest") -> Path:
    """Run ``f1`` with checkpoint.pt saved (no copy kept unless ``storage`` says), finished."""
    run = start("f1", project)
    path = save(run, "checkpoint.pt", 3, storage)
    run.finish()
    return path


def check(capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict[str, Any]]:
    return cli_json(capsys, "check", "--run-id", "f1", *extra)


def paths(report: dict[str, Any]) -> list[str]:
    return [f["path"] for f in report["findings"]]


def verified_line(caplog: pytest.LogCaptureFixture) -> str:
    [line] = [r.getMessage() for r in caplog.records if "verified:" in r.getMessage()]
    caplog.clear()
    return line


def test_an_intact_file_without_a_copy_is_read_and_passes(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, project: Path
) -> None:
    saved_run(project)
    caplog.set_level(logging.INFO, logger="resumeguard")
    code, report = check(capsys)
    assert code == 0 and report["findings"] == [], report
    assert not any("rank" in note for note in report["unchecked"]), report["unchecked"]
    assert "checkpoint checkpoint.pt step 3 " in verified_line(caplog)
    assert "(digest verified)" in verified_line(caplog) if check(capsys)[0] == 0 else False
    check(capsys, "--quick")
    assert "digest verified" not in verified_line(caplog)


@pytest.mark.parametrize(
    ("damage", "path"),
    [
        ("truncate", "checkpoint.checkpoint.pt.size"),
        ("grow", "checkpoint.checkpoint.pt.size"),
        ("flip", "checkpoint.checkpoint.pt.digest"),
        ("delete", "checkpoint.checkpoint.pt.missing"),
    ],
)
def test_a_damaged_file_at_its_recorded_path_blocks_naming_it(
    capsys: pytest.CaptureFixture[str], project: Path, damage: str, path: str
) -> None:
    file = saved_run(project)
    data = bytearray(file.read_bytes())
    if damage == "truncate":
        file.write_bytes(data[: len(data) // 2])
    elif damage == "grow":
        file.write_bytes(bytes(data) + b"\0")
    elif damage == "flip":
        data[len(data) // 2] ^= 1
        file.write_bytes(bytes(data))
    else:
        file.unlink()
    code, report = check(capsys)
    assert code == 1 and paths(report) == [path], report
    [finding] = report["findings"]
    assert str(file) in finding["message"] and finding["severity"] == "block"
    if damage != "delete":  # the resume refuses the file too
        resumed = start("f1", project, resume="must")
        with pytest.raises(resumeguard.CheckpointError):
            resumeguard.restore_checkpoint(resumed, "checkpoint.pt")
        resumed.finish()


def test_quick_compares_size_and_time_and_reads_a_file_whose_time_changed(
    capsys: pytest.CaptureFixture[str], project: Path
) -> None:
    file = saved_run(project)
    # A new mtime alone (touch, a copy back with cp) is no change.
    os.utime(file, ns=(1_000_000_000, 1_000_000_000))
    assert check(capsys, "--quick")[0] == 0
    assert check(capsys)[0] == 0
    # A flipped byte changes the time: --quick reads the file and sees it.
    data = bytearray(file.read_bytes())
    data[10] ^= 1
    file.write_bytes(bytes(data))
    code, report = check(capsys, "--quick")
    assert code == 1 and paths(report) == ["checkpoint.checkpoint.pt.digest"], report


def test_the_record_beside_the_file_is_verified_and_restore_writes_it_back(
    capsys: pytest.CaptureFixture[str], project: Path
) -> None:
    file = saved_run(project, storage="latest")
    beside(file).unlink()
    code, report = check(capsys)
    assert code == 1 and paths(report) == ["checkpoint.checkpoint.pt.record"], report
    assert "resumeguard restore" in report["findings"][0]["hint"]
    code, out, _ = cli(capsys, "restore", "--run-id", "f1", "checkpoint.pt")
    assert code == 0 and "record beside it written back" in out
    assert check(capsys)[0] == 0


def test_with_a_kept_copy_the_finding_says_restore_puts_the_file_back(
    capsys: pytest.CaptureFixture[str], project: Path
) -> None:
    file = saved_run(project, storage="latest")
    intact = file.read_bytes()
    file.write_bytes(intact[:100])
    code, report = check(capsys)
    assert code == 1 and paths(report) == ["checkpoint.checkpoint.pt.size"], report
    assert "`resumeguard restore --run-id f1 checkpoint.pt`" in report["findings"][0]["hint"]
    assert cli(capsys, "restore", "--run-id", "f1", "checkpoint.pt")[0] == 0
    assert file.read_bytes() == intact
    assert check(capsys)[0] == 0


def _placed(host: str, disk: str) -> Any:
    def edit(record: dict[str, Any]) -> None:
        for checkpoint in record["checkpoints"].values():
            checkpoint["host"], checkpoint["disk"] = host, disk

    return edit


@pytest.mark.parametrize("disk", ["local", "shared"])
def test_a_file_elsewhere_only_on_another_nodes_own_disk_on_shared_storage_it_is_gone(
    capsys: pytest.CaptureFixture[str], project: Path, tmp_path: Path, disk: str
) -> None:
    file = saved_run(project)
    rewrite_record(tmp_path / "wb", "f1", _placed("node-7", disk))
    file.unlink()
    code, report = check(capsys)
    if disk == "shared":  # a requeue on another node: missing, whichever host wrote it
        assert code == 1 and paths(report) == ["checkpoint.checkpoint.pt.missing"], report
        return
    assert code == 0 and report["findings"] == [], report
    [note] = [n for n in report["unchecked"] if "checkpoint.pt" in n]
    assert "on the local disk of node-7" in note


def test_an_older_record_without_host_or_time_is_judged_on_what_it_holds(
    capsys: pytest.CaptureFixture[str], project: Path, tmp_path: Path
) -> None:
    file = saved_run(project)

    def older(record: dict[str, Any]) -> None:
        for checkpoint in record["checkpoints"].values():
            for key in ("host", "disk", "mtime_ns"):
                checkpoint.pop(key)

    rewrite_record(tmp_path / "wb", "f1", older)
    data = bytearray(file.read_bytes())
    data[10] ^= 1
    file.write_bytes(bytes(data))
    assert check(capsys, "--quick")[0] == 0  # no time recorded: sizes only
    assert paths(check(capsys)[1]) == ["checkpoint.checkpoint.pt.digest"]
    file.unlink()  # no host recorded: a file not here is missing
    assert paths(check(capsys, "--quick")[1]) == ["checkpoint.checkpoint.pt.missing"]


def test_an_older_save_rotated_away_is_noted_the_newest_gone_blocks(
    capsys: pytest.CaptureFixture[str], project: Path
) -> None:
    run = start("f1", project)
    first = save(run, "ckpt/step-1.pt", 1)
    newest = save(run, "ckpt/step-2.pt", 2)
    run.finish()
    first.unlink()  # the script keeps the last save only
    code, report = check(capsys)
    assert code == 0 and report["findings"] == [], report
    assert any("step-1.pt" in n and "rotated away" in n for n in report["unchecked"])
    newest.unlink()
    code, report = check(capsys)
    assert code == 1 and paths(report) == ["checkpoint.ckpt/step-2.pt.missing"], report


def test_check_checkpoint_checks_the_run_its_record_names(
    capsys: pytest.CaptureFixture[str], project: Path
) -> None:
    file = saved_run(project)
    code, report = cli_json(capsys, "check", "--checkpoint", str(file))
    assert code == 0 and report["run"].endswith("f1") and report["findings"] == [], report
    file.write_bytes(file.read_bytes()[:50])
    code, report = cli_json(capsys, "check", "--checkpoint", str(file))
    assert code == 1 and paths(report) == ["checkpoint.checkpoint.pt.size"], report
    stray = project / "stray.pt"
    stray.write_bytes(b"not recorded")
    code, out, err = cli(capsys, "check", "--checkpoint", str(stray))
    assert (code, out) == (3, "") and len(err.strip().splitlines()) == 1, err
    assert "no record beside it" in err
    assert cli(capsys, "check")[0] == 2
    assert cli(capsys, "check", "--checkpoint", str(file), "--run-id", "f1")[0] == 2
