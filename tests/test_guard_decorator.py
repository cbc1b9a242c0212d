"""@resumeguard.guard on a train entrypoint: check before the body, record fresh runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import wandb
from helpers import make_repo, write

import resumeguard
from resumeguard.stores.layout import CONFIG_KEY, RECORD_FILE


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    repo = make_repo(tmp_path / "proj", {"train.py": "HIDDEN = 8\n"})
    monkeypatch.chdir(repo)
    (tmp_path / "wb").mkdir()
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    return repo


def test_fresh_run_started_by_plain_wandb_init_is_recorded(project: Path) -> None:
    @resumeguard.guard(repo=project)
    def main() -> str:
        run = wandb.init(project="p", id="dec1", config={"lr": 0.1})
        run_dir = run.dir
        run.finish()
        return run_dir

    run_dir = Path(main())
    record = json.loads((run_dir / RECORD_FILE).read_text())
    assert record["fingerprint"]["config"] == {"lr": 0.1}
    assert wandb.init is not None and "init_and_record" not in wandb.init.__name__


def test_changed_code_resume_exits_1_before_the_body_runs(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    resumeguard.init(project="p", id="dec2", repo=project).finish()
    write(project, {"train.py": "HIDDEN = 16\n"})
    monkeypatch.setenv("WANDB_RUN_ID", "dec2")
    monkeypatch.setenv("WANDB_RESUME", "must")
    ran: list[bool] = []

    @resumeguard.guard(repo=project)
    def main() -> None:
        ran.append(True)

    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 1
    assert ran == [], "the body (and its GPU time) never ran"
    assert "code.files.train.py" in capsys.readouterr().err


def test_raise_on_block_raises_resume_blocked(project: Path) -> None:
    resumeguard.init(project="p", id="dec3", repo=project).finish()
    write(project, {"train.py": "HIDDEN = 16\n"})

    @resumeguard.guard(run_id="dec3", resume="must", repo=project, raise_on_block=True)
    def main() -> None:
        raise AssertionError("must not run")

    with pytest.raises(resumeguard.ResumeBlocked):
        main()


def test_allowed_resume_runs_the_body_and_keeps_the_audit_trail(project: Path) -> None:
    resumeguard.init(project="p", id="dec4", repo=project, config={"lr": 0.1}).finish()

    @resumeguard.guard(run_id="dec4", resume="must", repo=project)
    def main() -> str:
        run = wandb.init(project="p", id="dec4", resume="must")
        assert run.config[CONFIG_KEY]["resumes"] == 1
        run_dir = run.dir
        run.finish()
        return run_dir

    record = json.loads((Path(main()) / RECORD_FILE).read_text())
    assert [r["verdict"] for r in record["resumes"]] == ["ok"]
    assert record["fingerprint"]["config"] == {"lr": 0.1}


def test_unverifiable_must_resume_exits_3(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    @resumeguard.guard(run_id="never-recorded", resume="must", repo=project)
    def main() -> None:
        raise AssertionError("must not run")

    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 3
    assert "never-recorded" in capsys.readouterr().err
