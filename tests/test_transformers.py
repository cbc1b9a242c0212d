"""The Trainer callback on real training: a real git repo, a tiny GPT-2 built from a config (no
download), the real offline W&B run WandbCallback starts, and the Trainer's own checkpoint
directories, resumed with ``train(resume_from_checkpoint=True)``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")
torch = pytest.importorskip("torch")
wandb = pytest.importorskip("wandb")

from helpers import make_repo, write  # noqa: E402

import resumeguard  # noqa: E402
from resumeguard.integrations.transformers import ResumeGuardTrainerCallback  # noqa: E402
from resumeguard.stores.layout import RECORD_FILE  # noqa: E402

FILES = {
    "train.py": "HIDDEN = 8\n",
    "requirements.txt": "torch>=2.1\n",
    ".gitignore": "wandb/\n",  # the Trainer's output_dir is NOT ignored: it lands in the repo
}
CHECKPOINT_FILES = {
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "optimizer.pt",
    "rng_state.pth",
    "scheduler.pt",
    "trainer_state.json",
    "training_args.bin",
}


class StepCounter(transformers.TrainerCallback):
    """Counts the training steps this Trainer ran."""

    def __init__(self) -> None:
        self.steps = 0

    def on_step_begin(self, args, state, control, **kwargs):
        self.steps += 1


def tiny_model():
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=32, n_positions=16, n_embd=8, n_layer=1, n_head=2, bos_token_id=0, eos_token_id=0
    )
    return transformers.GPT2LMHeadModel(config)


def dataset() -> list[dict]:
    g = torch.Generator().manual_seed(0)
    return [
        {"input_ids": ids, "labels": ids}
        for ids in torch.randint(0, 32, (8, 8), generator=g)  # 4 steps of 2 per epoch
    ]


def trainer_for(project: Path, max_steps: int, **args) -> tuple:
    counter = StepCounter()
    training_args = transformers.TrainingArguments(
        output_dir="out",
        max_steps=max_steps,
        per_device_train_batch_size=2,
        save_steps=2,
        logging_steps=1,
        use_cpu=True,
        report_to=["wandb"],
        disable_tqdm=True,
        **args,
    )
    model = tiny_model()
    trainer = transformers.Trainer(
        model=model,
        args=training_args,
        train_dataset=dataset(),
        callbacks=[ResumeGuardTrainerCallback(repo=project), counter],
    )
    return trainer, counter


def train(project: Path, max_steps: int, resume=None, **args):
    """One training as a fresh process would run it: a new Trainer, model and W&B run."""
    try:
        trainer, counter = trainer_for(project, max_steps, **args)
        trainer.train(resume_from_checkpoint=resume)
    finally:
        wandb.finish()  # as the process exit would
    return trainer, counter


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    repo = make_repo(tmp_path / "proj", FILES)
    monkeypatch.chdir(repo)
    monkeypatch.setenv("WANDB_DIR", str(repo))
    monkeypatch.setenv("WANDB_PROJECT", "p")
    # What a requeued job sets so that WandbCallback's wandb.init() resumes the run.
    monkeypatch.setenv("WANDB_RUN_ID", "hf1")
    monkeypatch.setenv("WANDB_RESUME", "allow")
    return repo


def records(project: Path) -> list[dict]:
    """The record in each offline directory of the run, oldest first."""
    dirs = sorted((project / "wandb").glob("offline-run-*-hf1*"))
    return [json.loads((d / "files" / RECORD_FILE).read_text()) for d in dirs]


def test_training_records_the_run_and_each_checkpoint_directory(project: Path) -> None:
    _, counter = train(project, max_steps=6, save_total_limit=2)
    assert counter.steps == 6
    [record] = records(project)
    by_dir: dict[str, set[str]] = {}
    for name, entry in record["checkpoints"].items():
        folder, _, file = name.rpartition("/")
        by_dir.setdefault(folder, set()).add(file)
        assert entry["size"] == os.path.getsize(project / name)
        assert entry["step"] == int(folder.rsplit("-", 1)[1])
    # save_total_limit rotated checkpoint-2 away: its records and the run's copies went too
    assert by_dir == {"out/checkpoint-4": CHECKPOINT_FILES, "out/checkpoint-6": CHECKPOINT_FILES}
    [run_dir] = (project / "wandb").glob("offline-run-*-hf1")
    copies = run_dir / "files" / "resumeguard" / "checkpoints" / "out"
    assert sorted(p.name for p in copies.iterdir()) == ["checkpoint-4", "checkpoint-6"]


def test_changed_code_blocks_before_the_run_is_touched(project: Path) -> None:
    train(project, max_steps=2)
    write(project, {"train.py": "HIDDEN = 16\n"})  # a dirty edit before the requeued job
    with pytest.raises(resumeguard.ResumeBlocked) as info:
        trainer_for(project, max_steps=4)  # on_init_end: before WandbCallback's wandb.init
    # Only the edit blocks: the checkpoint files that appeared in out/ are not code.
    assert [f.path for f in info.value.report.blocking] == ["code.files.train.py"]
    assert len(list((project / "wandb").glob("offline-run-*-hf1*"))) == 1
    assert wandb.run is None


def test_unchanged_resume_is_verified_and_trains_on(project: Path) -> None:
    train(project, max_steps=2)
    trainer, counter = train(project, max_steps=4, resume=True)
    assert counter.steps == 2 and trainer.state.global_step == 4
    first, second = records(project)
    [resume] = second["resumes"]
    assert resume["verdict"] == "ok"
    assert {n.rpartition("/")[0] for n in first["checkpoints"]} == {"out/checkpoint-2"}
    assert {n.rpartition("/")[0] for n in second["checkpoints"]} == {
        "out/checkpoint-2",
        "out/checkpoint-4",
    }


def flip_last_byte(path: Path) -> None:
    # The end of a safetensors file is tensor data: the flip loads silently without the check.
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


def test_tampered_checkpoint_is_refused_before_any_training_step(project: Path) -> None:
    train(project, max_steps=2)
    flip_last_byte(project / "out" / "checkpoint-2" / "model.safetensors")
    counter = None
    with pytest.raises(resumeguard.CheckpointError, match="does not match its record") as info:
        try:
            trainer, counter = trainer_for(project, max_steps=4)
            trainer.train(resume_from_checkpoint=True)  # refused in on_train_begin
        finally:
            wandb.finish()
    assert counter is not None and counter.steps == 0
    assert "training stops here" in str(info.value)  # said honestly: the Trainer read it first


def test_named_checkpoint_is_verified_before_the_trainer_reads_it(project: Path) -> None:
    train(project, max_steps=2)
    optimizer = project / "out" / "checkpoint-2" / "optimizer.pt"
    optimizer.write_bytes(optimizer.read_bytes()[:100])
    with pytest.raises(resumeguard.CheckpointError, match=r"optimizer\.pt is truncated"):
        # TrainingArguments(resume_from_checkpoint=...): checked in on_init_end, before train()
        trainer_for(project, max_steps=4, resume_from_checkpoint="out/checkpoint-2")
