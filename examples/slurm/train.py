"""A small training job, guarded by resumeguard, for the Slurm and Kubernetes examples.

    python train.py            start the run named by WANDB_RUN_ID (or continue it if it exists)
    python train.py --resume   continue it from its recorded checkpoint

The job script decides which (it knows whether this is a restart) and runs ``resumeguard check``
first; ``resumeguard.init`` checks again in-process, with the optimizer and model as well.

It saves a checkpoint every ``--save-every`` steps and when it is asked to stop: Slurm and
Kubernetes send SIGTERM before they kill a preempted, requeued or evicted job. Stopping early
exits 143 (128 + SIGTERM), never 0, so that Kubernetes does not count an evicted pod as a
completed Job. Exit codes follow resumeguard's: 1 blocked, 2 bad input, 3 unverifiable.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from types import FrameType

import torch

import resumeguard

HIDDEN = 16
LR = 1e-3
CHECKPOINT = "checkpoint.pt"  # relative to the working directory: keep it out of git (.gitignore)
STOPPED = 128 + signal.SIGTERM


class StopRequest:
    """Set by SIGTERM/SIGUSR1; the loop checkpoints and stops at the next step boundary."""

    signal: int | None = None

    @classmethod
    def handle(cls, signum: int, frame: FrameType | None) -> None:
        cls.signal = signum


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resume", action="store_true", help="restore the recorded checkpoint")
    parser.add_argument("--steps", type=int, default=int(os.environ.get("TRAIN_STEPS", "20")))
    parser.add_argument("--save-every", type=int, default=10)
    args = parser.parse_args(argv)
    for signum in (signal.SIGTERM, signal.SIGUSR1):
        signal.signal(signum, StopRequest.handle)

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(4, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, 1)
    )
    opt = torch.optim.AdamW(model.parameters(), lr=LR)
    # The run id and project come from the job script's environment (WANDB_RUN_ID is pinned
    # there). "allow" starts the run if it does not exist yet; "must" insists that it does.
    run = resumeguard.init(
        project=os.environ.get("WANDB_PROJECT", "resumeguard-example"),
        id=os.environ.get("WANDB_RUN_ID"),
        resume="must" if args.resume else "allow",
        config={"lr": LR, "hidden": HIDDEN},
        optimizer=opt,
        model=model,
    )
    step = 0
    if args.resume:
        state = resumeguard.restore_checkpoint(run, CHECKPOINT, model=model, optimizer=opt)
        step = int(state["step"])
        print(f"train.py: restored {CHECKPOINT} at step {step}, digest verified", flush=True)

    def save() -> None:
        state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step}
        resumeguard.save_checkpoint(run, state, CHECKPOINT)

    torch.manual_seed(step)
    x, y = torch.randn(64, 4), torch.randn(64, 1)
    end = step + args.steps
    loss = torch.tensor(float("nan"))
    while step < end:
        if StopRequest.signal is not None:
            save()
            print(f"train.py: signal {StopRequest.signal}: saved {CHECKPOINT} at step {step}")
            run.finish(exit_code=STOPPED)  # marks the run not live, so a restart may proceed
            return STOPPED
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        run.log({"loss": loss.item()}, step=step)
        step += 1
        if step % args.save_every == 0:
            save()
    save()
    print(f"train.py: trained to step {step}, loss {loss.item():.4f}; saved {CHECKPOINT}")
    run.finish()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except resumeguard.ResumeBlocked as blocked:
        from resumeguard.verdict.report import render

        render(blocked.report, file=sys.stderr)
        sys.exit(blocked.exit_code)
    except resumeguard.ResumeGuardError as error:
        print(f"train.py: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
