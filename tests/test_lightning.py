"""The Lightning callback on real fits: a real git repo, a real offline W&B run started by
WandbLogger, Lightning's own ModelCheckpoint files, and a resume from ``ckpt_path``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pl = pytest.importorskip("lightning.pytorch")
torch = pytest.importorskip("torch")
wandb = pytest.importorskip("wandb")

from helpers import cli, make_repo, write  # noqa: E402
from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402

import resumeguard  # noqa: E402
from resumeguard.hashing import digest_file  # noqa: E402
from resumeguard.integrations.lightning import ResumeGuardCallback  # noqa: E402
from resumeguard.stores.layout import RECORD_FILE  # noqa: E402

FILES = {
    "train.py": "HIDDEN = 8\n",
    "requirements.txt": "torch>=2.1\n",
    ".gitignore": "*.pt\n",  # Lightning's .ckpt files are NOT ignored: they land in the repo
}


class Tiny(pl.LightningModule):
    """Two linear layers; counts the training steps this instance ran."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 1))
        self.steps_run = 0

    def training_step(self, batch, batch_idx):
        self.steps_run += 1
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-2)


def loader():
    g = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(8, 4, generator=g), torch.randn(8, 1))
    return torch.utils.data.DataLoader(data, batch_size=4)  # 2 steps per epoch


def fit(
    project: Path,
    run_id: str,
    epochs: int,
    ckpt_path: str | None = None,
    model: Tiny | None = None,
    resume: str = "allow",
    **options,
) -> Tiny:
    """One fit as a fresh process would run it: a new WandbLogger, trainer and callback."""
    model = model or Tiny()
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=pl.loggers.WandbLogger(project="p", id=run_id, resume=resume),
        callbacks=[ResumeGuardCallback(repo=project, **options), ModelCheckpoint(save_last=True)],
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
    )
    try:
        trainer.fit(model, loader(), ckpt_path=ckpt_path)
    finally:
        wandb.finish()  # Lightning leaves the run open; the next "process" starts anew
    return model


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repo as cwd, where Lightning's defaults put both W&B's runs and the checkpoints."""
    repo = make_repo(tmp_path / "proj", FILES)
    monkeypatch.chdir(repo)
    return repo


def ckpt_of(project: Path, run_id: str, name: str) -> Path:
    # ModelCheckpoint's default: <default_root_dir = cwd>/<project>/<run id>/checkpoints
    return project / "p" / run_id / "checkpoints" / name


def records(project: Path, run_id: str) -> list[dict]:
    """The record in each offline directory of the run, oldest first."""
    # WandbLogger's save_dir defaults to ".": its runs land in the repo's wandb/ folder.
    dirs = sorted((project / "wandb").glob(f"offline-run-*-{run_id}*"))
    return [json.loads((d / "files" / RECORD_FILE).read_text()) for d in dirs]


def test_fit_records_the_run_and_lightnings_checkpoint(project: Path) -> None:
    model = fit(project, "lt1", epochs=1)
    assert model.steps_run == 2
    ckpt = ckpt_of(project, "lt1", "epoch=0-step=2.ckpt")
    [record] = records(project, "lt1")
    entry = record["checkpoints"]["p/lt1/checkpoints/epoch=0-step=2.ckpt"]
    assert (entry["step"], entry["size"]) == (2, ckpt.stat().st_size)
    assert entry["digest"] == digest_file(ckpt)[0]
    assert record["fingerprint"]["code"]["commit"]
    [run_dir] = (project / "wandb").glob("offline-run-*-lt1")
    copy = run_dir / "files" / entry["file"]
    assert copy.read_bytes() == ckpt.read_bytes() and not copy.samefile(ckpt)


def test_changed_code_blocks_before_any_training_step(project: Path) -> None:
    fit(project, "lt2", epochs=1)
    write(project, {"train.py": "HIDDEN = 16\n"})  # a dirty edit between the two "processes"
    model = Tiny()
    ckpt = ckpt_of(project, "lt2", "epoch=0-step=2.ckpt")
    with pytest.raises(resumeguard.ResumeBlocked) as info:
        fit(project, "lt2", epochs=2, ckpt_path=str(ckpt), model=model)
    # Only the edit blocks: the checkpoint file that appeared in the repo is not code.
    assert [f.path for f in info.value.report.blocking] == ["code.files.train.py"]
    assert model.steps_run == 0


def test_unchanged_resume_is_verified_and_trains_on(project: Path) -> None:
    fit(project, "lt3", epochs=1)
    model = fit(project, "lt3", epochs=2, ckpt_path="last")
    assert model.steps_run == 2, "resumed at step 2: only epoch 1 was trained"
    first, second = records(project, "lt3")
    [resume] = second["resumes"]
    assert resume["verdict"] == "ok"
    old, new, last = (
        f"p/lt3/checkpoints/{n}.ckpt" for n in ("epoch=0-step=2", "epoch=1-step=4", "last")
    )
    assert set(first["checkpoints"]) == {old, last}
    # top-1 by default: Lightning removed epoch 0's file, and its record and copy went with it
    assert set(second["checkpoints"]) == {new, last}
    assert second["checkpoints"][new]["step"] == second["checkpoints"][last]["step"] == 4


def test_tampered_checkpoint_is_refused_before_lightning_loads_it(project: Path, capsys) -> None:
    fit(project, "lt4", epochs=1)
    ckpt = ckpt_of(project, "lt4", "epoch=0-step=2.ckpt")
    original = ckpt.read_bytes()
    data = bytearray(original)
    data[len(data) // 2] ^= 0x01
    ckpt.write_bytes(bytes(data))
    model = Tiny()
    weight = model.net[0].weight.detach().clone()
    with pytest.raises(resumeguard.CheckpointError, match="does not match its record") as info:
        fit(project, "lt4", epochs=2, ckpt_path=str(ckpt), model=model)
    assert model.steps_run == 0
    assert torch.equal(model.net[0].weight, weight), "nothing was loaded"
    # The advice works: the run kept the recorded bytes.
    advice = str(info.value).rsplit("resumeguard ", 1)[1].split()
    assert advice[:3] == ["restore", "--run-id", "lt4"]
    code, _, _ = cli(capsys, *advice, "--dest", str(project.parent / "restored"))
    assert code == 0
    assert (project.parent / "restored" / Path(advice[3]).name).read_bytes() == original

    ckpt.write_bytes(bytes(data[: len(data) // 3]))
    with pytest.raises(resumeguard.CheckpointError, match="truncated"):
        fit(project, "lt4", epochs=2, ckpt_path=str(ckpt))


def test_blocked_resume_can_exit_like_the_decorator(project: Path, capsys) -> None:
    fit(project, "lt5", epochs=1)
    write(project, {"train.py": "HIDDEN = 16\n"})
    model = Tiny()
    with pytest.raises(SystemExit) as info:
        fit(project, "lt5", epochs=2, ckpt_path="last", model=model, raise_on_block=False)
    assert info.value.code == resumeguard.ResumeBlocked.exit_code
    assert "train.py" in capsys.readouterr().err
    assert model.steps_run == 0


def test_must_resume_of_a_run_with_nothing_recorded_is_unverifiable(project: Path) -> None:
    model = Tiny()
    with pytest.raises(resumeguard.Unverifiable, match="lt6"):
        fit(project, "lt6", epochs=1, model=model, resume="must")
    assert model.steps_run == 0
