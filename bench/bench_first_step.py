"""What the resume-completeness check costs: the first optimizer step after a restore (one step
pre-hook, which looks for the scheduler and GradScaler in use) against the same step without a
restore's hook, and the later steps (the hook is gone) against plain steps.

    python bench/bench_first_step.py [--objects 2000000] [--steps 200] [--repeat 7]

``--objects`` keeps that many live Python objects, as a training process with a data set and a
framework loaded has: the hook's search for the scheduler walks the live objects once.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

import resumeguard


def build() -> tuple[torch.nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 1))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    return model, opt, torch.optim.lr_scheduler.StepLR(opt, 10)


def train_step(model: torch.nn.Module, opt: torch.optim.Optimizer, sched: object) -> None:
    model(torch.ones(8, 64)).sum().backward()
    opt.step()
    opt.zero_grad()
    sched.step()  # type: ignore[attr-defined]


def timed_steps(path: Path | None, steps: int) -> tuple[float, float]:
    """Seconds of the first step, and the median of the later ones, after a restore (``path``)
    or after loading the same state by hand (None)."""
    model, opt, sched = build()
    if path is not None:
        state = resumeguard.restore_checkpoint(None, path, model=model, optimizer=opt)
        sched.load_state_dict(state["scheduler"])
    else:
        state = torch.load(Path(tempfile.gettempdir()) / "rg-bench-first-step.pt")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        train_step(model, opt, sched)
        times.append(time.perf_counter() - start)
    return times[0], statistics.median(times[1:])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--objects", type=int, default=2_000_000)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    ballast = [[i] for i in range(args.objects)]  # live objects, as a real process holds
    with tempfile.TemporaryDirectory() as tmp:
        model, opt, sched = build()
        for _ in range(3):
            train_step(model, opt, sched)
        state = {"model": model.state_dict(), "optimizer": opt.state_dict()}
        state["scheduler"] = sched.state_dict()
        path = Path(tmp) / "ck.pt"
        resumeguard.save_checkpoint(None, state, path)
        torch.save(state, Path(tempfile.gettempdir()) / "rg-bench-first-step.pt")
        ours_first, ours_later, base_first, base_later = [], [], [], []
        for _ in range(args.repeat):
            first, later = timed_steps(path, args.steps)
            ours_first.append(first)
            ours_later.append(later)
            first, later = timed_steps(None, args.steps)
            base_first.append(first)
            base_later.append(later)
    med = statistics.median
    print(f"live objects: {len(ballast):,}")
    print(
        f"first step after a restore: {med(ours_first) * 1e3:.1f} ms, plain "
        f"{med(base_first) * 1e3:.1f} ms (+{(med(ours_first) - med(base_first)) * 1e3:.1f} ms)"
    )
    print(
        f"later steps: {med(ours_later) * 1e6:.0f} us, plain {med(base_later) * 1e6:.0f} us "
        f"(ratio {med(ours_later) / med(base_later):.3f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
