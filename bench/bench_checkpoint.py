"""Benchmark: saving and restoring a checkpoint, resumeguard vs plain torch.

Builds a model + AdamW state of about ``--gib`` GiB (weights, exp_avg, exp_avg_sq, float32) and
times, in the same process and interleaved:

- save: ``torch.save`` to the path + fsync (baseline) vs ``save_checkpoint`` (temp file digested
  while written, fsync, rename, records in the run and beside the file, the default storage);
- restore: ``torch.load(weights_only=True)`` (baseline) vs ``load_checkpoint`` (digest
  verified while the same open file is loaded) and ``restore_checkpoint`` (the same, plus the
  fit check and ``load_state_dict`` into the model and optimizer), which is also set against
  what a script does without resumeguard: ``torch.load`` then both ``load_state_dict``.

Both run against a W&B offline run (``--no-run``: ``run=None``, the record beside the file only).
Before each timed operation the page cache is flushed (``os.sync``), so one operation's writeback
is not timed in the next, and freed heap memory is given back to the system (``malloc_trim``), so
each load fills memory as it does in a new process; the order of ours and the baseline's swaps
every run. Loads are timed twice: cold, with the file dropped from the page cache
first (what a job resumed after a restart or on another node reads), and warm, straight after
the save (the file still in memory, so the read costs only a copy and the digest is all CPU).
Peak extra memory is the rise of resident memory during each operation (see bench_digest.py);
the requirement is on ours minus the baseline's.

    python bench/bench_checkpoint.py             # about 1 GiB of state
    python bench/bench_checkpoint.py --gib 0.25 --repeat 3 --dir /some/disk
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_digest import PeakMemory

try:
    import resumeguard
except ImportError:  # run from a checkout without installing it
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import resumeguard

GIB = 1 << 30
WIDTH = 2048


def build(gib: float) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """A stack of Linear layers and its AdamW, stepped once: about ``gib`` GiB in all."""
    per_layer = (WIDTH * WIDTH + WIDTH) * 4 * 3  # weights + exp_avg + exp_avg_sq
    layers = max(1, round(gib * GIB / per_layer))
    model = torch.nn.Sequential(*[torch.nn.Linear(WIDTH, WIDTH) for _ in range(layers)])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    for p in model.parameters():
        p.grad = torch.full_like(p, 1e-3)
    opt.step()
    for p in model.parameters():
        p.grad = None
    return model, opt


def torch_save(state: Any, path: Path) -> None:
    with open(path, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())


def drop_cache(*paths: Path) -> None:
    """Evict the (clean, fsynced) pages of ``paths`` from the page cache: the next read comes
    from the disk, as it would in a new process after a restart."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def fresh_memory() -> None:
    """Give freed heap memory back to the system, as a new process starts: a resume loads
    into memory it has never touched, not into the heap a previous load just freed."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


def plain_restore(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer) -> Any:
    """What a script without resumeguard does to resume: load, then load_state_dict."""
    state = torch.load(path, weights_only=True)
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    return state


def timed(fn: Any) -> tuple[float, int, Any]:
    os.sync()  # the previous operation's writeback is not this one's
    fresh_memory()
    with PeakMemory() as mem:
        start = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - start
    return seconds, mem.extra, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gib", type=float, default=1.0, help="model + AdamW state size (GiB)")
    parser.add_argument("--repeat", type=int, default=10, help="timed runs of each (median)")
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: tmp)")
    parser.add_argument("--no-run", action="store_true", help="run=None instead of a W&B run")
    args = parser.parse_args(argv)

    model, opt = build(args.gib)
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": 1}
    with tempfile.TemporaryDirectory(prefix="rg-bench-", dir=args.dir) as tmp:
        work = Path(tmp)
        os.environ.setdefault("WANDB_MODE", "offline")
        os.environ.setdefault("WANDB_SILENT", "true")
        os.environ["WANDB_DIR"] = str(work)
        run = None
        if not args.no_run:
            run = resumeguard.init(project="bench", id="bench1", repo=work, config={})
        plain, ours = work / "plain.pt", work / "ours.pt"
        torch_save(state, plain)
        size = plain.stat().st_size
        print(
            f"state: {size / GIB:.3f} GiB ({len(state['model'])} tensors + AdamW); "
            f"torch {torch.__version__}, {os.cpu_count()} CPUs; writing to {work}; "
            f"run: {'W&B offline' if run is not None else 'None'}; storage: "
            f"{os.environ.get('RESUMEGUARD_STORAGE') or 'auto (default)'}"
        )
        keys = ("bs", "os", "bl", "pl", "vl", "ol", "wbl", "wpl", "wvl", "wol")
        rows: dict[str, list[tuple[float, int]]] = {k: [] for k in keys}
        loads = {
            "bl": lambda: torch.load(plain, weights_only=True),
            "pl": lambda: plain_restore(plain, model, opt),
            "vl": lambda: resumeguard.load_checkpoint(run, ours),
            "ol": lambda: resumeguard.restore_checkpoint(run, ours, model=model, optimizer=opt),
        }
        for i in range(args.repeat):  # interleaved: drift hits both alike
            saves = [
                ("bs", lambda: torch_save(state, plain)),
                ("os", lambda: resumeguard.save_checkpoint(run, state, ours)),
            ]
            # A 1 GiB write slows the one right after it (the disk is still busy with the
            # first one's freed blocks), so each goes first in half the runs.
            for key, save in saves if i % 2 == 0 else saves[::-1]:
                s, m, _ = timed(save)
                rows[key].append((s, m))
            for key, load in loads.items() if i % 2 == 0 else reversed(loads.items()):
                for cold in (True, False):
                    if cold:
                        drop_cache(plain, ours)
                    s, m, loaded = timed(load)
                    rows[key if cold else "w" + key].append((s, m))
                    del loaded
        if run is not None:
            run.finish()

    def med(key: str) -> float:
        return statistics.median(s for s, _ in rows[key])

    def peak(key: str) -> float:
        return max(m for _, m in rows[key]) / (1 << 20)

    labels = {
        "bs": "torch.save + fsync",
        "os": "resumeguard.save_checkpoint",
        "bl": "torch.load(weights_only=True), cold",
        "vl": "resumeguard.load_checkpoint (verified), cold",
        "pl": "torch.load + load_state_dict (both), cold",
        "ol": "restore_checkpoint (verified, fit, loaded), cold",
        "wbl": "torch.load(weights_only=True), warm",
        "wvl": "resumeguard.load_checkpoint (verified), warm",
        "wpl": "torch.load + load_state_dict (both), warm",
        "wol": "restore_checkpoint (verified, fit, loaded), warm",
    }
    for key, label in labels.items():
        runs = ", ".join(f"{s:.2f}" for s, _ in rows[key])
        print(
            f"{label:<48} median {med(key):6.3f} s  {size / GIB / med(key):5.2f} GiB/s  "
            f"peak extra memory {peak(key):7.1f} MiB  (runs: {runs} s)"
        )
    print(
        f"save:         {med('os') / med('bs'):.3f}x torch.save + fsync (must be <= 1.15), "
        f"extra memory beyond torch's {peak('os') - peak('bs'):+.1f} MiB (<= 64)"
    )
    for prefix, cache in (("", "cold"), ("w", "warm")):
        ol, bl, pl, vl = (prefix + k for k in ("ol", "bl", "pl", "vl"))
        print(
            f"restore {cache}: {med(ol) / med(bl):.3f}x torch.load (must be <= 1.15; it also "
            f"runs load_state_dict), {med(ol) / med(pl):.3f}x torch.load + load_state_dict, "
            f"extra memory beyond torch's {peak(ol) - peak(bl):+.1f} MiB (<= 64)"
        )
        print(
            f"load {cache}:    {med(vl) / med(bl):.3f}x torch.load, "
            f"extra memory beyond torch's {peak(vl) - peak(bl):+.1f} MiB"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
