"""Benchmark: fingerprinting optimizer state, resumeguard vs serialise-and-hash.

Builds an AdamW state of about ``--gib`` GiB (exp_avg + exp_avg_sq, float32), then times, in the
same process and interleaved:

- ours: ``collect_optimizer(optimizer)``, which streams zero-copy views of the state tensors
  into blake3 (``digest_tensors``);
- baseline: ``torch.save(optimizer.state_dict(), io.BytesIO())`` and ``hashlib.sha256`` over it.

Peak extra memory is the rise of the process's peak RSS during each operation (Linux: the peak is
reset through /proc/self/clear_refs before each one; elsewhere a sampling thread estimates it).

    python bench/bench_digest.py            # about 1 GiB of state
    python bench/bench_digest.py --gib 0.25
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

try:
    from resumeguard.collect.optimizer import collect_optimizer
except ImportError:  # run from a checkout without installing it
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from resumeguard.collect.optimizer import collect_optimizer

GIB = 1 << 30
COLUMNS = 4096


def build_state(gib: float) -> tuple[torch.optim.Optimizer, int]:
    """An AdamW whose exp_avg + exp_avg_sq total about ``gib`` GiB, and the state's bytes."""
    elements = int(gib * GIB) // 8  # two float32 state tensors per parameter element
    rows_total = max(1, elements // COLUMNS)
    # Sixteen weight matrices of varied heights, like the layers of a model.
    heights = [rows_total // 16 + (1 if i < rows_total % 16 else 0) for i in range(16)]
    params = [torch.nn.Parameter(torch.empty(h, COLUMNS)) for h in heights if h]
    opt = torch.optim.AdamW(params, lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    for p in params:
        # Filled directly: a real step() would also need gradients (another copy of the params).
        opt.state[p] = {
            "step": torch.tensor(1.0),
            "exp_avg": torch.randn(p.shape, generator=gen),
            "exp_avg_sq": torch.rand(p.shape, generator=gen),
        }
    nbytes = sum(
        t.numel() * t.element_size()
        for s in opt.state.values()
        for t in s.values()
        if isinstance(t, torch.Tensor)
    )
    return opt, nbytes


def _rss_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class PeakMemory:
    """Rise of the process's resident memory above its level at entry, in bytes."""

    def __enter__(self) -> PeakMemory:
        self.start = _rss_kib("VmRSS") or 0
        self.exact = _reset_peak()
        self.sampled = self.start
        self._stop = threading.Event()
        if not self.exact:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.sampled = max(self.sampled, _rss_kib("VmRSS") or 0)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self.exact:
            self.peak = _rss_kib("VmHWM") or self.start
        else:
            self._thread.join()
            self.peak = self.sampled
        self.extra = max(0, self.peak - self.start) * 1024


def ours(opt: torch.optim.Optimizer) -> str:
    return collect_optimizer(opt).state_digest


SPLITS: list[tuple[float, float]] = []
"""The baseline's two halves per run (torch.save, sha256), to show where its time goes."""


def baseline(opt: torch.optim.Optimizer) -> str:
    buf = io.BytesIO()
    start = time.perf_counter()
    torch.save(opt.state_dict(), buf)
    saved = time.perf_counter()
    digest = "sha256:" + hashlib.sha256(buf.getbuffer()).hexdigest()
    SPLITS.append((saved - start, time.perf_counter() - saved))
    return digest


def measure(
    fn: Callable[[torch.optim.Optimizer], str], opt: torch.optim.Optimizer
) -> dict[str, Any]:
    with PeakMemory() as mem:
        start = time.perf_counter()
        digest = fn(opt)
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "extra": mem.extra, "digest": digest}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gib", type=float, default=1.0, help="optimizer state size (GiB)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each (median)")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    opt, nbytes = build_state(args.gib)
    size = nbytes / GIB
    print(
        f"AdamW state: {size:.3f} GiB in {len(opt.state)} params "
        f"(built in {time.perf_counter() - t0:.1f} s); torch {torch.__version__}, "
        f"{os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads"
    )

    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "baseline": []}
    for _ in range(args.repeat):
        # Interleaved, so drift (page cache, thermal) hits both alike.
        runs["ours"].append(measure(ours, opt))
        runs["baseline"].append(measure(baseline, opt))
    assert len({r["digest"] for r in runs["ours"]}) == 1, "digest not stable across runs"

    labels = {
        "ours": "resumeguard collect_optimizer (blake3, zero-copy)",
        "baseline": "torch.save to BytesIO + sha256",
    }
    medians = {}
    for name, results in runs.items():
        med = statistics.median(r["seconds"] for r in results)
        medians[name] = med
        extra = max(r["extra"] for r in results) / (1 << 20)
        times = ", ".join(f"{r['seconds']:.3f}" for r in results)
        print(
            f"{labels[name]:<52} median {med:7.3f} s  {size / med:6.2f} GiB/s  "
            f"peak extra memory {extra:7.1f} MiB  (runs: {times} s)"
        )
    save_s = statistics.median(s for s, _ in SPLITS)
    sha_s = statistics.median(h for _, h in SPLITS)
    print(f"  baseline split (medians): torch.save {save_s:.3f} s, sha256 {sha_s:.3f} s")
    print(f"speed-up: {medians['baseline'] / medians['ours']:.1f}x")
    print(f"digest: {runs['ours'][0]['digest']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
