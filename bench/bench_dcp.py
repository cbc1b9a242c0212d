"""Benchmark: a sharded checkpoint (torch.distributed.checkpoint) on 2 ranks, resumeguard.api.dcp
against DCP's own ``save``/``load`` with its filesystem writer and reader, side by side.

Each rank holds its half of about ``--gib`` GiB of float32 tensors (as FSDP shards do) and,
interleaved in one run (the order swapping every repeat):

- save: ``dcp.save`` with ``FileSystemWriter`` (fsyncs every file) vs ``resumeguard.api.dcp.save``
  (the same writer, every file digested as written, then rank 0 records the listing in a W&B
  offline run and beside the directory);
- load, warm (the files still in the page cache, straight after the save) and cold (dropped from
  it first, as after a restart): ``dcp.load`` with ``FileSystemReader`` vs
  ``resumeguard.api.dcp.load`` (every file there at its size and ``.metadata`` as recorded, the
  state dict's shapes and dtypes, then each file read in full and digested before DCP reads it).

A time is the slowest rank's, from a barrier to a barrier; the figure is the median. The
fsyncs of one save are counted on every rank (``os.fsync``/``os.fdatasync`` calls) and summed.

    python bench/bench_dcp.py               # about 1 GiB on 2 ranks
    python bench/bench_dcp.py --gib 0.25 --repeat 3 --dir /some/disk
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.distributed.checkpoint import FileSystemReader, FileSystemWriter
from torch.distributed.checkpoint import load as dcp_load
from torch.distributed.checkpoint import save as dcp_save

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_checkpoint import drop_cache, fresh_memory

try:
    import resumeguard.api.dcp
except ImportError:  # run from a checkout without installing it
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import resumeguard.api.dcp

GIB = 1 << 30
WIDTH = 2048
WORLD = 2


def shard(gib: float, rank: int) -> dict[str, torch.Tensor]:
    """This rank's half of about ``gib`` GiB: WIDTH x WIDTH float32 tensors of its own."""
    count = max(1, round(gib * GIB / WORLD / (WIDTH * WIDTH * 4)))
    generator = torch.Generator().manual_seed(rank)
    return {f"rank{rank}.t{i}": torch.rand(WIDTH, WIDTH, generator=generator) for i in range(count)}


class Syncs:
    """Counts os.fsync and os.fdatasync calls while active."""

    def __init__(self) -> None:
        self.count = 0
        self._saved: dict[str, Any] = {}

    def __enter__(self) -> Syncs:
        for name in ("fsync", "fdatasync"):
            original = getattr(os, name)
            self._saved[name] = original

            def counted(fd: int, _original: Any = original) -> None:
                self.count += 1
                _original(fd)

            setattr(os, name, counted)
        return self

    def __exit__(self, *exc: object) -> None:
        for name, original in self._saved.items():
            setattr(os, name, original)


def slowest(fn: Callable[[], Any]) -> float:
    """The slowest rank's seconds for ``fn``, from a barrier to a barrier."""
    os.sync()  # the previous operation's writeback is not this one's
    fresh_memory()
    dist.barrier()
    start = time.perf_counter()
    fn()
    dist.barrier()
    seconds = torch.tensor([time.perf_counter() - start], dtype=torch.float64)
    dist.all_reduce(seconds, op=dist.ReduceOp.MAX)
    return float(seconds.item())


def summed(value: int) -> int:
    total = torch.tensor([value], dtype=torch.int64)
    dist.all_reduce(total)
    return int(total.item())


def worker(rank: int, args: argparse.Namespace, port: int, work: Path) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    state = shard(args.gib, rank)
    run = (
        resumeguard.init(project="bench", id="dcp-bench", repo=work, config={})
        if rank == 0
        else None
    )
    times: dict[str, list[float]] = collections.defaultdict(list)
    syncs = {"dcp.save": 0, "resumeguard.api.dcp.save": 0}
    for i in range(args.repeat):
        plain, ours = work / f"plain-{i}", work / f"ours-{i}"

        def save_plain(plain: Path = plain) -> None:
            dcp_save(state, checkpoint_id=plain, storage_writer=FileSystemWriter(plain))

        def save_ours(ours: Path = ours, step: int = i) -> None:
            resumeguard.api.dcp.save(run, state, ours, step=step)

        def load_plain(plain: Path = plain) -> None:
            dcp_load(state, checkpoint_id=plain, storage_reader=FileSystemReader(plain))

        def load_ours(ours: Path = ours) -> None:
            resumeguard.api.dcp.load(run, state, ours)

        pairs = [("dcp", save_plain, load_plain, plain), ("ours", save_ours, load_ours, ours)]
        for name, save, _, _ in pairs if i % 2 == 0 else pairs[::-1]:
            with Syncs() as counted:
                times[f"save {name}"].append(slowest(save))
            syncs["dcp.save" if name == "dcp" else "resumeguard.api.dcp.save"] = summed(
                counted.count
            )
        for name, _, load, _ in pairs if i % 2 == 0 else pairs[::-1]:
            times[f"load warm {name}"].append(slowest(load))
        for name, _, load, where in pairs if i % 2 == 0 else pairs[::-1]:
            if rank == 0:
                drop_cache(*[p for p in where.iterdir() if p.is_file()])
            times[f"load cold {name}"].append(slowest(load))
        dist.barrier()
        if rank == 0:
            shutil.rmtree(plain)
            shutil.rmtree(ours)
    if rank == 0:
        size = sum(t.numel() * t.element_size() for t in state.values()) * WORLD
        print(
            f"state: {size / GIB:.3f} GiB on {WORLD} ranks; torch {torch.__version__}, "
            f"{os.cpu_count()} CPUs; writing to {work}; median of {args.repeat}"
        )
        for what in ("save", "load warm", "load cold"):
            base = statistics.median(times[f"{what} dcp"])
            mine = statistics.median(times[f"{what} ours"])
            print(
                f"{what:<10} dcp {base:7.3f} s   resumeguard.api.dcp {mine:7.3f} s   "
                f"ratio {mine / base:.2f}"
            )
        print(
            f"fsyncs per save (all ranks): dcp.save {syncs['dcp.save']}, "
            f"resumeguard.api.dcp.save {syncs['resumeguard.api.dcp.save']}"
        )
    if run is not None:
        run.finish()
    dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gib", type=float, default=1.0, help="total state size (GiB)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of each (median)")
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: tmp)")
    args = parser.parse_args(argv)
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    with tempfile.TemporaryDirectory(prefix="rg-bench-dcp-", dir=args.dir) as tmp:
        os.environ["WANDB_DIR"] = tmp
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        mp.spawn(worker, args=(args, port, Path(tmp)), nprocs=WORLD)
    return 0


if __name__ == "__main__":
    sys.exit(main())
