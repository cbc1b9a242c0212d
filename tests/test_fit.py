"""check_fit and hyper_overrides against real torch models and optimizers."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable

import pytest
import torch

from resumeguard.verdict.fit import FitProblem, check_fit, hyper_overrides

Params = Iterable[torch.nn.Parameter]


def _mlp(hidden: int = 6) -> torch.nn.Sequential:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(8, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 2)
    )


def _train(model: torch.nn.Module, opt: torch.optim.Optimizer, in_features: int = 8) -> None:
    opt.zero_grad()
    model(torch.randn(4, in_features)).pow(2).sum().backward()
    opt.step()


def _checkpoint(
    model: torch.nn.Module, make: Callable[[Params], torch.optim.Optimizer]
) -> dict[str, object]:
    opt = make(model.parameters())
    _train(model, opt)
    return copy.deepcopy(opt.state_dict())


def _paths(problems: list[FitProblem]) -> list[str]:
    return [p.path for p in problems]


def _adamw(ps: Params) -> torch.optim.Optimizer:
    return torch.optim.AdamW(ps, lr=1e-3)


def test_identical_setup_fits() -> None:
    saved_model = _mlp()
    saved = _checkpoint(saved_model, _adamw)
    model = _mlp()
    opt = _adamw(model.parameters())
    # A scheduler built before loading adds "initial_lr": not a divergence.
    torch.optim.lr_scheduler.StepLR(opt, step_size=10)
    assert check_fit(saved, opt, model=model, saved_model_state=saved_model.state_dict()) == []
    assert hyper_overrides(saved, opt) == []
    # Resuming twice: the optimizer already has (fitting) state of its own.
    opt.load_state_dict(saved)
    _train(model, opt)
    assert check_fit(saved, opt, saved_class="torch.optim.adamw.AdamW") == []


def test_changed_linear_with_same_param_count() -> None:
    saved = _checkpoint(_mlp(hidden=6), _adamw)
    model = _mlp(hidden=5)
    opt = _adamw(model.parameters())
    problems = check_fit(saved, opt)
    # The last bias (2,) is unchanged.
    assert _paths(problems) == [f"optimizer.params.{i}.shape" for i in range(3)]
    first = problems[0]
    assert (first.recorded, first.current) == ([6, 8], [5, 8])
    assert "exp_avg" in first.message
    # torch itself accepts it: this is what check_fit guards against.
    opt.load_state_dict(saved)


def test_changed_layer_reported_on_the_model_too() -> None:
    saved_model = _mlp(hidden=6)
    saved = _checkpoint(saved_model, _adamw)
    model = _mlp(hidden=5)
    problems = check_fit(
        saved, _adamw(model.parameters()), model=model, saved_model_state=saved_model.state_dict()
    )
    paths = _paths(problems)
    assert "model.params.0.weight" in paths and "model.params.2.bias" not in paths
    assert "(0.weight)" in problems[paths.index("optimizer.params.0.shape")].message


class _TwoParams(torch.nn.Module):
    def __init__(self, first: tuple[int, ...], second: tuple[int, ...]) -> None:
        super().__init__()
        self.a = torch.nn.Parameter(torch.randn(first))
        self.b = torch.nn.Parameter(torch.randn(second))

    def forward(self) -> torch.Tensor:
        return self.a.sum() ** 2 + self.b.sum() ** 2


def test_equal_count_params_with_swapped_shapes() -> None:
    saved_model = _TwoParams((2, 3), (3, 2))
    opt = torch.optim.SGD(saved_model.parameters(), lr=0.1, momentum=0.9)
    saved_model().backward()
    opt.step()
    saved = opt.state_dict()
    model = _TwoParams((3, 2), (2, 3))
    problems = check_fit(saved, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
    assert _paths(problems) == ["optimizer.params.0.shape", "optimizer.params.1.shape"]
    assert (problems[0].recorded, problems[0].current) == ([2, 3], [3, 2])


def test_adamw_state_into_sgd() -> None:
    saved = _checkpoint(_mlp(), _adamw)
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    problems = check_fit(saved, opt)
    paths = _paths(problems)
    assert paths[0] == "optimizer.class"
    assert (problems[0].recorded, problems[0].current) == (
        "torch.optim.adamw.AdamW",
        "torch.optim.sgd.SGD",
    )
    # One finding: the other class's hyperparameters and state keys follow from it.
    assert paths == ["optimizer.class"]
    assert "KeyError" in problems[0].message and "AdamW" in problems[0].hint
    # What torch does without the check: loads, then fails at step().
    opt.load_state_dict(saved)
    with pytest.raises(KeyError, match="momentum"):
        _train(model, opt)


def test_sgd_state_into_adamw() -> None:
    saved = _checkpoint(_mlp(), lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9))
    paths = _paths(check_fit(saved, _adamw(_mlp().parameters())))
    assert paths == ["optimizer.class"]


def test_adam_and_adamw_are_told_apart() -> None:
    saved = _checkpoint(_mlp(), torch.optim.Adam)
    problems = check_fit(saved, _adamw(_mlp().parameters()))
    assert _paths(problems) == ["optimizer.class"]
    assert problems[0].recorded == "torch.optim.adam.Adam"
    # Adam with decoupled weight decay is AdamW: it fits an AdamW checkpoint.
    saved_w = _checkpoint(_mlp(), _adamw)
    decoupled = torch.optim.Adam(_mlp().parameters(), decoupled_weight_decay=True)
    assert check_fit(saved_w, decoupled) == []


def test_recorded_class_wins_over_inference() -> None:
    saved = _checkpoint(_mlp(), _adamw)
    problems = check_fit(saved, _adamw(_mlp().parameters()), saved_class="my.Lion")
    assert _paths(problems) == ["optimizer.class"]
    assert problems[0].recorded == "my.Lion"


def test_subclass_of_the_recorded_optimizer_fits() -> None:
    class MyAdamW(torch.optim.AdamW):
        pass

    saved = _checkpoint(_mlp(), _adamw)
    assert check_fit(saved, MyAdamW(_mlp().parameters())) == []


def test_renamed_params_in_named_optimizer() -> None:
    saved_model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    opt = torch.optim.AdamW(saved_model.named_parameters())
    _train(saved_model, opt, in_features=4)
    saved = opt.state_dict()
    assert saved["param_groups"][0]["param_names"] == ["0.weight", "0.bias"]
    assert check_fit(saved, torch.optim.AdamW(saved_model.named_parameters())) == []
    renamed = torch.nn.ModuleDict({"proj": torch.nn.Linear(4, 4)})
    problems = check_fit(saved, torch.optim.AdamW(renamed.named_parameters()))
    assert _paths(problems) == ["optimizer.params.0.name", "optimizer.params.1.name"]
    assert (problems[0].recorded, problems[0].current) == ("0.weight", "proj.weight")


def test_group_count_change() -> None:
    saved = _checkpoint(_mlp(), _adamw)
    model = _mlp()
    decay = [p for n, p in model.named_parameters() if n.endswith("weight")]
    no_decay = [p for n, p in model.named_parameters() if n.endswith("bias")]
    opt = torch.optim.AdamW([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}])
    problems = check_fit(saved, opt)
    assert _paths(problems) == ["optimizer.groups"]
    assert (problems[0].recorded, problems[0].current) == (1, 2)


def test_param_count_change_in_a_group() -> None:
    saved = _checkpoint(_mlp(), _adamw)
    model = torch.nn.Sequential(torch.nn.Linear(8, 6), torch.nn.Linear(6, 2, bias=False))
    problems = check_fit(saved, _adamw(model.parameters()))
    assert _paths(problems) == ["optimizer.groups.0.params"]
    assert (problems[0].recorded, problems[0].current) == (4, 3)


def test_dtype_change_is_reported_once() -> None:
    saved = _checkpoint(_mlp(), _adamw)
    model = _mlp().to(torch.bfloat16)
    problems = check_fit(saved, _adamw(model.parameters()))
    assert _paths(problems) == ["optimizer.params.0.dtype"]
    assert (problems[0].recorded, problems[0].current) == ("float32", "bfloat16")
    assert "4 in all" in problems[0].message


def test_shard_without_state_for_some_params_fits() -> None:
    saved = _checkpoint(_mlp(), _adamw)
    for pid in (0, 3):
        del saved["state"][pid]  # type: ignore[attr-defined]
    assert check_fit(saved, _adamw(_mlp().parameters())) == []


def test_model_state_names_with_wrapper_prefix() -> None:
    saved_model = _mlp()
    saved = _checkpoint(saved_model, _adamw)
    wrapped = {f"module.{k}": v for k, v in saved_model.state_dict().items()}
    model = _mlp()
    problems = check_fit(saved, _adamw(model.parameters()), model=model, saved_model_state=wrapped)
    assert problems
    assert all(p.path.startswith("model.params.") for p in problems)
    assert "'module.' prefix" in problems[0].hint


def test_not_a_state_dict() -> None:
    from resumeguard.errors import BadInput

    with pytest.raises(BadInput):
        check_fit({"optimizer": {}}, _adamw(_mlp().parameters()))


# --- hyper_overrides -----------------------------------------------------------------------------


def test_hyper_overrides_lr_and_amsgrad() -> None:
    saved = _checkpoint(_mlp(), _adamw)
    model = _mlp()
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4, amsgrad=True)
    # The lr is scheduled: without the configuration it was saved with, its value says nothing.
    assert _paths(hyper_overrides(saved, opt)) == ["optimizer.groups.0.amsgrad"]
    configured = {"lr": 1e-3, "betas": [0.9, 0.999]}
    problems = hyper_overrides(saved, opt, configured=configured)
    by_path = {p.path: p for p in problems}
    assert set(by_path) == {"optimizer.groups.0.lr", "optimizer.groups.0.amsgrad"}
    lr = by_path["optimizer.groups.0.lr"]
    assert (lr.recorded, lr.current) == (0.001, 0.0005)
    assert lr.message.startswith("lr is configured as 0.0005 now, 0.001 when the checkpoint")
    assert by_path["optimizer.groups.0.amsgrad"].recorded is False
    # With amsgrad switched off again by the checkpoint, its state fits.
    assert check_fit(saved, opt) == []
    # The override torch performs silently.
    opt.load_state_dict(saved)
    assert opt.param_groups[0]["lr"] == 1e-3 and opt.param_groups[0]["amsgrad"] is False


def test_hyper_overrides_betas_tuple_vs_list_is_no_change() -> None:
    saved = _checkpoint(_mlp(), lambda ps: torch.optim.AdamW(ps, betas=(0.9, 0.95)))
    saved["param_groups"][0]["betas"] = [0.9, 0.95]  # type: ignore[index]
    opt = torch.optim.AdamW(_mlp().parameters(), betas=(0.9, 0.95))
    assert hyper_overrides(saved, opt) == []
    changed = torch.optim.AdamW(_mlp().parameters(), betas=(0.9, 0.999))
    configured = {"betas": [0.9, 0.95]}
    assert _paths(hyper_overrides(saved, changed, configured=configured)) == [
        "optimizer.groups.0.betas"
    ]
