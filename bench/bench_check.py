"""``resumeguard check`` against ``python -c "import wandb"``, side by side in one run.

A real offline W&B run is recorded in a temporary git repository (with a checkpoint), then each
command runs ``--repeat`` times, interleaved, each in a fresh interpreter; the medians and their
ratio are printed. The check reads everything a job script's pre-resume check reads: git, the
requirement file, the installed distributions, devices, the run's record and its transaction
log, and every byte of the recorded checkpoint file (``--quick``: its size and time).

    python bench/bench_check.py [--repeat 9]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

RECORD = """
import torch, resumeguard
run = resumeguard.init(project="bench", id="bench1", config={"lr": 1e-3})
model = torch.nn.Linear(64, 64)
opt = torch.optim.AdamW(model.parameters())
for step in range(10):
    run.log({"loss": 1.0}, step=step)
state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": 9}
resumeguard.save_checkpoint(run, state, "checkpoint.pt")
run.finish()
"""


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rg-bench-") as tmp:
        repo = Path(tmp) / "proj"
        repo.mkdir()
        (repo / "train.py").write_text("HIDDEN = 64\n")
        (repo / "requirements.txt").write_text("torch>=2.1\nwandb>=0.16\n")
        (repo / ".gitignore").write_text("*.pt\nwandb/\n")
        env = {
            **os.environ,
            "WANDB_MODE": "offline",
            "WANDB_SILENT": "true",
            "WANDB_DIR": str(repo),
            "PYTHONPATH": str(ROOT),
            "GIT_AUTHOR_NAME": "bench",
            "GIT_AUTHOR_EMAIL": "bench@example.com",
            "GIT_COMMITTER_NAME": "bench",
            "GIT_COMMITTER_EMAIL": "bench@example.com",
        }
        git(repo, "init", "-q")
        git(repo, "add", "-A")
        subprocess.run(
            ["git", "commit", "-qm", "bench"], cwd=repo, env=env, check=True, capture_output=True
        )
        subprocess.run([sys.executable, "-c", RECORD], cwd=repo, env=env, check=True)
        check = [sys.executable, "-m", "resumeguard", "check", "--run-id", "bench1"]
        quick = [*check, "--quick"]
        baseline = [sys.executable, "-c", "import wandb"]
        timed(check, repo, env)  # warm the file cache for all three
        timed(baseline, repo, env)
        checks: list[float] = []
        quicks: list[float] = []
        imports: list[float] = []
        for _ in range(args.repeat):
            checks.append(timed(check, repo, env))
            quicks.append(timed(quick, repo, env))
            imports.append(timed(baseline, repo, env))
    check_s, quick_s = statistics.median(checks), statistics.median(quicks)
    import_s = statistics.median(imports)
    print(f"resumeguard check (offline run, every checkpoint byte): {check_s:.3f} s (median)")
    print(f"resumeguard check --quick (sizes and times):            {quick_s:.3f} s (median)")
    print(f'python -c "import wandb" (baseline):                     {import_s:.3f} s (median)')
    print(f"ratio check / import wandb: {check_s / import_s:.2f}")
    print(f"ratio check --quick / import wandb: {quick_s / import_s:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
