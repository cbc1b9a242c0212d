"""The audit trail reads the same everywhere: show prints each resume's outcome as recorded, and
a resume still pending when its run finishes cleanly is resumed."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import cli, cli_json, model_and_opt, offline_project, start

import resumeguard


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return offline_project(tmp_path, monkeypatch)


def outcomes(capsys: pytest.CaptureFixture[str], run_id: str) -> list[tuple[str, str]]:
    code, shown = cli_json(capsys, "show", "--run-id", run_id)
    assert code == 0
    return [(r["outcome"], r["reason"]) for r in shown["resumes"]]


def test_a_clean_finish_settles_a_pending_resume_and_show_prints_outcomes(
    capsys: pytest.CaptureFixture[str], project: Path
) -> None:
    run = start("aud9", project)
    model, _ = model_and_opt()
    resumeguard.save_checkpoint(run, {"model": model.state_dict(), "step": 1}, "checkpoint.pt")
    run.finish()
    start("aud9", project, resume="must").finish()  # neither restores nor saves: it went ahead
    assert outcomes(capsys, "aud9") == [("resumed", "")]
    (project / "checkpoint.pt").write_bytes(b"damaged")
    refused = start("aud9", project, resume="must")
    with pytest.raises(resumeguard.CheckpointError):
        resumeguard.restore_checkpoint(refused, "checkpoint.pt", model=model)
    refused.finish()
    [_, (outcome, reason)] = outcomes(capsys, "aud9")
    assert outcome == "refused" and "checkpoint.pt" in reason, reason
    code, out, _ = cli(capsys, "show", "--run-id", "aud9")
    assert code == 0 and ", resumed;" in out and ", refused: " in out, out


def test_show_reads_the_runs_own_directory_not_an_empty_one_left_behind(
    capsys: pytest.CaptureFixture[str], project: Path
) -> None:
    import wandb

    run = start("aud10", project)
    own = Path(run.dir).parent
    run.finish()
    wandb.init(project="p", id="aud10", resume="allow").finish()  # a second init: no record
    code, out, _ = cli(capsys, "show", "--run-id", "aud10")
    assert code == 0 and f"({own})" in "".join(out.split()), out
