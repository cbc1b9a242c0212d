"""The Trainer callback on real training: a real git repo, a tiny GPT-2 built from a config (no
download), the real offline W&B run WandbCallback starts, and the Trainer's own checkpoint
directories, resumed with ``train(resume_from_checkpoint=True)``."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")
torch = pytest.importorskip("torch")
wandb = pytest.importorskip("wandb")

from helpers import as_recorded_by_schema_1, cli, git, make_repo, write  # noqa: E402

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

LENIENT = '[tool.resumeguard]\npreset = "lenient"\n'


class StepCounter(transformers.TrainerCallback):
    """Counts the training steps this Trainer ran; stops training after ``stop_at`` steps, as
    a preemption would (the next process resumes with the same arguments)."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.steps = 0
        self.stop_at = stop_at

    def on_step_begin(self, args, state, control, **kwargs):
        self.steps += 1

    def on_step_end(self, args, state, control, **kwargs):
        if self.stop_at is not None and state.global_step >= self.stop_at:
            control.should_training_stop = True


def tiny_model(width: int = 8):
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=32,
        n_positions=16,
        n_embd=width,
        n_layer=1,
        n_head=2,
        bos_token_id=0,
        eos_token_id=0,
    )
    return transformers.GPT2LMHeadModel(config)


def dataset() -> list[dict]:
    g = torch.Generator().manual_seed(0)
    return [
        {"input_ids": ids, "labels": ids}
        for ids in torch.randint(0, 32, (8, 8), generator=g)  # 4 steps of 2 per epoch
    ]


def trainer_for(
    project: Path,
    max_steps: int = 4,
    *,
    stop_at: int | None = None,
    width: int = 8,
    guard: dict | None = None,
    trainer_class: type = transformers.Trainer,
    **args,
) -> tuple:
    counter = StepCounter(stop_at)
    args = {"per_device_train_batch_size": 2, "save_steps": 2, "logging_steps": 1, **args}
    training_args = transformers.TrainingArguments(
        output_dir="out",
        max_steps=max_steps,
        use_cpu=True,
        report_to=["wandb"],
        disable_tqdm=True,
        **args,
    )
    guard = {"raise_on_block": True, **(guard or {})}
    trainer = trainer_class(
        model=tiny_model(width),
        args=training_args,
        train_dataset=dataset(),
        callbacks=[ResumeGuardTrainerCallback(repo=project, **guard), counter],
    )
    return trainer, counter


def train(project: Path, max_steps: int = 4, resume=None, **options):
    """One training as a fresh process would run it: a new Trainer, model and W&B run."""
    try:
        trainer, counter = trainer_for(project, max_steps, **options)
        trainer.train(resume_from_checkpoint=resume)
    finally:
        wandb.finish()  # as the process exit would
    return trainer, counter


def preempted(project: Path, **options) -> None:
    """A first process that saved checkpoint-2 and was stopped there."""
    _, counter = train(project, stop_at=2, **options)
    assert counter.steps == 2


def run_dirs(project: Path) -> list[Path]:
    return sorted((project / "wandb").glob("offline-run-*-hf1*"))


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    repo = make_repo(tmp_path / "proj", FILES)
    monkeypatch.chdir(repo)
    monkeypatch.setenv("WANDB_DIR", str(repo))
    monkeypatch.setenv("WANDB_PROJECT", "p")
    # What a requeued job sets so that WandbCallback's wandb.init() resumes the run.
    monkeypatch.setenv("WANDB_RUN_ID", "hf1")
    monkeypatch.setenv("WANDB_RESUME", "allow")
    monkeypatch.setenv("RESUMEGUARD_STORAGE", "latest+upload")  # copies as run files
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
    copies = (run_dir / "files" / "resumeguard" / "checkpoints").glob("*/out/*")
    assert sorted({p.name for p in copies}) == ["checkpoint-4", "checkpoint-6"]
    # What WandbCallback gives the run's config, compared on resume, and the effective batch.
    config = record["fingerprint"]["config"]
    assert (config["learning_rate"], config["per_device_train_batch_size"]) == (5e-05, 2)
    assert (config["n_embd"], config["effective_batch_size"]) == (8, 2)


def test_changed_code_blocks_before_the_run_is_touched(project: Path) -> None:
    preempted(project)
    write(project, {"train.py": "HIDDEN = 16\n"})  # a dirty edit before the requeued job
    with pytest.raises(resumeguard.ResumeBlocked) as info:
        trainer_for(project)  # on_init_end: before WandbCallback's wandb.init
    # Only the edit blocks: the checkpoint files that appeared in out/ are not code.
    assert [f.path for f in info.value.report.blocking] == ["code.files.train.py"]
    assert len(list((project / "wandb").glob("offline-run-*-hf1*"))) == 1
    assert wandb.run is None


def test_unchanged_resume_is_verified_and_trains_on(project: Path, caplog) -> None:
    preempted(project)
    caplog.set_level(logging.INFO, logger="resumeguard")
    trainer, counter = train(project, resume=True)
    assert counter.steps == 2 and trainer.state.global_step == 4
    first, second = records(project)
    [resume] = second["resumes"]
    assert resume["verdict"] == "ok"
    assert {n.rpartition("/")[0] for n in first["checkpoints"]} == {"out/checkpoint-2"}
    assert {n.rpartition("/")[0] for n in second["checkpoints"]} == {
        "out/checkpoint-2",
        "out/checkpoint-4",
    }
    # One line says what was verified.
    [line] = [r.getMessage() for r in caplog.records if r.name == "resumeguard"]
    assert line.startswith("resumeguard: resume of run p/hf1 verified: code ")
    assert "deps python" in line and "config " in line
    assert "effective batch size 2; checkpoint out/checkpoint-2 (digest verified)" in line


def flip_last_byte(path: Path) -> None:
    # The end of a safetensors file is tensor data: the flip loads silently without the check.
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


def test_tampered_checkpoint_is_refused_before_any_training_step(project: Path) -> None:
    preempted(project)
    flip_last_byte(project / "out" / "checkpoint-2" / "model.safetensors")
    counter = None
    with pytest.raises(resumeguard.CheckpointError, match="does not match its record") as info:
        try:
            trainer, counter = trainer_for(project)
            trainer.train(resume_from_checkpoint=True)  # refused in on_train_begin
        finally:
            wandb.finish()
    assert counter is not None and counter.steps == 0
    assert "training stops here" in str(info.value)  # said honestly: the Trainer read it first


def test_named_checkpoint_is_verified_before_the_trainer_reads_it(project: Path) -> None:
    # The job's one command line names the checkpoint its requeues resume from.
    preempted(project, resume_from_checkpoint="out/checkpoint-2")
    optimizer = project / "out" / "checkpoint-2" / "optimizer.pt"
    optimizer.write_bytes(optimizer.read_bytes()[:100])
    with pytest.raises(resumeguard.CheckpointError, match=r"optimizer\.pt is truncated"):
        # TrainingArguments(resume_from_checkpoint=...): checked in on_init_end, before train()
        trainer_for(project, resume_from_checkpoint="out/checkpoint-2")


def test_changed_training_arguments_block_before_the_run_is_touched(project: Path) -> None:
    preempted(project)
    changes = [
        ({"learning_rate": 1e-3}, ["config.learning_rate"]),
        ({"optim": "sgd"}, ["config.optim"]),
        ({"bf16": True}, ["config.bf16"]),
        ({"width": 16}, ["config.n_embd"]),
        # the product changes too: blocked as its own finding, the factor only warned
        ({"gradient_accumulation_steps": 2}, ["config.effective_batch_size"]),
        ({"per_device_train_batch_size": 1}, ["config.effective_batch_size"]),
    ]
    for change, paths in changes:
        with pytest.raises(resumeguard.ResumeBlocked) as info:
            trainer_for(project, **change)
        assert [f.path for f in info.value.report.blocking] == paths, change
    assert len(run_dirs(project)) == 1 and wandb.run is None  # W&B never started
    # Run-control arguments are not divergences: a resume that trains longer, saves and logs
    # at other intervals and names its checkpoint goes ahead.
    trainer, _ = train(
        project,
        max_steps=6,
        resume=True,
        save_steps=3,
        logging_steps=2,
        resume_from_checkpoint="out/checkpoint-2",
    )
    assert trainer.state.global_step == 6


def test_batch_factors_that_keep_the_product_go_ahead_warned(project: Path, caplog) -> None:
    preempted(project)  # 2 per device x 1 process x 1 accumulation
    caplog.set_level(logging.WARNING, logger="resumeguard")
    trainer, counter = train(
        project, resume=True, per_device_train_batch_size=1, gradient_accumulation_steps=2
    )
    assert trainer.state.global_step == 4 and counter.steps == 2
    said = [r.getMessage() for r in caplog.records if r.name == "resumeguard"]
    warned = {m.split("(")[-1].rstrip(")") for m in said}
    assert warned == {"config.per_device_train_batch_size", "config.gradient_accumulation_steps"}


def test_a_resumed_run_trained_from_step_zero_is_caught(project: Path, capsys) -> None:
    preempted(project)
    counter = None
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:  # the default: the report and exit status 1
        try:
            trainer, counter = trainer_for(project, guard={"raise_on_block": False})
            trainer.train()  # no resume_from_checkpoint: the Trainer starts at step 0
        finally:
            wandb.finish()
    assert info.value.code == 1
    assert counter is not None and counter.steps == 0
    said = "".join(capsys.readouterr())  # the rendered report (W&B still wraps the streams)
    assert "blocked" in said and "run.step" in said and "Traceback" not in said


def test_a_checkpoint_that_does_not_fit_is_refused_by_resumeguard(project: Path) -> None:
    preempted(project)
    counter = None
    # lenient lets the config change through (warn): the checkpoint must still be refused,
    # with resumeguard's report, before the Trainer's own size-mismatch RuntimeError and
    # before WandbCallback starts the run.
    with pytest.raises(resumeguard.ResumeBlocked) as info:
        trainer, counter = trainer_for(project, width=16, guard={"policy": "lenient"})
        trainer.train(resume_from_checkpoint=True)
    blocking = info.value.report.blocking
    assert blocking and all(f.path.startswith("model.params.transformer.") for f in blocking)
    assert counter is not None and counter.steps == 0
    assert len(run_dirs(project)) == 1 and wandb.run is None


def test_the_cli_agrees_with_the_callback(project: Path, capsys) -> None:
    """Each scenario the CLI can see from outside gets the callback's verdict; what it cannot
    see (TrainingArguments, batch size, the step training starts at, the model) it does not
    block."""
    preempted(project)
    check = ["check", "--run-id", "hf1", "--offline", "--wandb-dir", str(project)]
    assert cli(capsys, *check, "--repo", str(project))[0] == 0
    trainer_for(project)  # and the callback lets it go ahead
    for change in ({"learning_rate": 1e-3}, {"per_device_train_batch_size": 1}):
        with pytest.raises(resumeguard.ResumeBlocked):
            trainer_for(project, **change)
        code, out, _ = cli(capsys, *check, "--repo", str(project))
        assert code == 0 and "effective batch size" in " ".join(out.split())  # said unchecked
    write(project, {"train.py": "HIDDEN = 16\n"})
    assert cli(capsys, *check, "--repo", str(project))[0] == 1
    with pytest.raises(resumeguard.ResumeBlocked):
        trainer_for(project)


def test_a_commit_that_sets_a_lenient_preset_cannot_excuse_itself(project: Path, capsys) -> None:
    """The callback judges with the policy recorded with the run, as ``resumeguard check``
    does: the repository's new preset is the finding ``policy.rules``; an explicit one loosens."""
    preempted(project)
    write(project, {"train.py": "HIDDEN = 16\n", "pyproject.toml": LENIENT})
    git(project, "add", "train.py", "pyproject.toml")
    git(project, "commit", "-qm", "wider model; quiet the guard")
    check = ["check", "--run-id", "hf1", "--offline", "--wandb-dir", str(project)]
    assert cli(capsys, *check, "--repo", str(project))[0] == 1
    with pytest.raises(resumeguard.ResumeBlocked) as info:
        trainer_for(project)
    assert {"policy.rules", "code.files.train.py"} <= {f.path for f in info.value.report.blocking}
    assert cli(capsys, *check, "--repo", str(project), "--policy", "lenient")[0] == 0
    trainer_for(project, guard={"policy": "lenient"})  # the user's own act goes ahead


def test_a_run_recorded_by_an_older_resumeguard_resumes_and_records_the_new_facts(
    project: Path, capsys
) -> None:
    """Upgrading resumeguard mid-run: the record lacks the TrainingArguments, model config and
    effective batch size the callback now collects. They are info, the resume trains on, and
    the record holds them from then on; the CLI agrees."""
    preempted(project)
    as_recorded_by_schema_1(project, "hf1")
    check = ["check", "--run-id", "hf1", "--offline", "--wandb-dir", str(project)]
    assert cli(capsys, *check, "--repo", str(project))[0] == 0
    trainer, counter = train(project, resume=True)
    assert counter.steps == 2 and trainer.state.global_step == 4
    [callback] = [
        c for c in trainer.callback_handler.callbacks if isinstance(c, ResumeGuardTrainerCallback)
    ]
    assert callback.guard.checked is not None
    report = callback.guard.checked.report
    assert report.verdict.value == "ok"
    unrecorded = {
        j.finding.path
        for j in report.findings
        if j.severity.value == "info" and "not recorded when the run started" in j.finding.message
    }
    assert {"config.effective_batch_size", "config.learning_rate", "config.n_embd"} <= unrecorded
    grown = records(project)[-1]["fingerprint"]
    assert grown["config"]["effective_batch_size"] == 2 and grown["facts"]
    with pytest.raises(resumeguard.ResumeBlocked) as blocked:
        trainer_for(project, learning_rate=1e-3)  # compared from now on
    assert [f.path for f in blocked.value.report.blocking] == ["config.learning_rate"]


def test_a_training_argument_an_older_record_holds_still_blocks_when_changed(
    project: Path,
) -> None:
    preempted(project)
    as_recorded_by_schema_1(project, "hf1", keep=("learning_rate", "per_device_train_batch_size"))
    for change, path in (
        ({"learning_rate": 1e-3}, "config.learning_rate"),
        # a batch factor: no effective batch size recorded to compare instead
        ({"per_device_train_batch_size": 1}, "config.per_device_train_batch_size"),
    ):
        with pytest.raises(resumeguard.ResumeBlocked) as blocked:
            trainer_for(project, **change)
        report = blocked.value.report
        assert [f.path for f in report.blocking] == [path]
        assert "config.effective_batch_size" in {j.finding.path for j in report.findings}
    assert len(run_dirs(project)) == 1 and wandb.run is None


class SchedulerLosingTrainer(transformers.Trainer):
    """A Trainer that restores the optimizer but not the LR scheduler, as the bug of
    transformers#34053 did: the resumed run warms up again from step 0."""

    def _load_optimizer_and_scheduler(self, checkpoint):
        if checkpoint is not None:
            state = torch.load(os.path.join(checkpoint, "optimizer.pt"), weights_only=True)
            self.optimizer.load_state_dict(state)


def test_a_scheduler_the_trainer_did_not_restore_is_reported(project: Path, caplog) -> None:
    preempted(project, warmup_steps=3)
    [record] = records(project)
    held = {n.rpartition("/")[2]: c["components"] for n, c in record["checkpoints"].items()}
    assert held["scheduler.pt"]["schedulers"] == {"scheduler.pt": 2}
    assert held["rng_state.pth"]["rng"] == {"rng_state.pth": "torch"}
    caplog.set_level(logging.INFO, logger="resumeguard")
    train(project, resume=True, warmup_steps=3, trainer_class=SchedulerLosingTrainer)
    lines = [r.getMessage() for r in caplog.records if "(state." in r.getMessage()]
    assert lines == [
        "resumeguard: the scheduler was saved at step 2, running at step 0 (state.scheduler)"
    ], lines
