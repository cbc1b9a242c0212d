"""The online flow through the real wandb client against the W&B-protocol test server: record at
start, check before a resume, checkpoints kept in the run and verified when fetched back."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import torch
import wandb
from helpers import (
    assert_older_checkpoint_refused,
    assert_tampered_copy_not_loaded,
    cli,
    cli_json,
    make_repo,
    model_and_opt,
    start,
    write,
)
from wandb_server import ENTITY, WandbServer

import resumeguard
from resumeguard.stores.layout import CONFIG_KEY, RECORD_FILE
from resumeguard.verdict.findings import Severity
from resumeguard.verdict.policy import Rule, preset

FILES = {"train.py": "HIDDEN = 8\n", "requirements.txt": "torch>=2.1\n", ".gitignore": "*.pt\n"}


@pytest.fixture
def project(online: WandbServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    repo = make_repo(tmp_path / "proj", FILES)
    monkeypatch.chdir(repo)
    return repo


def new_id(prefix: str) -> str:
    """A run id no other test of the session uses (the server is shared)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def path_of(run_id: str) -> str:
    return f"{ENTITY}/p/{run_id}"


def check(capsys, run_id: str, repo: Path) -> tuple[int, dict]:
    return cli_json(capsys, "check", "--run-id", path_of(run_id), "--repo", str(repo))


def test_fresh_init_records_on_the_server(online: WandbServer, project: Path) -> None:
    run_id = new_id("fresh")
    run = start(run_id, project, config={"lr": 1e-3, "nested": {"a": 1}})
    run.finish()
    stored = online.store.get(path_of(run_id))
    compact = stored.user_config[CONFIG_KEY]
    assert compact["record_digest"].startswith("blake3:")
    assert {k: v for k, v in stored.user_config.items() if k != CONFIG_KEY} == {
        "lr": 1e-3,
        "nested": {"a": 1},
    }
    record = json.loads(stored.files[RECORD_FILE].data)
    assert record["fingerprint"]["config"] == {"lr": 1e-3, "nested": {"a": 1}}


def test_check_passes_then_blocks_on_a_change(capsys, online: WandbServer, project: Path) -> None:
    run_id = new_id("chk")
    start(run_id, project).finish()
    online.heal()
    code, report = check(capsys, run_id, project)
    assert (code, report["verdict"], report["findings"]) == (0, "ok", []), report
    assert online.count("Run") == 1, "one run fetch per check"
    write(project, {"train.py": "HIDDEN = 16\n"})
    code, report = check(capsys, run_id, project)
    assert code == 1
    assert [f["path"] for f in report["findings"]] == ["code.files.train.py"]


@pytest.mark.parametrize("mode", ["must", "allow"])
def test_resume_goes_ahead_and_is_audited(
    capsys, online: WandbServer, project: Path, mode: str
) -> None:
    run_id = new_id(f"res-{mode}")
    start(run_id, project).finish()
    run = start(run_id, project, resume=mode)
    assert run.resumed
    run.finish()
    code, shown = cli_json(capsys, "show", "--run-id", path_of(run_id))
    assert code == 0
    [entry] = shown["resumes"]
    assert entry["verdict"] == "ok"


@pytest.mark.parametrize("mode", ["must", "allow"])
def test_blocked_resume_leaves_the_server_run_untouched(
    online: WandbServer, project: Path, mode: str
) -> None:
    run_id = new_id(f"blk-{mode}")
    start(run_id, project).finish()
    before = online.store.get(path_of(run_id))
    snapshot = (dict(before.config), dict(before.summary), list(before.history), dict(before.files))
    online.heal()
    write(project, {"train.py": "HIDDEN = 16\n"})
    with pytest.raises(resumeguard.ResumeBlocked) as info:
        start(run_id, project, resume=mode)
    assert [f.path for f in info.value.report.blocking] == ["code.files.train.py"]
    assert wandb.run is None
    after = online.store.get(path_of(run_id))
    assert (after.config, after.summary, after.history, after.files) == snapshot
    writes = {"UpsertBucket", "file_stream", "CreateRunFiles", "upload"}
    assert not writes & set(online.operations()), online.operations()


def test_allow_on_a_missing_run_starts_fresh_and_must_is_unverifiable(
    online: WandbServer, project: Path
) -> None:
    run_id = new_id("new")
    run = start(run_id, project, resume="allow")
    assert not run.resumed
    run.finish()
    assert CONFIG_KEY in online.store.get(path_of(run_id)).user_config
    with pytest.raises(resumeguard.Unverifiable):
        start(new_id("none"), project, resume="must")


UPLOAD = "latest+upload"
"""Keep a copy of the latest save of each checkpoint in the run's files: uploaded to W&B."""


def save(run, model, opt, step: int, name: str = "checkpoint.pt", storage: str | None = UPLOAD):
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step}
    return resumeguard.save_checkpoint(run, state, name, storage=storage)


def train_and_save(run, steps: int = 3, storage: str | None = UPLOAD):
    """Log ``steps`` steps (0..steps-1) and save at the last logged one, as a training loop does."""
    model, opt = model_and_opt()
    for step in range(steps):
        loss = model(torch.randn(8, 4)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        run.log({"loss": loss.item()}, step=step)
    return save(run, model, opt, steps - 1, storage=storage), model, opt


def test_checkpoint_is_uploaded_and_restored_verified(online: WandbServer, project: Path) -> None:
    run_id = new_id("ckpt")
    run = start(run_id, project)
    record, model, _ = train_and_save(run)
    run.finish()
    stored = online.store.get(path_of(run_id))
    assert stored.files[record.file].data == (project / "checkpoint.pt").read_bytes()

    (project / "checkpoint.pt").unlink()  # only the run's copy is left: it is downloaded
    resumed = start(run_id, project, resume="must")
    fresh_model, fresh_opt = model_and_opt()
    state = resumeguard.restore_checkpoint(
        resumed, "checkpoint.pt", model=fresh_model, optimizer=fresh_opt
    )
    assert state["step"] == 2
    assert torch.equal(fresh_model[0].weight, model[0].weight)
    resumed.finish()


def test_without_upload_only_the_record_reaches_the_server(
    capsys, online: WandbServer, project: Path
) -> None:
    run_id = new_id("noup")
    run = start(run_id, project)
    online.heal()
    record, model, _ = train_and_save(run, storage=None)  # the default: nothing uploaded
    run.finish()
    assert not record.file or record.local, record
    stored = online.store.get(path_of(run_id))
    data = (project / "checkpoint.pt").read_bytes()
    size = len(data)
    assert all(f.data != data for f in stored.files.values()), sorted(stored.files)
    assert not any("checkpoint" in r.path for r in online.requests if r.operation == "upload")
    entry = json.loads(stored.files[RECORD_FILE].data)["checkpoints"]["checkpoint.pt"]
    assert (entry["size"], entry["step"]) == (size, 2)
    # The checkpoint file itself is what gets verified on resume.
    code, _ = check(capsys, run_id, project)
    assert code == 0
    resumed = start(run_id, project, resume="must")
    fresh_model, fresh_opt = model_and_opt()
    state = resumeguard.restore_checkpoint(
        resumed, "checkpoint.pt", model=fresh_model, optimizer=fresh_opt
    )
    assert state["step"] == 2 and torch.equal(fresh_model[0].weight, model[0].weight)
    resumed.finish()


def test_cli_restore_downloads_a_verified_copy(capsys, online: WandbServer, project: Path) -> None:
    run_id = new_id("clirest")
    run = start(run_id, project)
    train_and_save(run)
    run.finish()
    online.heal()
    code, _ = check(capsys, run_id, project)
    assert (code, online.count("Run")) == (0, 1), "one run read, also to fetch checkpoints"
    dest = project / "restored"
    code, out, err = cli(
        capsys, "restore", "--run-id", path_of(run_id), "checkpoint.pt", "--dest", str(dest)
    )
    assert code == 0 and "digest verified" in out, err
    assert (dest / "checkpoint.pt").read_bytes() == (project / "checkpoint.pt").read_bytes()
    assert online.count("download") >= 1


def test_a_copy_altered_on_the_server_is_refused(
    capsys, online: WandbServer, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = new_id("alter")
    run = start(run_id, project)
    record, _, _ = train_and_save(run)
    run.finish()
    data = bytearray(online.store.get(path_of(run_id)).files[record.file].data)
    data[len(data) // 2] ^= 0x01
    online.put_file(path_of(run_id), record.file, bytes(data))
    # Nor are the user's own file and the run's files W&B left on this machine.
    for local in [Path(record.source), *Path(run.dir).parent.parent.rglob(record.file)]:
        local.write_bytes(bytes(data))
    dest = project / "restored"
    code, _, err = cli(
        capsys, "restore", "--run-id", path_of(run_id), "checkpoint.pt", "--dest", str(dest)
    )
    assert code == 1 and "does not match its record" in err
    assert not (dest / "checkpoint.pt").exists()
    # Another machine: no local copy of the run's files, nor the user's own file.
    (project / "checkpoint.pt").unlink()
    monkeypatch.setenv("WANDB_DIR", str(project.parent / "elsewhere"))
    (project.parent / "elsewhere").mkdir()
    wandb.teardown()  # wandb reads WANDB_DIR once per process
    assert_tampered_copy_not_loaded(start(run_id, project, resume="must"))


def test_resume_from_the_checkpoint_at_the_last_logged_step(
    online: WandbServer, project: Path, caplog
) -> None:
    run_id = new_id("laststep")
    run = start(run_id, project)
    train_and_save(run, steps=3)  # logs steps 0, 1, 2 and saves at step 2
    run.finish()
    no_gap = preset("strict").with_rules([Rule("run.step", Severity.BLOCK, "test")])
    resumed = start(run_id, project, resume="must", policy=no_gap)
    model, opt = model_and_opt()
    with caplog.at_level("WARNING", logger="resumeguard"):
        state = resumeguard.restore_checkpoint(resumed, "checkpoint.pt", model=model, optimizer=opt)
    assert not any("run.step" in r.getMessage() for r in caplog.records)
    assert state["step"] == 2
    resumed.log({"loss": 0.0}, step=3)
    resumed.finish()
    steps = [row["_step"] for row in online.store.get(path_of(run_id)).history_rows()]
    assert steps == [0, 1, 2, 3]


def test_a_checkpoint_older_than_the_last_logged_step_is_caught(
    online: WandbServer, project: Path, caplog
) -> None:
    run_id = new_id("older")
    run = start(run_id, project)
    _, model, opt = train_and_save(run, steps=3)  # checkpoint.pt at step 2
    for step in range(3, 6):
        run.log({"loss": 1.0}, step=step)
    save(run, model, opt, 5, "late.pt")
    run.finish()
    no_gap = preset("strict").with_rules([Rule("run.step", Severity.BLOCK, "test")])
    assert_older_checkpoint_refused(start(run_id, project, resume="must", policy=no_gap), 5)
    resumed = start(run_id, project, resume="must")  # strict warns about the gap
    with caplog.at_level("WARNING", logger="resumeguard"):
        assert resumeguard.restore_checkpoint(resumed, "checkpoint.pt")["step"] == 2
    assert any("W&B drops every log call" in r.getMessage() for r in caplog.records)
    resumed.finish()


def test_decorator_records_a_plain_wandb_init_and_checks_a_resume(
    capsys, online: WandbServer, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = new_id("dec")

    @resumeguard.guard(repo=project)
    def first() -> None:
        wandb.init(project="p", id=run_id, config={"lr": 0.1}).finish()

    first()
    stored = online.store.get(path_of(run_id))
    assert CONFIG_KEY in stored.user_config and RECORD_FILE in stored.files

    monkeypatch.setenv("WANDB_RUN_ID", run_id)
    monkeypatch.setenv("WANDB_RESUME", "must")
    monkeypatch.setenv("WANDB_PROJECT", "p")
    ran: list[bool] = []

    @resumeguard.guard(repo=project)
    def again() -> None:
        ran.append(True)
        wandb.init(project="p", id=run_id, resume="must").finish()

    again()
    assert ran == [True]
    assert [r["verdict"] for r in json.loads(stored.files[RECORD_FILE].data)["resumes"]] == ["ok"]

    write(project, {"train.py": "HIDDEN = 16\n"})
    online.heal()
    with pytest.raises(SystemExit) as exit_info:
        again()
    assert exit_info.value.code == 1 and ran == [True], "the body never ran"
    assert "code.files.train.py" in capsys.readouterr().err
    assert not {"UpsertBucket", "file_stream", "upload"} & set(online.operations())
