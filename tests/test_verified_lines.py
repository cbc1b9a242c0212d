"""Every "verified" line lists only what was verified, by every front door: no digest for
bytes not read, no config before one was seen, and without a run, what was not compared."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import wandb
from helpers import cli, model_and_opt, offline_project, start

import resumeguard


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return offline_project(tmp_path, monkeypatch)


@pytest.fixture
def lines(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="resumeguard")
    return caplog


def said(caplog: pytest.LogCaptureFixture, marker: str) -> str:
    found = [r.getMessage() for r in caplog.records if marker in r.getMessage()]
    caplog.clear()
    assert len(found) == 1, found
    return found[0]


def saved(project: Path, run_id: str = "v1") -> None:
    run = start(run_id, project)
    model, opt = model_and_opt()
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": 4}
    resumeguard.save_checkpoint(run, state, "checkpoint.pt")
    run.finish()


def test_the_cli_check_line_claims_no_config_it_never_saw(
    capsys: pytest.CaptureFixture[str], lines: pytest.LogCaptureFixture, project: Path
) -> None:
    saved(project)
    assert cli(capsys, "check", "--run-id", "v1")[0] == 0
    line = said(lines, "verified:")
    assert "config" not in line, line
    assert "checkpoint checkpoint.pt step 4 blake3:" in line and "(digest verified)" in line
    assert cli(capsys, "check", "--run-id", "v1", "--quick")[0] == 0
    line = said(lines, "verified:")
    assert "digest verified" not in line and "bytes not read here" in line, line


def test_init_names_the_config_keys_it_compared(
    lines: pytest.LogCaptureFixture, project: Path
) -> None:
    saved(project)
    lines.clear()
    start("v1", project, resume="must", config={"lr": 1e-3}).finish()
    line = said(lines, "verified:")
    assert "config 1 keys, as recorded" in line and "digest verified" not in line, line


def test_the_decorator_line_claims_no_config_before_the_script_parsed_it(
    lines: pytest.LogCaptureFixture, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    saved(project)
    monkeypatch.setenv("WANDB_RUN_ID", "v1")
    monkeypatch.setenv("WANDB_RESUME", "must")
    lines.clear()

    @resumeguard.guard(repo=project)
    def main() -> None:
        wandb.init(project="p", config={"lr": 1e-3}).finish()

    main()
    line = said(lines, "verified:")
    assert "config" not in line and "digest verified" not in line, line


def test_a_restore_without_a_run_says_what_was_not_compared(
    lines: pytest.LogCaptureFixture, project: Path
) -> None:
    model, _ = model_and_opt()
    resumeguard.save_checkpoint(None, {"model": model.state_dict()}, "plain.pt")
    resumeguard.restore_checkpoint(None, "plain.pt", model=model)
    line = said(lines, "plain.pt")
    assert "matches its recorded digest" in line and "step None" not in line, line
    assert "code and config not compared (no run record)" in line, line
