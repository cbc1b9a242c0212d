"""``resumeguard demo``: a guided end-to-end run in a temporary folder, offline, no account."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

RUN_ID = "demo-run-1"

TRAIN = '''\
"""A tiny training job guarded by resumeguard."""
import sys

import torch

import resumeguard

HIDDEN = 16


def main() -> None:
    resume = "--resume" in sys.argv
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(4, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, 1)
    )
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    run = resumeguard.init(
        project="resumeguard-demo",
        id="{run_id}",
        resume="must" if resume else "never",
        config={{"lr": 1e-3, "hidden": HIDDEN}},
    )
    start = 0
    if resume:
        state = resumeguard.restore_checkpoint(run, "checkpoint.pt", model=model, optimizer=opt)
        start = state["step"]
        print(f"  restored checkpoint.pt at step {{start}}, digest verified")
    x, y = torch.randn(64, 4), torch.randn(64, 1)
    for step in range(start, start + 20):
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        run.log({{"loss": loss.item()}}, step=step)
    resumeguard.save_checkpoint(run, {{"model": model.state_dict(), "optimizer": opt.state_dict(),
                                      "step": start + 20}}, "checkpoint.pt")
    print(f"  trained to step {{start + 20}}, loss {{loss.item():.4f}}; saved checkpoint.pt")
    run.finish()


if __name__ == "__main__":
    try:
        main()
    except resumeguard.ResumeBlocked as blocked:
        from resumeguard.verdict.report import render

        render(blocked.report, file=sys.stderr)
        sys.exit(1)
'''


def _say(text: str) -> None:
    sys.stdout.write(f"\n\033[1m== {text}\033[0m\n")
    sys.stdout.flush()


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> int:
    shown = " ".join("resumeguard" if a == "-m resumeguard" else a for a in args)
    sys.stdout.write(f"$ {shown}\n")
    sys.stdout.flush()
    command = [sys.executable, *args] if args[0].endswith(".py") else args
    if args[0] == "resumeguard":
        command = [sys.executable, "-m", "resumeguard", *args[1:]]
    return subprocess.run(command, cwd=cwd, env=env, check=False).returncode


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def run_demo(*, keep: bool = False) -> int:
    """Walk through record, check, a blocked resume and an allowed one; 0 when all went as shown."""
    if shutil.which("git") is None:
        sys.stderr.write("resumeguard demo: git is not installed; install git and run it again\n")
        return 2
    folder = Path(tempfile.mkdtemp(prefix="resumeguard-demo-"))
    env = {
        **os.environ,
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_DIR": str(folder),
        "WANDB_DISABLE_GIT": "true",
        "GIT_AUTHOR_NAME": "demo",
        "GIT_AUTHOR_EMAIL": "demo@example.com",
        "GIT_COMMITTER_NAME": "demo",
        "GIT_COMMITTER_EMAIL": "demo@example.com",
        "PYTHONWARNINGS": "ignore",
    }
    env.pop("WANDB_RUN_ID", None)
    env.pop("WANDB_RESUME", None)
    steps: list[tuple[str, int, int]] = []
    try:
        _say(f"1. A project in {folder}: train.py in a git repository, W&B offline")
        (folder / "train.py").write_text(TRAIN.format(run_id=RUN_ID))
        (folder / "requirements.txt").write_text("torch>=2.1\n")
        (folder / ".gitignore").write_text("checkpoint.pt\n__pycache__/\n")
        for args in (("init", "-q"), ("add", "."), ("commit", "-qm", "first experiment")):
            _git(folder, *args)
        _say("2. Train with resumeguard.init: the fingerprint is recorded in the run")
        steps.append(("train", _run(["train.py"], folder, env), 0))
        _say("3. Preempted. Before resuming, check: nothing changed, so it is safe")
        steps.append(("check", _run(["resumeguard", "check", "--run-id", RUN_ID], folder, env), 0))
        _say("4. Meanwhile someone widens the hidden layer and commits it")
        train = folder / "train.py"
        train.write_text(train.read_text().replace("HIDDEN = 16", "HIDDEN = 32"))
        _git(folder, "commit", "-qam", "wider hidden layer")
        steps.append(("check", _run(["resumeguard", "check", "--run-id", RUN_ID], folder, env), 1))
        _say("5. The resume itself is blocked before wandb.init: the run is left untouched")
        steps.append(("resume", _run(["train.py", "--resume"], folder, env), 1))
        _say("6. Go back to the recorded code and resume: allowed, checkpoint verified")
        _git(folder, "revert", "--no-edit", "HEAD")
        steps.append(("check", _run(["resumeguard", "check", "--run-id", RUN_ID], folder, env), 0))
        steps.append(("resume", _run(["train.py", "--resume"], folder, env), 0))
        _say("7. What the run holds now: checkpoints and the audit trail of resumes")
        steps.append(("show", _run(["resumeguard", "show", "--run-id", RUN_ID], folder, env), 0))
    finally:
        if keep:
            sys.stdout.write(f"\nkept {folder}\n")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    wrong = [(what, got, want) for what, got, want in steps if got != want]
    if wrong:
        for what, got, want in wrong:
            sys.stderr.write(f"resumeguard demo: step {what} exited {got}, expected {want}\n")
        return 4
    sys.stdout.write(
        textwrap.dedent("""
        Done: the changed-code resume was blocked (exit 1) before any training ran, and the
        resume on the recorded code went ahead with a verified checkpoint.
        """)
    )
    return 0
