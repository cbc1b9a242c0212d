"""resumeguard check compares the job's world size only when the job script says it: a real
two-process torchrun run and an mp.spawn DDP run pass from a job shell, and a job told it runs
one process is reported as env.world_size."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import SCRIPTS, cli, cli_json, make_repo
from test_distributed import torchrun

from resumeguard.decide.jobshape import job_shape
from resumeguard.errors import BadInput

FILES = {"hidden.txt": "8\n", ".gitignore": "trained-*\n*.pt\n"}


def in_job_shell(monkeypatch: pytest.MonkeyPatch, repo: Path, wandb_dir: Path) -> None:
    """A job script's shell: in the repository, no torchrun variables."""
    monkeypatch.chdir(repo)
    monkeypatch.setenv("WANDB_DIR", str(wandb_dir))
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "SLURM_JOB_NUM_NODES", "SLURM_NNODES"):
        monkeypatch.delenv(name, raising=False)


def check(capsys: pytest.CaptureFixture[str], run_id: str, *extra: str) -> tuple[int, Any]:
    return cli_json(capsys, "check", "--run-id", run_id, "--offline", *extra)


def assert_shape_checked_only_when_known(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, run_id: str
) -> None:
    code, report = check(capsys, run_id)
    assert code == 0 and report["findings"] == [], report
    notes = report["unchecked"]
    assert any(n.startswith("env.world_size (recorded 2): the job's is not") for n in notes)
    code, report = check(capsys, run_id, "--world-size", "1")
    assert code == 1 and [f["path"] for f in report["findings"]] == ["env.world_size"], report
    assert (report["findings"][0]["recorded"], report["findings"][0]["current"]) == (2, 1)
    assert check(capsys, run_id, "--world-size", "2")[0] == 0
    assert check(capsys, run_id, "--nproc-per-node", "2")[0] == 0
    assert check(capsys, run_id, "--nproc-per-node", "1", "--nnodes", "2")[0] == 0
    monkeypatch.setenv("SLURM_JOB_NUM_NODES", "2")  # srun torchrun --nproc-per-node 1, 2 nodes
    assert check(capsys, run_id, "--nproc-per-node", "1")[0] == 0
    monkeypatch.delenv("SLURM_JOB_NUM_NODES")
    monkeypatch.setenv("SLURM_NTASKS", "1")  # a node count under srun torchrun: not read
    assert check(capsys, run_id)[0] == 0
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert check(capsys, run_id)[0] == 0
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert check(capsys, run_id)[0] == 1


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "wb").mkdir()
    return make_repo(tmp_path / "proj", FILES)


def test_a_torchrun_run_checked_from_a_job_shell(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, repo: Path
) -> None:
    wandb_dir = repo.parent / "wb"
    code, _, out = torchrun(repo, wandb_dir, "fresh", None)
    assert code == 0, out
    in_job_shell(monkeypatch, repo, wandb_dir)
    assert_shape_checked_only_when_known(capsys, monkeypatch, "dist1")


def test_an_mp_spawn_ddp_run_checked_from_a_job_shell(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, repo: Path
) -> None:
    wandb_dir = repo.parent / "wb"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK")},
        "REPO": str(repo),
        "RUN_ID": "spawn1",
        "WANDB_DIR": str(wandb_dir),
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "OMP_NUM_THREADS": "1",
    }
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / "spawn_train.py"), port],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    in_job_shell(monkeypatch, repo, wandb_dir)
    assert_shape_checked_only_when_known(capsys, monkeypatch, "spawn1")


@pytest.mark.parametrize(
    ("args", "environ", "expected"),
    [
        ((None, None, None), {}, None),
        ((None, None, None), {"SLURM_NTASKS": "8"}, None),
        ((4, None, None), {"WORLD_SIZE": "2"}, 4),
        ((None, 4, None), {"SLURM_JOB_NUM_NODES": "2"}, 8),
        ((None, 4, 3), {"SLURM_JOB_NUM_NODES": "2"}, 12),
        ((8, 4, 2), {}, 8),
        ((None, None, None), {"WORLD_SIZE": "3"}, 3),
    ],
)
def test_the_world_size_comes_from_the_options_then_world_size(
    args: tuple[Any, Any, Any], environ: dict[str, str], expected: int | None
) -> None:
    assert job_shape(*args, environ=environ).world_size == expected


@pytest.mark.parametrize(
    ("args", "environ"),
    [((None, None, 2), {}), ((4, 4, 2), {}), ((None, None, None), {"WORLD_SIZE": "two"})],
)
def test_contradicting_shapes_are_bad_input(
    capsys: pytest.CaptureFixture[str], args: tuple[Any, Any, Any], environ: dict[str, str]
) -> None:
    with pytest.raises(BadInput):
        job_shape(*args, environ=environ)
    code, _, err = cli(capsys, "check", "--run-id", "x", "--nnodes", "2")
    assert code == 2 and "--nnodes needs --nproc-per-node" in err
