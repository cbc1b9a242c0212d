"""A tiny DDP job started with torch.multiprocessing.spawn (2 processes, gloo, CPU)."""

import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import resumeguard

REPO = Path(os.environ["REPO"])
WORLD = 2


def worker(rank: int, port: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD
    )
    torch.manual_seed(0)
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(4, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    run = resumeguard.init(project="p", id=os.environ["RUN_ID"], repo=REPO) if rank == 0 else None
    for _ in range(2):
        loss = model(torch.randn(8, 4)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    state = {"model": model.module.state_dict(), "optimizer": opt.state_dict(), "step": 2}
    resumeguard.save_checkpoint(run, state, "spawn.pt")
    if run is not None:
        run.finish()
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    mp.spawn(worker, args=(sys.argv[1],), nprocs=WORLD, join=True)
