"""Parameters registered in another order: two equal-shaped layers that swap places pass every
shape check, and an optimizer keyed by position gives each the other's moments. Blocked at the
check (init with model and optimizer, and ``resumeguard diff``) and at restore; an optimizer
built from an explicit list, untouched by the order, goes ahead."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import cli_json, offline_project

import resumeguard
from resumeguard.errors import CheckpointError
from resumeguard.records.fingerprint import dumps, take
from resumeguard.verdict.fit import check_fit


class Net(torch.nn.Module):
    """Two equal-shaped layers; ``swapped`` registers them the other way round."""

    def __init__(self, swapped: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        if swapped:
            self.b = torch.nn.Linear(4, 4)
            self.a = torch.nn.Linear(4, 4)
        else:
            self.a = torch.nn.Linear(4, 4)
            self.b = torch.nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.tanh(self.a(x)))


def by_position(model: Net) -> torch.optim.Optimizer:
    """How most scripts build it: no names, state keyed by position."""
    return torch.optim.AdamW(model.parameters(), lr=1e-3)


def by_list(model: Net) -> torch.optim.Optimizer:
    """An explicit list in a fixed order: the registration order does not move any slot."""
    return torch.optim.AdamW([*model.a.parameters(), *model.b.parameters()], lr=1e-3)


def step(model: Net, opt: torch.optim.Optimizer) -> None:
    opt.zero_grad()
    model(torch.randn(8, 4)).pow(2).sum().backward()
    opt.step()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return offline_project(tmp_path, monkeypatch)


def start(run_id: str, project: Path, **kw: object) -> object:
    return resumeguard.init(project="p", id=run_id, repo=project, **kw)


def test_swapped_layers_block_the_resume_at_init(project: Path) -> None:
    model = Net()
    start("ord1", project, model=model, optimizer=by_position(model)).finish()  # type: ignore[attr-defined]
    swapped = Net(swapped=True)
    with pytest.raises(resumeguard.ResumeBlocked) as info:
        start("ord1", project, resume="must", model=swapped, optimizer=by_position(swapped))
    blocking = {f.path for f in info.value.report.blocking}
    assert blocking == {f"optimizer.params.{i}.name" for i in range(4)}, blocking
    # The moved names are said once more, as context of the slots that moved.
    severities = {j.finding.path: j.severity.value for j in info.value.report.findings}
    assert severities["model.order"] == "info"


def test_same_order_resumes_at_init(project: Path) -> None:
    model = Net()
    start("ord2", project, model=model, optimizer=by_position(model)).finish()  # type: ignore[attr-defined]
    again = Net()
    run = start("ord2", project, resume="must", model=again, optimizer=by_position(again))
    run.finish()  # type: ignore[attr-defined]


def test_explicit_list_optimizer_goes_ahead_when_only_registration_moved(project: Path) -> None:
    model = Net()
    start("ord3", project, model=model, optimizer=by_list(model)).finish()  # type: ignore[attr-defined]
    swapped = Net(swapped=True)
    run = start("ord3", project, resume="must", model=swapped, optimizer=by_list(swapped))
    run.finish()  # type: ignore[attr-defined]


def test_diff_of_fingerprints_blocks_on_order(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    model, swapped = Net(), Net(swapped=True)
    a = tmp_path / "a.json"
    b = tmp_path / "b.json"
    same = tmp_path / "same.json"
    a.write_text(dumps(take(repo=None, model=model, optimizer=by_position(model))))
    b.write_text(dumps(take(repo=None, model=swapped, optimizer=by_position(swapped))))
    again = Net()
    same.write_text(dumps(take(repo=None, model=again, optimizer=by_position(again))))
    code, report = cli_json(capsys, "diff", str(a), str(b), "--repo", str(tmp_path))
    assert code == 1
    assert {f["path"] for f in report["findings"]} >= {"model.order", "optimizer.params.0.name"}
    code, report = cli_json(capsys, "diff", str(a), str(same), "--repo", str(tmp_path))
    assert (code, report["findings"]) == (0, [])
    # A record from before slot names were kept still catches the swap by the model's order.
    old = json.loads(a.read_text())
    for p in old["optimizer"]["params"]:
        del p["name"]
    a.write_text(json.dumps(old))
    code, report = cli_json(capsys, "diff", str(a), str(b), "--repo", str(tmp_path))
    assert code == 1 and [f["path"] for f in report["findings"]] == ["model.order"]


def test_fit_check_names_the_slot_when_built_from_model_parameters() -> None:
    saved_model = Net()
    opt = by_position(saved_model)
    step(saved_model, opt)
    saved = opt.state_dict()  # no param_names: positions only
    swapped = Net(swapped=True)
    problems = check_fit(
        saved, by_position(swapped), model=swapped, saved_model_state=saved_model.state_dict()
    )
    assert [p.path for p in problems] == [f"optimizer.params.{i}.name" for i in range(4)]
    assert (problems[0].recorded, problems[0].current) == ("a.weight", "b.weight")
    same = Net()
    assert (
        check_fit(saved, by_position(same), model=same, saved_model_state=saved_model.state_dict())
        == []
    )
    # The optimizer built from an explicit list keeps every slot: nothing to report.
    listed = by_list(saved_model)
    step(saved_model, listed)
    assert (
        check_fit(
            listed.state_dict(),
            by_list(swapped),
            model=swapped,
            saved_model_state=saved_model.state_dict(),
        )
        == []
    )


def test_restore_refuses_swapped_layers_and_restores_the_same_order(project: Path) -> None:
    model = Net()
    opt = by_position(model)
    run = start("ord4", project)
    step(model, opt)
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": 1}
    resumeguard.save_checkpoint(run, state, "ckpt.pt")
    swapped = Net(swapped=True)
    swapped_opt = by_position(swapped)
    with pytest.raises(CheckpointError, match=r"optimizer\.params\.0\.name"):
        resumeguard.restore_checkpoint(run, "ckpt.pt", model=swapped, optimizer=swapped_opt)
    assert swapped_opt.state_dict()["state"] == {}, "nothing was loaded"
    same = Net()
    same_opt = by_position(same)
    resumeguard.restore_checkpoint(run, "ckpt.pt", model=same, optimizer=same_opt)
    assert same_opt.state_dict()["state"][0]["exp_avg"].equal(
        opt.state_dict()["state"][0]["exp_avg"]
    )
    run.finish()  # type: ignore[attr-defined]


def test_restore_uses_slot_names_recorded_at_save(project: Path) -> None:
    model = Net()
    opt = by_list(model)
    run = start("ord5", project)
    step(model, opt)
    # Optimizer state only (no model state to infer the order from): the names kept at save decide.
    resumeguard.save_checkpoint(
        run, {"optimizer": opt.state_dict()}, "o.pt", optimizer=opt, model=model
    )
    other = Net()
    reversed_opt = torch.optim.AdamW([*other.b.parameters(), *other.a.parameters()], lr=1e-3)
    with pytest.raises(CheckpointError, match=r"optimizer\.params\.0\.name"):
        resumeguard.restore_checkpoint(run, "o.pt", model=other, optimizer=reversed_opt)
    swapped = Net(swapped=True)
    resumeguard.restore_checkpoint(run, "o.pt", model=swapped, optimizer=by_list(swapped))
    run.finish()  # type: ignore[attr-defined]


def test_restore_uses_the_model_order_recorded_at_save(project: Path) -> None:
    model = Net()
    opt = by_position(model)
    run = start("ord6", project)
    step(model, opt)
    # Optimizer state only, the model given to the save: its recorded order decides.
    resumeguard.save_checkpoint(run, {"optimizer": opt.state_dict()}, "p.pt", model=model)
    swapped = Net(swapped=True)
    with pytest.raises(CheckpointError, match=r"optimizer\.params\.0\.name"):
        resumeguard.restore_checkpoint(run, "p.pt", model=swapped, optimizer=by_position(swapped))
    same = Net()
    resumeguard.restore_checkpoint(run, "p.pt", model=same, optimizer=by_position(same))
    run.finish()  # type: ignore[attr-defined]
