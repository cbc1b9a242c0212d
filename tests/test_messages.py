"""Say plainly what happened: readable exception messages, one INFO line per verified resume, and a
restore that writes the checkpoint back where it was recorded."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from helpers import cli, make_repo, write

import resumeguard
from resumeguard.hashing import digest_file

FILES = {"train.py": "HIDDEN = 8\n", ".gitignore": "*.pt\n", "requirements.txt": "torch>=2.1\n"}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    repo = make_repo(tmp_path / "proj", FILES)
    monkeypatch.chdir(repo)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    (tmp_path / "wb").mkdir()
    return repo


def build(hidden: int = 8):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, hidden), torch.nn.Linear(hidden, 1))
    return model, torch.optim.AdamW(model.parameters(), lr=1e-3)


def start(run_id: str, repo: Path, **kw):
    kw.setdefault("config", {"lr": 1e-3})
    return resumeguard.init(project="p", id=run_id, repo=repo, **kw)


def train_and_save(run_id: str, repo: Path, name: str = "ckpt.pt"):
    model, opt = build()
    run = start(run_id, repo)
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": 1}
    record = resumeguard.save_checkpoint(run, state, name)
    run.finish()
    return record


# --- Readable exceptions -------------------------------------------------------------------------


def test_resume_blocked_reads_like_the_cli_and_summarises_long_lists(project: Path) -> None:
    start("msg1", project).finish()
    write(project, {f"src/gen_{i:03}.py": f"X = {i}\n" for i in range(150)})
    with pytest.raises(resumeguard.ResumeBlocked) as blocked:
        start("msg1", project, config={"lr": 2e-3}, resume="must")
    text = str(blocked.value)
    assert text.startswith("resume of run p/msg1 blocked: 151 finding(s) at block severity")
    # Path, recorded -> current and what to do, as the CLI's table has them.
    assert "config.lr" in text and "0.001 -> 0.002" in text
    assert "resume with the recorded value" in text
    # 150 paths are summarised per family, with counts.
    assert "+145 more code.untracked.*" in text and "145 block" in text
    assert text.count("code.untracked.src/gen_") == 5
    assert len(text.splitlines()) < 40


def test_a_harmless_resume_raises_nothing(project: Path) -> None:
    start("msg2", project).finish()
    start("msg2", project, resume="must").finish()


def test_checkpoint_error_lists_what_does_not_fit(project: Path) -> None:
    train_and_save("msg3", project)
    run = start("msg3", project, resume="must")
    model, opt = build(hidden=16)
    with pytest.raises(resumeguard.CheckpointError) as error:
        resumeguard.restore_checkpoint(run, "ckpt.pt", model=model, optimizer=opt)
    text = str(error.value)
    assert text.startswith("checkpoint ckpt.pt does not fit the current model/optimizer")
    assert "optimizer.params.0.shape" in text and "[8, 4]" in text and "[16, 4]" in text
    assert "what to do" in text
    words = " ".join(text.replace("│", " ").split())
    assert "the model changed since the checkpoint" in words
    # The same model loads.
    model, opt = build()
    resumeguard.restore_checkpoint(run, "ckpt.pt", model=model, optimizer=opt)
    run.finish()
