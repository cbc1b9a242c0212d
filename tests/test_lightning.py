"""The Lightning callback on real fits: a real git repo, a real offline W&B run started by
WandbLogger, Lightning's own ModelCheckpoint files, and a resume from ``ckpt_path``."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pl = pytest.importorskip("lightning.pytorch")
torch = pytest.importorskip("torch")
wandb = pytest.importorskip("wandb")

from helpers import as_recorded_by_schema_1, cli, git, make_repo, write  # noqa: E402
from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402

import resumeguard  # noqa: E402
from resumeguard.integrations.lightning import ResumeGuardCallback  # noqa: E402
from resumeguard.io.hashing import digest_file  # noqa: E402
from resumeguard.stores.layout import RECORD_FILE  # noqa: E402

FILES = {
    "train.py": "HIDDEN = 8\n",
    "requirements.txt": "torch>=2.1\n",
    ".gitignore": "*.pt\n",  # Lightning's .ckpt files are NOT ignored: they land in the repo
}


class Tiny(pl.LightningModule):
    """Two linear layers, their width, lr and batch size saved as hparams; counts the training
    steps this instance ran."""

    def __init__(
        self, hidden: int = 8, lr: float = 1e-2, batch_size: int | None = 4, max_epochs: int = 2
    ) -> None:
        super().__init__()
        # batch_size=None: the batch comes from the datamodule, which keeps it as its hparam
        self.save_hyperparameters(ignore=["batch_size"] if batch_size is None else None)
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(4, hidden), torch.nn.Linear(hidden, 1))
        self.steps_run = 0

    def training_step(self, batch, batch_idx):
        self.steps_run += 1
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr)

    def train_dataloader(self):
        return loader(self.hparams.batch_size)


def loader(batch_size: int = 4):
    g = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(8, 4, generator=g), torch.randn(8, 1))
    return torch.utils.data.DataLoader(data, batch_size=batch_size)  # 8 / batch_size per epoch


def fit(
    project: Path,
    run_id: str,
    epochs: int,
    ckpt_path: str | None = None,
    model: Tiny | None = None,
    resume: str = "allow",
    trainer_options: dict | None = None,
    data=None,
    callback: ResumeGuardCallback | None = None,
    **options,
) -> Tiny:
    """One fit as a fresh process would run it: a new WandbLogger, trainer and callback
    (raising rather than exiting, unless the test says otherwise)."""
    model = model or Tiny()
    options.setdefault("raise_on_block", True)
    callback = callback or ResumeGuardCallback(repo=project, **options)
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=pl.loggers.WandbLogger(project="p", id=run_id, resume=resume),
        callbacks=[callback, ModelCheckpoint(save_last=True)],
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
        **(trainer_options or {}),
    )
    try:
        trainer.fit(model, data, ckpt_path=ckpt_path)
    finally:
        wandb.finish()  # Lightning leaves the run open; the next "process" starts anew
    return model


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repo as cwd, where Lightning's defaults put both W&B's runs and the checkpoints."""
    repo = make_repo(tmp_path / "proj", FILES)
    monkeypatch.chdir(repo)
    monkeypatch.setenv("RESUMEGUARD_STORAGE", "latest+upload")  # copies as run files
    return repo


LENIENT = '[tool.resumeguard]\npreset = "lenient"\n'


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
    # The hparams, recorded at the start although Lightning logs them to W&B only later.
    config = record["fingerprint"]["config"]
    assert {k: config[k] for k in ("hidden", "lr", "batch_size")} == {
        "hidden": 8,
        "lr": 1e-2,
        "batch_size": 4,
    }
    assert config["effective_batch_size"] == 4
    assert config["trainer/precision"] == "32-true"
    assert config["trainer/accumulate_grad_batches"] == 1
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


def test_blocked_resume_exits_with_the_report_by_default(project: Path, capsys) -> None:
    fit(project, "lt5", epochs=1)
    write(project, {"train.py": "HIDDEN = 16\n"})
    model = Tiny()
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        fit(project, "lt5", epochs=2, ckpt_path="last", model=model, raise_on_block=False)
    assert info.value.code == resumeguard.ResumeBlocked.exit_code == 1
    err = capsys.readouterr().err
    assert "code.files.train.py" in err and "Traceback" not in err
    assert model.steps_run == 0


def test_must_resume_of_a_run_with_nothing_recorded_is_unverifiable(project: Path) -> None:
    model = Tiny()
    with pytest.raises(resumeguard.Unverifiable, match="lt6"):
        fit(project, "lt6", epochs=1, model=model, resume="must")
    assert model.steps_run == 0


def test_changed_hparams_block_before_the_checkpoint_is_read(project: Path) -> None:
    fit(project, "lt7", epochs=1)
    for changed, path in (({"lr": 1e-3}, "config.lr"), ({"hidden": 16}, "config.hidden")):
        model = Tiny(**changed)
        weight = model.net[0].weight.detach().clone()
        with pytest.raises(resumeguard.ResumeBlocked) as info:
            fit(project, "lt7", epochs=2, ckpt_path="last", model=model)
        assert [f.path for f in info.value.report.blocking] == [path]
        assert model.steps_run == 0 and torch.equal(model.net[0].weight, weight)
    with pytest.raises(resumeguard.ResumeBlocked) as info:
        fit(project, "lt7", epochs=2, ckpt_path="last", trainer_options={"precision": "bf16-mixed"})
    assert [f.path for f in info.value.report.blocking] == ["config.trainer/precision"]
    # A run-control hparam (how long the run lasts) is not a divergence: it goes ahead.
    model = fit(project, "lt7", epochs=3, ckpt_path="last", model=Tiny(max_epochs=3))
    assert model.steps_run == 4


def test_resume_that_goes_ahead_says_what_was_verified_in_one_line(project: Path, caplog) -> None:
    fit(project, "lt8", epochs=1)
    caplog.set_level(logging.INFO, logger="resumeguard")
    fit(project, "lt8", epochs=2, ckpt_path="last")
    [line] = [r.getMessage() for r in caplog.records if r.name == "resumeguard"]
    assert line.startswith("resumeguard: resume of run p/lt8 verified: code ")
    assert "effective batch size 4; checkpoint p/lt8/checkpoints/last.ckpt (blake3:" in line


def test_effective_batch_size_is_compared_as_its_own_finding(project: Path, caplog) -> None:
    fit(project, "lt9", epochs=1)  # 4 per step, 1 step per optimizer step
    with pytest.raises(resumeguard.ResumeBlocked) as info:
        fit(project, "lt9", epochs=2, ckpt_path="last", model=Tiny(batch_size=2))
    blocking = info.value.report.blocking
    assert [(f.path, f.recorded, f.current) for f in blocking] == [
        ("config.effective_batch_size", 4, 2)
    ]
    # The same product from other factors (2 x 2) is a legitimate change: it goes ahead, warned.
    caplog.set_level(logging.WARNING, logger="resumeguard")
    model = fit(
        project,
        "lt9",
        epochs=2,
        ckpt_path="last",
        model=Tiny(batch_size=2),
        trainer_options={"accumulate_grad_batches": 2},
    )
    assert model.steps_run == 4  # epoch 1 only: 4 batches of 2, 2 optimizer steps
    said = [r.getMessage() for r in caplog.records if r.name == "resumeguard"]
    warned = {m.split("(")[-1].rstrip(")") for m in said}
    assert {"config.batch_size", "config.trainer/accumulate_grad_batches"} <= warned


def test_the_batch_of_a_loader_passed_to_fit_counts(project: Path) -> None:
    fit(project, "lt13", epochs=1, data=loader(4), model=Tiny(batch_size=0))
    with pytest.raises(resumeguard.ResumeBlocked) as info:
        fit(project, "lt13", epochs=2, ckpt_path="last", data=loader(2), model=Tiny(batch_size=0))
    [finding] = info.value.report.blocking
    assert (finding.path, finding.recorded, finding.current) == (
        "config.effective_batch_size",
        4,
        2,
    )


class Data(pl.LightningDataModule):
    """A datamodule whose batch size is its hparam."""

    def __init__(self, batch_size: int = 4) -> None:
        super().__init__()
        self.save_hyperparameters()

    def train_dataloader(self):
        return loader(self.hparams.batch_size)


def test_the_datamodules_hparams_are_recorded_and_compared(project: Path) -> None:
    fit(project, "lt14", epochs=1, data=Data(4), model=Tiny(batch_size=None))
    [record] = records(project, "lt14")
    config = record["fingerprint"]["config"]
    assert (config["batch_size"], config["effective_batch_size"]) == (4, 4)
    with pytest.raises(resumeguard.ResumeBlocked) as info:
        fit(project, "lt14", epochs=2, ckpt_path="last", data=Data(2), model=Tiny(batch_size=None))
    assert [f.path for f in info.value.report.blocking] == ["config.effective_batch_size"]
    assert [j.finding.path for j in info.value.report.warnings] == ["config.batch_size"]


def test_the_verified_line_is_shown_without_logging_setup(tmp_path: Path) -> None:
    said = subprocess.run(
        [
            sys.executable,
            "-c",
            "from resumeguard.integrations.training import say; say('resumeguard: verified')",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert said.stderr == "resumeguard: verified\n"


def test_a_resumed_run_that_restarts_from_step_zero_is_caught(project: Path) -> None:
    fit(project, "lt10", epochs=1)
    shutil.rmtree(project / "p" / "lt10" / "checkpoints")  # ckpt_path="last" finds nothing
    model = Tiny()
    with pytest.raises(resumeguard.ResumeBlocked) as info:
        fit(project, "lt10", epochs=2, ckpt_path="last", model=model)
    [finding] = info.value.report.blocking
    assert finding.path == "run.step" and finding.current == 0
    assert "starts from step 0" in finding.message
    assert model.steps_run == 0


def test_a_checkpoint_that_does_not_fit_is_refused_by_resumeguard(project: Path) -> None:
    fit(project, "lt11", epochs=1)
    model = Tiny(hidden=16)
    # lenient lets the hparam change through (warn): the checkpoint itself must be refused,
    # with resumeguard's report, before Lightning's size-mismatch RuntimeError.
    with pytest.raises(resumeguard.ResumeBlocked) as info:
        fit(project, "lt11", epochs=2, ckpt_path="last", model=model, policy="lenient")
    paths = [f.path for f in info.value.report.blocking]
    assert paths == [
        "model.params.net.0.bias",
        "model.params.net.0.weight",
        "model.params.net.1.weight",
    ]
    assert info.value.report.blocking[1].recorded == [8, 4]
    assert model.steps_run == 0


def test_the_cli_agrees_with_the_callback(project: Path, capsys) -> None:
    """Each scenario the CLI can see from outside gets the callback's verdict; what it cannot
    see (hparams, batch size, the step the fit starts at, the model) it does not block."""
    fit(project, "lt12", epochs=1)
    check = ["check", "--run-id", "lt12", "--offline", "--wandb-dir", str(project)]
    assert cli(capsys, *check, "--repo", str(project))[0] == 0
    fit(project, "lt12", epochs=2, ckpt_path="last")  # and the callback lets it go ahead
    for model in (Tiny(lr=1e-3), Tiny(batch_size=2)):  # invisible from outside
        with pytest.raises(resumeguard.ResumeBlocked):
            fit(project, "lt12", epochs=3, ckpt_path="last", model=model)
        code, out, _ = cli(capsys, *check, "--repo", str(project))
        assert code == 0 and "effective batch size" in " ".join(out.split())  # said unchecked
    write(project, {"train.py": "HIDDEN = 16\n"})
    assert cli(capsys, *check, "--repo", str(project))[0] == 1
    with pytest.raises(resumeguard.ResumeBlocked):
        fit(project, "lt12", epochs=3, ckpt_path="last")


def test_a_commit_that_sets_a_lenient_preset_cannot_excuse_itself(project: Path, capsys) -> None:
    """The repository's own policy never judges a resume of a recorded run: a commit that sets
    ``preset = "lenient"`` and edits the code blocks under the callback exactly as in
    ``resumeguard check``; only an explicit policy loosens (and then both agree again)."""
    fit(project, "lt20", epochs=1)
    write(project, {"train.py": "HIDDEN = 16\n", "pyproject.toml": LENIENT})
    git(project, "add", "train.py", "pyproject.toml")
    git(project, "commit", "-qm", "wider model; quiet the guard")
    check = ["check", "--run-id", "lt20", "--offline", "--wandb-dir", str(project)]
    code, out, _ = cli(capsys, *check, "--repo", str(project))
    assert code == 1 and "policy.rules" in out
    model = Tiny()
    with pytest.raises(resumeguard.ResumeBlocked) as info:
        fit(project, "lt20", epochs=2, ckpt_path="last", model=model)
    blocking = {f.path for f in info.value.report.blocking}
    assert {"policy.rules", "code.files.train.py"} <= blocking, blocking
    assert model.steps_run == 0
    # The harmless look-alike: the user asks for lenient outside the tree.
    assert cli(capsys, *check, "--repo", str(project), "--policy", "lenient")[0] == 0
    model = fit(project, "lt20", epochs=2, ckpt_path="last", policy="lenient")
    assert model.steps_run == 2


def test_a_fit_that_exits_cleanly_leaves_the_run_finished(project: Path) -> None:
    """Lightning never finishes the W&B run; wandb's exit hook does. The run must read finished
    afterwards (not running, which another host would take for a live copy for 75 s)."""
    import os
    import subprocess
    import sys
    import textwrap

    from resumeguard.stores.interface import RunRef
    from resumeguard.stores.layout import STATE_FILE
    from resumeguard.stores.offline import OfflineStore

    script = textwrap.dedent(
        """
        import lightning.pytorch as pl, torch
        from lightning.pytorch.loggers import WandbLogger
        from resumeguard.integrations.lightning import ResumeGuardCallback

        class Tiny(pl.LightningModule):
            def __init__(self):
                super().__init__()
                self.net = torch.nn.Linear(4, 1)
            def training_step(self, batch, batch_idx):
                return self.net(batch[0]).pow(2).mean()
            def configure_optimizers(self):
                return torch.optim.SGD(self.parameters(), lr=0.1)
            def train_dataloader(self):
                data = torch.utils.data.TensorDataset(torch.randn(8, 4))
                return torch.utils.data.DataLoader(data, batch_size=4)

        trainer = pl.Trainer(
            max_epochs=1, accelerator="cpu", devices=1, enable_progress_bar=False,
            enable_model_summary=False, logger=WandbLogger(project="p", id="plexit1"),
            callbacks=[ResumeGuardCallback()], enable_checkpointing=False,
        )
        trainer.fit(Tiny())
        """
    )
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=project,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    stored = OfflineStore().fetch(RunRef("plexit1"))
    [directory] = stored.directories
    assert json.loads((Path(directory) / "files" / STATE_FILE).read_text())["state"] == "finished"
    assert stored.state == "finished"


def test_a_checkpoint_resume_into_a_new_run_is_checked_against_the_run_that_saved_it(
    project: Path, caplog
) -> None:
    """fit(ckpt_path=...) under a new W&B run id: the record beside the checkpoint names the
    run that saved it, and that run's record decides."""
    fit(project, "lt-origin", epochs=1)
    ckpt = ckpt_of(project, "lt-origin", "epoch=0-step=2.ckpt")
    write(project, {"train.py": "HIDDEN = 16\n"})
    model = Tiny()
    with pytest.raises(resumeguard.ResumeBlocked) as info:
        fit(project, "lt-new1", epochs=2, ckpt_path=str(ckpt), model=model)
    assert "code.files.train.py" in [f.path for f in info.value.report.blocking]
    assert "lt-origin" in str(info.value.report.run)
    assert model.steps_run == 0
    write(project, {"train.py": "HIDDEN = 8\n"})
    model = fit(project, "lt-new2", epochs=2, ckpt_path=str(ckpt))
    assert model.steps_run == 2, "the same code resumes from the checkpoint"
    # A checkpoint no guarded run saved: one line says it is not checked.
    stray = project / "stray.ckpt"
    shutil.copyfile(ckpt, stray)
    with caplog.at_level(logging.WARNING, logger="resumeguard"):
        fit(project, "lt-new3", epochs=2, ckpt_path=str(stray))
    lines = [r.getMessage() for r in caplog.records if "was not saved by a run" in r.getMessage()]
    assert len(lines) == 1, lines


class Logging(Tiny):
    """Logs its loss at every step and its mean at every epoch's end: two kinds of log call,
    each one W&B step, so W&B's step runs ahead of Lightning's global step."""

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        self.log("loss", loss, on_step=True, on_epoch=True)
        return loss


def test_the_cli_does_not_compare_lightnings_step_with_w_and_bs(project: Path, capsys) -> None:
    """A checkpoint's global step counts optimizer steps, W&B's step log calls: a run that logs
    more often than it steps is not "older than its last logged step", to the CLI as to the
    callback, even where a gap would block."""
    from helpers import cli_json

    from resumeguard.stores.interface import RunRef
    from resumeguard.stores.offline import OfflineStore

    fit(project, "lt15", epochs=2, model=Logging())
    [record] = records(project, "lt15")
    saved = max(c["step"] for c in record["checkpoints"].values())
    last = OfflineStore(project).fetch(RunRef("lt15")).last_step
    assert last is not None and saved < last, "W&B's step is ahead of the global step"
    policy = project.parent / "no-gap.toml"
    policy.write_text('block = ["run.step"]\n')
    check = ["check", "--run-id", "lt15", "--offline", "--wandb-dir", str(project)]
    code, report = cli_json(capsys, *check, "--repo", str(project), "--policy", str(policy))
    assert (code, [f["path"] for f in report["findings"]]) == (0, [])
    model = fit(project, "lt15", epochs=3, ckpt_path="last", model=Logging(), policy=str(policy))
    assert model.steps_run == 2, "and the callback lets it go ahead"


def test_a_run_recorded_by_an_older_resumeguard_resumes_and_records_the_new_facts(
    project: Path,
) -> None:
    """Upgrading resumeguard mid-run: the record lacks what the callback now collects
    (hparams, precision, accumulation, effective batch size). Those are info, not a block;
    once the resume goes ahead they are recorded, and later resumes compare them."""
    fit(project, "lt-old1", epochs=1)
    as_recorded_by_schema_1(project, "lt-old1")
    callback = ResumeGuardCallback(repo=project, raise_on_block=True)
    model = fit(project, "lt-old1", epochs=2, ckpt_path="last", callback=callback)
    assert model.steps_run == 2
    assert callback.guard.checked is not None
    report = callback.guard.checked.report
    assert report.verdict.value == "ok"
    info = {j.finding.path: j for j in report.findings}
    new = ("effective_batch_size", "trainer/precision", "trainer/accumulate_grad_batches", "lr")
    for key in new:
        judged = info[f"config.{key}"]
        assert judged.severity.value == "info"
        assert "not recorded when the run started" in judged.finding.message
    record = records(project, "lt-old1")[-1]
    assert (record["resumes"][-1]["verdict"], record["resumes"][-1]["outcome"]) == ("ok", "resumed")
    grown = record["fingerprint"]
    assert grown["config"]["effective_batch_size"] == 4 and "effective_batch_size" in grown["facts"]
    with pytest.raises(resumeguard.ResumeBlocked) as blocked:
        fit(project, "lt-old1", epochs=3, ckpt_path="last", model=Tiny(batch_size=2))
    assert [f.path for f in blocked.value.report.blocking] == ["config.effective_batch_size"]


def test_a_fact_an_older_record_holds_still_blocks_when_changed(project: Path) -> None:
    """The harmful case stays blocked: a value the old record holds and that differs now. A
    batch factor blocks too while the record lacks the effective batch size it relies on."""
    fit(project, "lt-old2", epochs=1)
    as_recorded_by_schema_1(project, "lt-old2", keep=("hidden", "batch_size"))
    for model, path in (
        (Tiny(hidden=16), "config.hidden"),
        (Tiny(batch_size=2), "config.batch_size"),
    ):
        with pytest.raises(resumeguard.ResumeBlocked) as blocked:
            fit(project, "lt-old2", epochs=2, ckpt_path="last", model=model)
        report = blocked.value.report
        assert [f.path for f in report.blocking] == [path]
        [effective] = [
            j for j in report.findings if j.finding.path == "config.effective_batch_size"
        ]
        assert effective.severity.value == "info" and effective.finding.recorded is None
        assert model.steps_run == 0


class Scheduled(Tiny):
    """With an LR scheduler that steps each epoch."""

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr)
        return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt, 1)}


class Restarted(Scheduled):
    """Drops the scheduler's state on load, as a hook meant to restart the schedule for
    fine-tuning does: Lightning then restores none, silently."""

    def on_load_checkpoint(self, checkpoint):
        checkpoint["lr_schedulers"] = []


def state_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "(state." in r.getMessage()]


def test_a_schedule_lightning_restored_gives_nothing_and_a_dropped_one_is_reported(
    project: Path, caplog
) -> None:
    fit(project, "lt20", epochs=1, model=Scheduled())
    [record] = records(project, "lt20")
    held = record["checkpoints"]["p/lt20/checkpoints/last.ckpt"]["components"]
    assert held["schedulers"] == {"lr_schedulers.0": 1} and held["optimizer"] == [
        "optimizer_states.0"
    ]
    caplog.set_level(logging.INFO, logger="resumeguard")
    fit(project, "lt20", epochs=2, ckpt_path="last", model=Scheduled())
    assert state_lines(caplog) == []
    fit(project, "lt21", epochs=1, model=Scheduled())
    fit(project, "lt21", epochs=2, ckpt_path="last", model=Restarted())
    assert state_lines(caplog) == [
        "resumeguard: the scheduler was saved at step 1, running at step 0 (state.scheduler)"
    ]
