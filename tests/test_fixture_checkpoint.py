"""The checked-in checkpoint (fixtures/checkpoints): read safely, fingerprinted, fit-checked."""

from __future__ import annotations

from pathlib import Path

import torch
from helpers import cli_json

from resumeguard.checkpoint import find_optimizer_state, load_weights
from resumeguard.collect.optimizer import collect_optimizer
from resumeguard.io.hashing import digest_file
from resumeguard.verdict.fit import check_fit

CHECKPOINT = Path(__file__).resolve().parent.parent / "fixtures" / "checkpoints" / "linear-adamw.pt"


def test_fixture_checkpoint_is_fingerprinted_and_fit_checked() -> None:
    with open(CHECKPOINT, "rb") as f:
        state = load_weights(f, name=CHECKPOINT.name)
    saved = find_optimizer_state(state)
    assert saved is not None
    assert collect_optimizer(saved).cls == "torch.optim.adamw.AdamW"
    same = torch.nn.Linear(4, 2)
    assert check_fit(saved, torch.optim.AdamW(same.parameters()), model=same) == []
    wider = torch.nn.Linear(4, 3)
    problems = check_fit(saved, torch.optim.AdamW(wider.parameters()), model=wider)
    assert any(p.path.startswith("optimizer.params.0") for p in problems)


def test_digest_command_matches_the_library(capsys) -> None:
    code, out = cli_json(capsys, "digest", str(CHECKPOINT))
    assert code == 0
    assert (out["digest"], out["size"]) == digest_file(CHECKPOINT)
