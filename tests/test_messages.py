"""Say plainly what happened: readable exception messages, one INFO line per verified resume, and a
restore that writes the checkpoint back where it was recorded."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from helpers import cli, model_and_opt, offline_project, start, write

import resumeguard
from resumeguard.io.hashing import digest_file

FILES = {"train.py": "HIDDEN = 8\n", ".gitignore": "*.pt\n", "requirements.txt": "torch>=2.1\n"}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return offline_project(tmp_path, monkeypatch, FILES)


def train_and_save(run_id: str, repo: Path, name: str = "ckpt.pt"):
    model, opt = model_and_opt()
    run = start(run_id, repo)
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": 1}
    # The run keeps a copy of the bytes (storage "latest"): what restore writes back.
    record = resumeguard.save_checkpoint(run, state, name, storage="latest")
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
    assert "check --json" not in text, "no command lists the paths of a resume in a script"
    assert text.count("code.untracked.src/gen_") == 5
    assert len(text.splitlines()) < 40


def test_a_harmless_resume_raises_nothing(project: Path) -> None:
    start("msg2", project).finish()
    start("msg2", project, resume="must").finish()


def test_checkpoint_error_lists_what_does_not_fit(project: Path) -> None:
    train_and_save("msg3", project)
    run = start("msg3", project, resume="must")
    model, opt = model_and_opt(hidden=16)
    with pytest.raises(resumeguard.CheckpointError) as error:
        resumeguard.restore_checkpoint(run, "ckpt.pt", model=model, optimizer=opt)
    text = str(error.value)
    assert text.startswith("checkpoint ckpt.pt does not fit the current model/optimizer")
    assert "optimizer.params.0.shape" in text and "[8, 4]" in text and "[16, 4]" in text
    assert "what to do" in text
    words = " ".join(text.replace("│", " ").split())
    assert "the model changed since the checkpoint" in words
    # The same model loads.
    model, opt = model_and_opt()
    resumeguard.restore_checkpoint(run, "ckpt.pt", model=model, optimizer=opt)
    run.finish()


# --- One INFO line per verified resume -----------------------------------------------------------


def test_a_resume_that_goes_ahead_logs_one_info_line(project: Path, caplog) -> None:
    record = train_and_save("info1", project)
    with caplog.at_level(logging.INFO, logger="resumeguard"):
        run = start("info1", project, resume="must")
    lines = [r.getMessage() for r in caplog.records if r.name == "resumeguard"]
    assert len(lines) == 1
    [line] = lines
    assert "resume of run p/info1 verified" in line
    assert "code " in line and "deps python" in line and "torch" in line
    assert "checkpoint ckpt.pt step 1 " + record.digest[:27] in line
    assert "bytes not read here" in line and "digest verified" not in line
    assert [r.levelname for r in caplog.records if r.name == "resumeguard"] == ["INFO"]
    run.finish()


def test_the_cli_shows_the_line_by_default(project: Path) -> None:
    import os
    import subprocess
    import sys

    def check() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "resumeguard", "check", "--run-id", "info2"],
            cwd=project,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
            capture_output=True,
            text=True,
            check=False,
        )

    train_and_save("info2", project)
    done = check()
    assert done.returncode == 0, done.stderr
    assert "resume of run info2 verified" in done.stderr
    assert "checkpoint ckpt.pt" in done.stderr
    # A blocked resume logs no such line.
    write(project, {"train.py": "HIDDEN = 16\n"})
    done = check()
    assert done.returncode == 1 and "verified" not in done.stderr


# --- restore writes back where the checkpoint was recorded ---------------------------------------


def test_restore_writes_back_where_recorded(capsys, project: Path) -> None:
    record = train_and_save("rest1", project)
    original = (project / "ckpt.pt").read_bytes()
    (project / "ckpt.pt").unlink()
    code, out, _ = cli(capsys, "restore", "--run-id", "rest1", "ckpt.pt")
    assert code == 0 and f"to {project / 'ckpt.pt'}" in out
    assert (project / "ckpt.pt").read_bytes() == original
    assert digest_file(project / "ckpt.pt")[0] == record.digest


def test_restore_never_overwrites_an_intact_file(capsys, project: Path) -> None:
    train_and_save("rest2", project)
    before = (project / "ckpt.pt").stat()
    code, out, err = cli(capsys, "restore", "--run-id", "rest2", "ckpt.pt")
    assert code == 0 and "nothing written" in out and err == ""
    after = (project / "ckpt.pt").stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_restore_replaces_a_corrupt_file_loudly_and_keeps_it(capsys, project: Path) -> None:
    train_and_save("rest3", project)
    original = (project / "ckpt.pt").read_bytes()
    corrupt = bytearray(original)
    corrupt[len(corrupt) // 2] ^= 0x01
    (project / "ckpt.pt").unlink()  # the run keeps its own hard link to the recorded bytes
    (project / "ckpt.pt").write_bytes(bytes(corrupt))
    code, out, err = cli(capsys, "restore", "--run-id", "rest3", "ckpt.pt")
    assert code == 0 and "restored ckpt.pt" in out
    assert "WARNING" in err and "REPLACED" in err and "does not match its record" in err
    assert (project / "ckpt.pt").read_bytes() == original
    [kept] = project.glob("ckpt.pt.corrupt-*")
    assert kept.read_bytes() == bytes(corrupt) and str(kept) in err
    # --dest still writes elsewhere.
    code, out, _ = cli(capsys, "restore", "--run-id", "rest3", "ckpt.pt", "--dest", "elsewhere")
    assert code == 0 and (project / "elsewhere" / "ckpt.pt").read_bytes() == original


def test_restore_leaves_another_file_at_the_recorded_path_alone(capsys, project: Path) -> None:
    train_and_save("rest4", project)
    (project / "ckpt.pt").unlink()
    (project / "ckpt.pt").write_text("my notes, not a checkpoint\n")
    code, _, err = cli(capsys, "restore", "--run-id", "rest4", "ckpt.pt")
    assert code == 2 and "holds another file" in err
    assert (project / "ckpt.pt").read_text() == "my notes, not a checkpoint\n"
    assert not list(project.glob("ckpt.pt.corrupt-*"))


# --- said once, about the user's own file -------------------------------------------------------


def test_a_fresh_run_is_told_once_that_no_copy_is_kept_naming_the_users_file(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from resumeguard.io.atomic import TMP_SUFFIX

    run = start("once1", project)
    model, _ = model_and_opt()
    with caplog.at_level(logging.INFO, logger="resumeguard"):
        for name in ("a/checkpoint.pt", "b/checkpoint.pt", "a/checkpoint.pt"):
            resumeguard.save_checkpoint(run, {"model": model.state_dict()}, name)
    run.finish()
    said = [r.getMessage() for r in caplog.records if "no copy of" in r.getMessage()]
    assert len(said) == 1, said
    assert str(project / "a" / "checkpoint.pt") in said[0] and TMP_SUFFIX not in said[0]


def test_the_info_line_is_printed_once_when_the_script_configures_logging_later(
    tmp_path: Path,
) -> None:
    import subprocess
    import sys

    script = (
        "import logging\n"
        "from resumeguard.decide.verified import say\n"
        "say('resumeguard: first')\n"
        "logging.basicConfig(format='%(message)s')\n"
        "say('resumeguard: second')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert done.stderr.splitlines() == ["resumeguard: first", "resumeguard: second"]


def test_resume_blocked_inside_a_guarded_body_ends_like_the_decorators_own_block(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train_and_save("body1", project)
    write(project, {"train.py": "HIDDEN = 16\n"})

    @resumeguard.guard(repo=project)
    def main() -> None:
        resumeguard.restore_checkpoint(None, "ckpt.pt")  # checked against run body1: blocked

    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert "code.files.train.py" in err and "Traceback" not in err


def _two_groups(lr: float) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """Two param groups under a scheduler (which adds initial_lr to each)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 1))
    groups = [{"params": model[0].parameters()}, {"params": model[1].parameters()}]
    opt = torch.optim.AdamW(groups, lr=lr)
    torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    return model, opt


@pytest.mark.parametrize(("config_lr", "rows"), [(2e-3, 1), (3e-3, 2)])
def test_one_changed_hyperparameter_is_one_row_with_every_path_in_the_report(
    project: Path, config_lr: float, rows: int
) -> None:
    model, opt = _two_groups(1e-3)
    start("hp1", project, config={"learning_rate": 1e-3}, optimizer=opt, model=model).finish()
    model, opt = _two_groups(2e-3)
    with pytest.raises(resumeguard.ResumeBlocked) as info:
        start(
            "hp1",
            project,
            resume="must",
            config={"learning_rate": config_lr},
            optimizer=opt,
            model=model,
        )
    report = info.value.report
    assert len(report.findings) == 5, "every path is still a finding (rules, --json)"
    text = str(info.value)
    assert sum(line.startswith("│block") for line in text.splitlines()) == rows, text
    assert "the same change:" in text
