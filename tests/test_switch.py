"""RESUMEGUARD_DISABLE=1: every front door is a plain pass-through, said once on stderr."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import wandb
from helpers import cli, commit_all, model_and_opt, offline_project, start, write

import resumeguard
import resumeguard.api.dcp
from resumeguard.options import _say_once


def test_off_switch_passes_every_call_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A resume that would block goes ahead untouched: init is wandb.init, the save is
    torch.save (no record beside it), the restore torch.load, the decorator and check pass."""
    repo = offline_project(tmp_path, monkeypatch)
    run = start("off1", repo)
    model, _ = model_and_opt()
    resumeguard.save_checkpoint(run, {"model": model.state_dict(), "step": 1}, "checkpoint.pt")
    run.finish()
    write(repo, {"train.py": "x = 2\n"})
    commit_all(repo)
    with pytest.raises(resumeguard.ResumeBlocked):
        start("off1", repo, resume="must")

    monkeypatch.setenv("RESUMEGUARD_DISABLE", "1")
    _say_once.cache_clear()
    capsys.readouterr()
    resumed = start("off1", repo, resume="must")
    assert isinstance(resumed, wandb.Run), "wandb.init's own run"
    assert "resumeguard" not in dict(resumed.config)
    other, _ = model_and_opt(hidden=8)
    torch.nn.init.zeros_(other[0].weight)
    state = resumeguard.restore_checkpoint(resumed, "checkpoint.pt", model=other)
    assert state["step"] == 1 and torch.equal(other[0].weight, model[0].weight)
    assert resumeguard.save_checkpoint(resumed, {"step": 2}, "plain.pt") is None
    assert torch.load("plain.pt", weights_only=True) == {"step": 2}
    assert not list(repo.glob(".plain.pt*")), "no record beside it"
    assert resumeguard.api.dcp.save(resumed, {"model": model.state_dict()}, "sharded") is None
    assert not list(repo.glob(".sharded*")), "DCP's own save: nothing recorded"
    loaded = {"model": other.state_dict()}
    resumeguard.api.dcp.load(resumed, loaded, "sharded")  # DCP's own load: no record needed
    resumed.finish()

    @resumeguard.guard(run_id="off1", resume="must", repo=repo)
    def body() -> str:
        return "ran"

    assert body() == "ran"
    assert capsys.readouterr().err.count("RESUMEGUARD_DISABLE is set") == 1, "said once"
    code, _, _ = cli(capsys, "check", "--run-id", "off1", "--offline")
    assert code == 0
    monkeypatch.delenv("RESUMEGUARD_DISABLE")
    code, _, _ = cli(capsys, "check", "--run-id", "off1", "--offline")
    assert code == 1, "back on: the check blocks again"
