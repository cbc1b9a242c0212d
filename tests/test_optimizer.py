"""Tensor digests (hashing.digest_tensors) and the optimizer and model collectors."""

from __future__ import annotations

import copy
import ctypes
import json
import subprocess
import sys

import pytest
import torch

from resumeguard.collect.optimizer import (
    ModelRecord,
    OptimizerRecord,
    collect_model,
    collect_optimizer,
    infer_class,
    json_safe,
)
from resumeguard.errors import BadInput
from resumeguard.io import hashing
from resumeguard.io.hashing import digest_tensors


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))


def _stepped(opt: torch.optim.Optimizer, model: torch.nn.Module) -> torch.optim.Optimizer:
    model(torch.randn(5, 4)).pow(2).sum().backward()
    opt.step()
    return opt


def _flip_first_bit(t: torch.Tensor) -> torch.Tensor:
    out = t.clone()
    out.view(torch.uint8).view(-1)[0] ^= 1
    return out


# --- digest_tensors ------------------------------------------------------------------------------


def test_digest_is_stable_and_equal_for_equal_content() -> None:
    t = torch.randn(8, 5)
    first = digest_tensors([("a", t)])
    assert first.startswith("blake3:")
    assert digest_tensors([("a", t)]) == first
    assert digest_tensors([("a", t.clone())]) == first


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda name, t: [(name, _flip_first_bit(t))], id="one-bit-flipped"),
        pytest.param(lambda name, t: [(name, t.reshape(5, 8))], id="reshaped"),
        pytest.param(lambda name, t: [(name, t.view(torch.int32))], id="same-bytes-other-dtype"),
        pytest.param(lambda name, t: [("b", t)], id="renamed"),
    ],
)
def test_digest_changes(change: object) -> None:
    t = torch.randn(8, 5)
    assert callable(change)
    assert digest_tensors(change("a", t)) != digest_tensors([("a", t)])


def test_digest_depends_on_order_and_boundaries() -> None:
    a, b = torch.arange(6.0), torch.arange(6.0, 12.0)
    assert digest_tensors([("x", a), ("y", b)]) != digest_tensors([("y", b), ("x", a)])
    # The same bytes split differently between two tensors.
    whole = torch.arange(12.0)
    assert digest_tensors([("x", whole[:4]), ("y", whole[4:])]) != digest_tensors(
        [("x", whole[:6]), ("y", whole[6:])]
    )


def test_digest_bfloat16_and_zero_dim() -> None:
    bf = torch.randn(7, 3).to(torch.bfloat16)
    step = torch.tensor(3.0)
    base = digest_tensors([("bf", bf), ("step", step)])
    assert digest_tensors([("bf", bf.clone()), ("step", torch.tensor(3.0))]) == base
    assert digest_tensors([("bf", _flip_first_bit(bf)), ("step", step)]) != base
    assert digest_tensors([("bf", bf), ("step", torch.tensor(4.0))]) != base
    assert digest_tensors([("bf", bf), ("step", step.reshape(1))]) != base
    empty = torch.empty(0, 3)
    assert digest_tensors([("e", empty)]) != digest_tensors([("e", torch.empty(3, 0))])


def test_digest_non_contiguous_equals_contiguous(monkeypatch: pytest.MonkeyPatch) -> None:
    t = torch.randn(6, 10)
    view = t.t()
    assert not view.is_contiguous()
    expected = digest_tensors([("t", view.contiguous())])
    assert digest_tensors([("t", view)]) == expected
    # Row blocks smaller than one row and spanning several rows: the same bytes, in order.
    for chunk in (8, 24, 64):
        monkeypatch.setattr(hashing, "TENSOR_CHUNK", chunk)
        assert digest_tensors([("t", view)]) == expected
    strided = torch.arange(20.0)[::3]
    assert digest_tensors([("s", strided)]) == digest_tensors([("s", strided.contiguous())])


def test_digest_reads_cpu_memory_without_copying() -> None:
    t = torch.randn(64, 64)
    chunks = list(hashing._byte_chunks(t))
    assert len(chunks) == 1
    assert ctypes.addressof(ctypes.c_char.from_buffer(chunks[0])) == t.data_ptr()
    assert chunks[0].nbytes == t.numel() * t.element_size()


def test_staged_copy_gives_the_same_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    # The path device tensors take: bounded copies through one reused buffer.
    monkeypatch.setattr(hashing, "TENSOR_CHUNK", 40)
    t = torch.randn(5, 7, dtype=torch.float64)
    staged = b"".join(bytes(c) for c in hashing._staged_chunks(t))
    direct = b"".join(bytes(c) for c in hashing._byte_chunks(t))
    assert staged == direct
    assert len(direct) == t.numel() * 8


def test_digest_resolves_lazy_conj_and_sparse() -> None:
    z = torch.randn(3, 3, dtype=torch.complex64)
    assert digest_tensors([("z", z.conj())]) == digest_tensors([("z", z.conj().resolve_conj())])
    assert digest_tensors([("z", z.conj())]) != digest_tensors([("z", z)])
    eye = torch.eye(4)
    assert digest_tensors([("e", eye.to_sparse())]) == digest_tensors([("e", eye)])


def test_modules_import_without_torch() -> None:
    code = (
        "import sys, resumeguard.io.hashing, resumeguard.collect.optimizer;"
        "import resumeguard.verdict.fit;"
        "assert 'torch' not in sys.modules, 'torch imported eagerly'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- collect_optimizer ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda ps: torch.optim.AdamW(ps, lr=1e-3, amsgrad=True), id="adamw"),
        pytest.param(lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9), id="sgd"),
        pytest.param(lambda ps: torch.optim.RMSprop(ps, centered=True), id="rmsprop"),
    ],
)
def test_live_and_state_dict_records_agree(make: object) -> None:
    assert callable(make)
    model = _model()
    opt = _stepped(make(model.parameters()), model)
    live = collect_optimizer(opt)
    saved = collect_optimizer(opt.state_dict())
    # The constructor's arguments are known only from the live optimizer.
    assert live.defaults is not None and live.defaults["lr"] == opt.defaults["lr"]
    assert saved.defaults is None
    assert {**live.to_json(), "defaults": None} == saved.to_json()
    assert live.cls == f"{type(opt).__module__}.{type(opt).__qualname__}"
    assert live.groups[0]["params"] == 4
    assert "params" in live.groups[0] and isinstance(live.groups[0]["params"], int)
    assert [p.shape for p in live.params] == [(3, 4), (3,), (2, 3), (2,)]
    assert all(p.dtype == "float32" for p in live.params)
    # JSON round trip through the record's own (de)serialisation.
    data = json.loads(json.dumps(live.to_json()))
    assert OptimizerRecord.from_json(data).to_json() == live.to_json()


def test_record_contents_for_adamw() -> None:
    model = _model()
    opt = _stepped(torch.optim.AdamW(model.parameters(), lr=2e-3, betas=(0.8, 0.9)), model)
    rec = collect_optimizer(opt.state_dict())
    group = rec.groups[0]
    assert group["lr"] == 2e-3 and group["betas"] == [0.8, 0.9] and group["params"] == 4
    state = rec.params[0].state
    assert state["step"] == {"shape": [], "dtype": "float32"}
    assert state["exp_avg"] == {"shape": [3, 4], "dtype": "float32"}
    assert set(state) == {"step", "exp_avg", "exp_avg_sq"}


def test_state_digest_tracks_state_values() -> None:
    model = _model()
    opt = _stepped(torch.optim.AdamW(model.parameters()), model)
    sd = opt.state_dict()
    base = collect_optimizer(sd).state_digest
    assert collect_optimizer(copy.deepcopy(sd)).state_digest == base
    assert collect_optimizer(opt).state_digest == base
    changed = copy.deepcopy(sd)
    changed["state"][2]["exp_avg_sq"].view(-1)[3] += 1e-3
    assert collect_optimizer(changed).state_digest != base
    # The parameters' values are not optimizer state.
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    assert collect_optimizer(opt).state_digest == base


def test_class_inference() -> None:
    model = _model()
    params = list(model.parameters())
    adamw = torch.optim.AdamW(params).state_dict()["param_groups"]
    adam = torch.optim.Adam(params).state_dict()["param_groups"]
    sgd = torch.optim.SGD(params, lr=0.1).state_dict()["param_groups"]
    assert infer_class(adamw) == "torch.optim.adamw.AdamW"
    assert infer_class(adam) == "torch.optim.adam.Adam"
    assert infer_class(sgd) == "torch.optim.sgd.SGD"
    assert collect_optimizer({"state": {}, "param_groups": sgd}).cls == "torch.optim.sgd.SGD"


def test_class_inference_tolerates_schedulers_and_older_torch() -> None:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    torch.optim.lr_scheduler.StepLR(opt, step_size=2)  # adds "initial_lr" to the groups
    groups = opt.state_dict()["param_groups"]
    assert "initial_lr" in groups[0]
    assert infer_class(groups) == "torch.optim.sgd.SGD"
    # A checkpoint from a torch that had no "fused" flag yet.
    old = [{k: v for k, v in g.items() if k not in {"fused", "differentiable"}} for g in groups]
    assert infer_class(old) == "torch.optim.sgd.SGD"


def test_class_inference_unknown_or_mixed_is_none() -> None:
    custom = [{"lr": 0.1, "my_knob": 3, "params": [0]}]
    assert infer_class(custom) is None
    params = list(_model().parameters())
    mixed = [
        torch.optim.SGD(params[:2], lr=0.1).state_dict()["param_groups"][0],
        torch.optim.AdamW(params[2:]).state_dict()["param_groups"][0],
    ]
    assert infer_class(mixed) is None
    assert collect_optimizer({"state": {}, "param_groups": custom}).cls is None
    assert collect_optimizer({"state": {}, "param_groups": custom}, cls="my.Opt").cls == "my.Opt"


def test_shard_with_partial_state_and_named_ids() -> None:
    model = _model()
    opt = _stepped(torch.optim.AdamW(model.parameters()), model)
    sd = opt.state_dict()
    # A shard holds state for some params only; FSDP-style dicts key params by name.
    names = [n for n, _ in model.named_parameters()]
    shard = {
        "state": {names[i]: sd["state"][i] for i in (1, 2)},
        "param_groups": [{**sd["param_groups"][0], "params": names}],
    }
    rec = collect_optimizer(shard)
    assert [p.shape for p in rec.params] == [None, (3,), (2, 3), None]
    assert rec.params[0].state == {} and rec.params[0].dtype is None
    assert rec.cls == "torch.optim.adamw.AdamW"
    assert rec.state_digest != collect_optimizer(sd).state_digest


def test_fresh_optimizer_has_no_state() -> None:
    model = _model()
    opt = torch.optim.AdamW(model.parameters())
    live, saved = collect_optimizer(opt), collect_optimizer(opt.state_dict())
    assert [p.shape for p in live.params] == [(3, 4), (3,), (2, 3), (2,)]
    assert [p.shape for p in saved.params] == [None] * 4
    assert live.state_digest == saved.state_digest


def test_lbfgs_list_state_is_recorded() -> None:
    model = _model()
    opt = torch.optim.LBFGS(model.parameters(), max_iter=3)
    x = torch.randn(5, 4)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = model(x).pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    rec = collect_optimizer(opt)
    json.dumps(rec.to_json())
    assert rec.cls == "torch.optim.lbfgs.LBFGS"
    assert rec.params[0].state["n_iter"]["value"] >= 1
    # The history lists of tensors are part of the digest.
    sd = copy.deepcopy(opt.state_dict())
    assert sd["state"][0]["old_dirs"]
    sd["state"][0]["old_dirs"][0].add_(1.0)
    assert collect_optimizer(sd).state_digest != rec.state_digest


def test_json_safe() -> None:
    assert json_safe((0.9, 0.99)) == [0.9, 0.99]
    assert json_safe(torch.tensor(0.5)) == 0.5
    assert json_safe(torch.zeros(2, 3)) == {"shape": [2, 3], "dtype": "float32"}
    assert json_safe({"a": object})["a"].startswith("<class")


def test_not_a_state_dict_is_bad_input() -> None:
    with pytest.raises(BadInput, match="param_groups"):
        collect_optimizer({"model": {}, "optimizer": {}})


# --- collect_model -------------------------------------------------------------------------------


def test_collect_model() -> None:
    rec = collect_model(_model())
    assert list(rec.params) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert rec.params["0.weight"] == {"shape": [3, 4], "dtype": "float32"}
    assert ModelRecord.from_json(json.loads(json.dumps(rec.to_json()))) == rec
    # Values do not count; shapes, dtypes and order do.
    other = _model()
    with torch.no_grad():
        for p in other.parameters():
            p.add_(1.0)
    assert collect_model(other).digest == rec.digest
    assert collect_model(_model().to(torch.bfloat16)).digest != rec.digest
    wider = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    assert collect_model(wider).digest != rec.digest

    class Swapped(torch.nn.Module):
        def __init__(self, first: str) -> None:
            super().__init__()
            order = ["a", "b"] if first == "a" else ["b", "a"]
            for name in order:
                self.register_parameter(name, torch.nn.Parameter(torch.zeros(2)))

    assert collect_model(Swapped("a")).digest != collect_model(Swapped("b")).digest
