"""torchrun --nproc_per_node 2 with gloo: rank 0 checks, every rank stops or trains together."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from helpers import commit_all, make_repo, write

SCRIPT = Path(__file__).resolve().parent / "scripts" / "dist_train.py"
FAILING = SCRIPT.with_name("dist_fail.py")
TIMEOUT = 180


def torchrun(
    repo: Path, wandb_dir: Path, phase: str, resume: str | None, script: Path = SCRIPT
) -> tuple[int, float, str]:
    env = {
        **os.environ,
        "REPO": str(repo),
        "PHASE": phase,
        "WANDB_DIR": str(wandb_dir),
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_RUN_ID": "dist1",
        "OMP_NUM_THREADS": "1",
    }
    env.pop("WANDB_RESUME", None)
    if resume:
        env["WANDB_RESUME"] = resume
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(script),
    ]
    started = time.monotonic()
    done = subprocess.run(
        command, cwd=repo, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    return done.returncode, time.monotonic() - started, done.stdout + done.stderr


def test_block_ends_every_rank_and_an_allowed_resume_trains_on(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "proj", {"hidden.txt": "8\n", ".gitignore": "trained-*\n*.pt\n"})
    wandb_dir = tmp_path / "wb"
    wandb_dir.mkdir()

    code, _, out = torchrun(repo, wandb_dir, "fresh", None)
    assert code == 0, out
    assert (repo / "trained-0-fresh").exists() and (repo / "trained-1-fresh").exists()
    record = json.loads(
        next(wandb_dir.glob("wandb/offline-run-*-dist1/files/resumeguard.json")).read_text()
    )
    shards = record["checkpoints"]["ckpt-{rank}.pt"]["shards"]
    assert [s["rank"] for s in shards] == [0, 1]
    assert shards[0]["digest"] != shards[1]["digest"]
    restored = tmp_path / "restored"
    for rank in (0, 1):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "resumeguard",
                "restore",
                "--run-id",
                "dist1",
                "--offline",
                "--wandb-dir",
                str(wandb_dir),
                "ckpt-{rank}.pt",
                "--rank",
                str(rank),
                "--dest",
                str(restored / str(rank)),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        restored_bytes = (restored / str(rank) / f"ckpt-{rank}.pt").read_bytes()
        assert restored_bytes == (repo / f"ckpt-{rank}.pt").read_bytes()

    write(repo, {"hidden.txt": "16\n"})
    commit_all(repo, "wider")
    code, seconds, out = torchrun(repo, wandb_dir, "blocked", "must")
    assert code != 0, out
    assert "code.files.hidden.txt" in out
    assert not list(repo.glob("trained-*-blocked")), "no rank trained"
    assert seconds < 45, f"both ranks ended in {seconds:.0f} s"

    write(repo, {"hidden.txt": "8\n"})
    commit_all(repo, "back")
    code, _, out = torchrun(repo, wandb_dir, "resumed", "must")
    assert code == 0, out
    assert (repo / "trained-0-resumed").read_text() == "6"
    assert (repo / "trained-1-resumed").read_text() == "6"


def test_any_failure_of_rank_0_while_deciding_reaches_every_rank(tmp_path: Path) -> None:
    """Not only resumeguard's own errors: a TypeError on rank 0 must not leave rank 1 waiting
    for a verdict until the store's timeout (600 s)."""
    repo = make_repo(tmp_path / "proj", {"hidden.txt": "8\n", ".gitignore": "trained-*\n"})
    wandb_dir = tmp_path / "wb"
    wandb_dir.mkdir()
    code, seconds, out = torchrun(repo, wandb_dir, "fail", None, script=FAILING)
    assert code != 0, out
    assert "TypeError" in out, "rank 0 shows its own error"
    assert "rank 0 failed while deciding" in out, "rank 1 says why it stops"
    assert not list(repo.glob("trained-*")), "no rank ran the body"
    assert seconds < 45, f"both ranks ended in {seconds:.0f} s"
