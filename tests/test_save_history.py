"""Which save is this? Each checkpoint name keeps its recent saves (bounded): a file holding an
earlier save is that save, by the restore and by resumeguard check, and a shutil.copyfile of a
recorded checkpoint (ImageNet's model_best.pth.tar) is recognised by its digest."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import pytest
from helpers import cli_json, model_and_opt, offline_project, start

import resumeguard
from resumeguard.records.run import HISTORY


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return offline_project(tmp_path, monkeypatch)


def save(run: Any, step: int, name: str = "checkpoint.pt") -> resumeguard.CheckpointRecord:
    model, opt = model_and_opt()
    run.log({"loss": 1.0}, step=step)
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step}
    return resumeguard.save_checkpoint(run, state, name, storage="digest", model=model)


def test_each_name_keeps_its_recent_saves_newest_first_and_bounded(project: Path) -> None:
    run = start("h1", project)
    for step in range(1, HISTORY + 4):
        record = save(run, step)
    history = resumeguard.decide.runfiles.current_record(run).checkpoints["checkpoint.pt"].history
    run.finish()
    assert record.step == HISTORY + 3
    assert [h.step for h in history] == list(range(HISTORY + 2, 2, -1))


def test_an_earlier_save_put_back_is_that_save_never_a_corrupted_file(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, project: Path
) -> None:
    run = start("h2", project)
    save(run, 3)
    earlier = (project / "checkpoint.pt").read_bytes()
    save(run, 5)
    run.log({"loss": 0.5}, step=7)
    run.finish()
    (project / "checkpoint.pt").write_bytes(earlier)
    code, report = cli_json(capsys, "check", "--run-id", "h2")
    [finding] = [f for f in report["findings"] if "holds" in f["message"]]
    assert finding["path"] == "run.step" and finding["severity"] == "warn", report
    assert "the save at step 3 of " in finding["message"]
    assert "older than the latest (step 5)" in finding["message"]
    assert not any(f["path"].startswith("checkpoint.") for f in report["findings"]), report
    assert code == 0
    resumed = start("h2", project, resume="must")
    caplog.set_level(logging.INFO, logger="resumeguard")
    state = resumeguard.restore_checkpoint(resumed, "checkpoint.pt")
    resumed.finish()
    assert state["step"] == 3
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "the save at step 3 of" in said and "older than the latest (step 5)" in said
    assert "corrupted" not in said


def test_a_byte_flipped_in_an_earlier_save_is_still_refused(project: Path) -> None:
    run = start("h3", project)
    save(run, 3)
    earlier = bytearray((project / "checkpoint.pt").read_bytes())
    save(run, 5)
    run.finish()
    earlier[len(earlier) // 2] ^= 1
    (project / "checkpoint.pt").write_bytes(bytes(earlier))
    resumed = start("h3", project, resume="must")
    with pytest.raises(resumeguard.CheckpointError, match="does not match its record"):
        resumeguard.restore_checkpoint(resumed, "checkpoint.pt")
    resumed.finish()


def test_a_copyfile_of_a_recorded_checkpoint_is_recognised_by_its_digest(
    caplog: pytest.LogCaptureFixture, project: Path
) -> None:
    run = start("h4", project)
    save(run, 3)
    shutil.copyfile(project / "checkpoint.pt", project / "model_best.pth.tar")
    save(run, 5)
    caplog.set_level(logging.INFO, logger="resumeguard")
    state = resumeguard.restore_checkpoint(run, "model_best.pth.tar")
    assert state["step"] == 3
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "model_best.pth.tar holds the save of checkpoint.pt at step 3" in said
    # The look-alike: a file no save of the run wrote is not recorded, and refused.
    (project / "other.pth.tar").write_bytes(b"not a save of this run")
    with pytest.raises(resumeguard.CheckpointError, match="no checkpoint named"):
        resumeguard.restore_checkpoint(run, "other.pth.tar")
    run.finish()
