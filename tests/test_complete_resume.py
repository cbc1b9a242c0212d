"""A resume restores everything the run needs: what a checkpoint holds is recorded at save
(schedulers with their step, scalers with their scale, RNG states, the data position), and the
first optimizer step after a restore reports what was not put back (``state.*``), each with the
harmful resume beside the complete one; real torch schedulers, GradScalers and W&B runs."""

from __future__ import annotations

import dataclasses
import logging
import random
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from helpers import model_and_opt, offline_project, start

import resumeguard
from resumeguard.checkpoint.beside import read_beside
from resumeguard.collect.components import Components, components_of
from resumeguard.stores.interface import RunRef
from resumeguard.stores.offline import OfflineStore
from resumeguard.verdict.findings import Severity
from resumeguard.verdict.policy import Rule, preset


def warmup(opt: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 10))


def step(model: torch.nn.Module, opt: Any, sched: Any = None, scaler: Any = None) -> None:
    loss = model(torch.ones(2, 4)).sum()
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    else:
        loss.backward()
        opt.step()
    opt.zero_grad()
    if sched is not None:
        sched.step()


class Sampler:
    """A sampler that keeps its position, as stateful samplers and loaders do."""

    def __init__(self, n: int = 10) -> None:
        self.n, self.index = n, 0

    def __len__(self) -> int:
        return self.n

    def state_dict(self) -> dict[str, int]:
        return {"index": self.index}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.index = state["index"]


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "resumeguard"]


def state_findings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [m for m in messages(caplog) if "(state." in m]


@pytest.fixture
def saved(tmp_path: Path) -> Any:
    """Save a checkpoint after 5 steps with whatever extra parts are asked for."""

    def save(**extra: Any) -> Path:
        model, opt = model_and_opt()
        sched = warmup(opt)
        for _ in range(5):
            step(model, opt, sched)
        state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": 5}
        parts = {
            "scheduler": sched.state_dict(),
            "rng": torch.get_rng_state(),
            "python_rng": random.getstate(),
            "scaler": torch.amp.GradScaler("cpu", init_scale=1024.0).state_dict(),
            "sampler": {"index": 7},
        }
        state.update({k: parts[k] for k, wanted in extra.items() if wanted})
        path = tmp_path / f"ck-{uuid.uuid4().hex[:6]}.pt"
        resumeguard.save_checkpoint(None, state, path)
        return path

    return save


@pytest.fixture(autouse=True)
def _logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="resumeguard")


# --- what a checkpoint holds ---------------------------------------------------------------------


def test_components_are_recognised_from_their_shapes() -> None:
    model, opt = model_and_opt()
    first, second = warmup(opt), torch.optim.lr_scheduler.StepLR(opt, 3)
    for _ in range(4):
        step(model, opt)
        first.step()
        second.step()
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(model_and_opt()[1])
    state = {
        "model": model.state_dict(),
        "optim": opt.state_dict(),
        "train": {"schedulers": [first.state_dict(), second.state_dict()]},
        "plateau": plateau.state_dict(),
        "amp": torch.amp.GradScaler("cpu", init_scale=512.0).state_dict(),
        "rng": {
            "cpu": torch.get_rng_state(),
            "python": random.getstate(),
            "numpy": np.random.get_state(),
            "cuda": [torch.zeros(16, dtype=torch.uint8)],
        },
        "dataloader": {"epoch": 1, "index": 3},
        "epoch": 2,
        "note": "text",
    }
    held = components_of(state)
    assert held.model == ("model",) and held.optimizer == ("optim",)
    assert held.schedulers == {"train.schedulers.0": 4, "train.schedulers.1": 4, "plateau": 0}
    assert held.scalers == {"amp": 512.0}
    assert held.rng == {
        "rng.cpu": "torch",
        "rng.python": "python",
        "rng.numpy": "numpy",
        "rng.cuda": "cuda",
    }
    assert held.data == ("dataloader",)
    assert components_of({"model": model.state_dict(), "epoch": 3}) == Components(
        model=("model",)
    ), "an epoch counter alone is no data position"
    assert components_of(model.state_dict()).model == ("",), "a bare model state dict"


def test_the_save_records_what_the_state_holds(saved: Any) -> None:
    path = saved(scheduler=True, scaler=True, rng=True)
    origin = read_beside(path)
    assert origin is not None and origin.checkpoint.components is not None
    held = origin.checkpoint.components
    assert held.schedulers == {"scheduler": 5} and held.scalers == {"scaler": 1024.0}
    assert held.rng == {"rng": "torch"} and held.names() == [
        "model",
        "optimizer",
        "scheduler",
        "scaler",
        "rng",
    ]


# --- state.scheduler ---------------------------------------------------------------------------


def test_a_scheduler_never_saved_restarts_the_schedule(
    saved: Any, caplog: pytest.LogCaptureFixture
) -> None:
    path = saved()
    model, opt = model_and_opt()
    sched = warmup(opt)
    resumeguard.restore_checkpoint(None, path, model=model, optimizer=opt)
    step(model, opt, sched)
    [line] = state_findings(caplog)
    assert "no LR scheduler state" in line and "restarts at step 0" in line
    assert "(state.scheduler)" in line


def test_a_scheduler_saved_and_not_loaded_is_reported_with_the_call(
    saved: Any, caplog: pytest.LogCaptureFixture
) -> None:
    path = saved(scheduler=True)
    model, opt = model_and_opt()
    sched = warmup(opt)
    resumeguard.restore_checkpoint(None, path, model=model, optimizer=opt)
    step(model, opt, sched)
    [line] = state_findings(caplog)
    assert "saved at step 5, running at step 0" in line
    step(model, opt, sched)
    assert len(state_findings(caplog)) == 1, "the check runs at the first step only"


def test_a_restored_scheduler_gives_nothing(saved: Any, caplog: pytest.LogCaptureFixture) -> None:
    path = saved(scheduler=True)
    model, opt = model_and_opt()
    sched = warmup(opt)
    resumeguard.restore_checkpoint(None, path, model=model, optimizer=opt, scheduler=sched)
    assert sched.last_epoch == 5
    assert any("restored scheduler (scheduler, step 5)" in m for m in messages(caplog))
    step(model, opt, sched)
    # The script's own load_state_dict counts the same.
    model, opt = model_and_opt()
    sched = warmup(opt)
    state = resumeguard.restore_checkpoint(None, path, model=model, optimizer=opt)
    sched.load_state_dict(state["scheduler"])
    step(model, opt, sched)
    assert state_findings(caplog) == []


def test_a_run_without_a_scheduler_gives_nothing(
    saved: Any, caplog: pytest.LogCaptureFixture
) -> None:
    path = saved()
    model, opt = model_and_opt()
    resumeguard.restore_checkpoint(None, path, model=model, optimizer=opt)
    step(model, opt)
    assert state_findings(caplog) == []


# --- state.scaler ------------------------------------------------------------------------------


def test_a_scaler_left_at_its_default_is_reported(
    saved: Any, caplog: pytest.LogCaptureFixture
) -> None:
    path = saved(scaler=True)
    model, opt = model_and_opt()
    scaler = torch.amp.GradScaler("cpu")
    resumeguard.restore_checkpoint(None, path, model=model, optimizer=opt)
    step(model, opt, scaler=scaler)
    [line] = state_findings(caplog)
    assert "saved at scale 1024, running at scale 65536" in line and "(state.scaler)" in line


def test_a_scaler_the_checkpoint_lacks_is_reported(
    saved: Any, caplog: pytest.LogCaptureFixture
) -> None:
    path = saved()
    model, opt = model_and_opt()
    scaler = torch.amp.GradScaler("cpu")
    resumeguard.restore_checkpoint(None, path, model=model, optimizer=opt)
    step(model, opt, scaler=scaler)
    [line] = state_findings(caplog)
    assert "the checkpoint holds none" in line


def test_a_restored_scaler_gives_nothing(saved: Any, caplog: pytest.LogCaptureFixture) -> None:
    path = saved(scaler=True)
    model, opt = model_and_opt()
    scaler = torch.amp.GradScaler("cpu")
    resumeguard.restore_checkpoint(None, path, model=model, optimizer=opt, scaler=scaler)
    assert scaler.get_scale() == 1024.0
    step(model, opt, scaler=scaler)
    assert state_findings(caplog) == []


# --- state.rng and state.data --------------------------------------------------------------------


def test_rng_states_left_behind_are_info(saved: Any, caplog: pytest.LogCaptureFixture) -> None:
    path = saved(rng=True, python_rng=True)
    model, opt = model_and_opt()
    resumeguard.restore_checkpoint(None, path, model=model, optimizer=opt)
    step(model, opt)
    [line] = state_findings(caplog)
    assert "RNG states (python, torch)" in line and "(state.rng)" in line
    assert [r.levelno for r in caplog.records if "(state.rng)" in r.getMessage()] == [logging.INFO]


def test_rng_states_restored_by_the_api_or_the_script_give_nothing(
    saved: Any, caplog: pytest.LogCaptureFixture
) -> None:
    path = saved(rng=True, python_rng=True)
    model, opt = model_and_opt()
    state = resumeguard.restore_checkpoint(None, path, model=model, optimizer=opt, rng=True)
    assert torch.equal(torch.get_rng_state(), state["rng"])
    step(model, opt)
    model, opt = model_and_opt()
    state = resumeguard.restore_checkpoint(None, path, model=model, optimizer=opt)
    torch.set_rng_state(state["rng"])
    step(model, opt)
    assert state_findings(caplog) == []


def test_a_data_position_left_behind_is_info_and_restored_gives_nothing(
    saved: Any, caplog: pytest.LogCaptureFixture
) -> None:
    path = saved(sampler=True)
    model, opt = model_and_opt()
    resumeguard.restore_checkpoint(None, path, model=model, optimizer=opt)
    step(model, opt)
    [line] = state_findings(caplog)
    assert 'data position (state["sampler"])' in line and "(state.data)" in line
    caplog.clear()
    model, opt = model_and_opt()
    sampler = Sampler()
    resumeguard.restore_checkpoint(None, path, model=model, optimizer=opt, dataloader=sampler)
    assert sampler.index == 7
    step(model, opt)
    assert state_findings(caplog) == []


def test_no_data_position_mid_epoch_is_info_at_an_epoch_boundary_nothing(
    saved: Any, caplog: pytest.LogCaptureFixture
) -> None:
    path = saved()  # step 5 of 10-batch epochs: mid-epoch
    model, opt = model_and_opt()
    resumeguard.restore_checkpoint(None, path, model=model, optimizer=opt, dataloader=Sampler(10))
    step(model, opt)
    [line] = state_findings(caplog)
    assert "no data position and its step 5 is inside an epoch" in line
    caplog.clear()
    model, opt = model_and_opt()
    resumeguard.restore_checkpoint(None, path, model=model, optimizer=opt, dataloader=Sampler(5))
    step(model, opt)
    assert state_findings(caplog) == []


def test_a_rule_can_make_a_state_finding_block(saved: Any) -> None:
    path = saved(rng=True)
    model, opt = model_and_opt()
    strict = preset("strict")
    policy = dataclasses.replace(strict, rules=(Rule("state.rng", Severity.BLOCK, "test"),))
    resumeguard.restore_checkpoint(None, path, model=model, optimizer=opt, policy=policy)
    before = model[0].weight.detach().clone()
    with pytest.raises(resumeguard.ResumeBlocked, match=r"state\.rng"):
        step(model, opt)
    assert torch.equal(model[0].weight, before), "the blocked step did not run"


def test_the_hook_is_gone_after_the_first_step(saved: Any) -> None:
    from torch.optim.optimizer import _global_optimizer_pre_hooks

    before = len(_global_optimizer_pre_hooks)
    path = saved(scheduler=True)
    model, opt = model_and_opt()
    sched = warmup(opt)
    resumeguard.restore_checkpoint(None, path, model=model, optimizer=opt, scheduler=sched)
    assert len(_global_optimizer_pre_hooks) == before + 1
    step(model, opt, sched)
    assert len(_global_optimizer_pre_hooks) == before


# --- a real run --------------------------------------------------------------------------------


def test_a_wandb_run_records_components_and_reports_a_lost_schedule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    repo = offline_project(tmp_path, monkeypatch)
    run_id = f"st{uuid.uuid4().hex[:8]}"
    model, opt = model_and_opt()
    sched = warmup(opt)
    run = start(run_id, repo)
    for i in range(3):
        step(model, opt, sched)
        run.log({"loss": 1.0}, step=i)
    state = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "sched": sched.state_dict(),
    }
    resumeguard.save_checkpoint(run, state, "ck.pt")
    run.finish()
    record = OfflineStore().fetch(RunRef(run_id)).record
    assert record["checkpoints"]["ck.pt"]["components"]["schedulers"] == {"sched": 3}
    resumed = start(run_id, repo, resume="must")
    model, opt = model_and_opt()
    sched = warmup(opt)
    resumeguard.restore_checkpoint(resumed, "ck.pt", model=model, optimizer=opt)
    step(model, opt, sched)
    resumed.finish()
    assert any("saved at step 3, running at step 0" in m for m in state_findings(caplog))
