"""The DDP pattern of pytorch/examples' ImageNet recipe and nanoGPT, guarded, for 2 processes on
CPU (gloo): launched by torchrun (``python -m torch.distributed.run ... dist_job.py``) or, with
the argument ``spawn``, by ``mp.spawn`` (the recipe's ``--multiprocessing-distributed``).

Environment: REPO, PHASE, NPROC (spawn), INIT ("rank0" or "every": who calls
resumeguard.init), FAULT ("skip": rank 1 skips restore_checkpoint; "stop": rank 1 stops itself
with SIGSTOP before it, after writing its pid to stopped-1; "late": rank 1 calls it only once
rank 0 has given up waiting for it, which rank 0 says in gave-up-0 and then lingers). Every rank
that trains writes trained-<rank>-<PHASE> with the step it reached; a resumeguard error exits as
the guard would.
"""

import os
import signal
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import resumeguard
from resumeguard.api.entry import exit_with

REPO = Path(os.environ["REPO"])


def train(rank: int) -> None:
    hidden = int((REPO / "hidden.txt").read_text())
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, hidden), torch.nn.Linear(hidden, 1))
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    resume = os.environ.get("WANDB_RESUME")
    run = None
    if rank == 0 or os.environ.get("INIT") == "every":
        run = resumeguard.init(project="p", id=os.environ["WANDB_RUN_ID"], resume=resume, repo=REPO)
    start = 0
    if resume:
        fault = os.environ.get("FAULT", "") if rank == 1 else ""
        if fault == "stop":
            Path("stopped-1").write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGSTOP)
        if fault == "late":
            deadline = time.monotonic() + 120
            while not Path("gave-up-0").exists() and time.monotonic() < deadline:
                time.sleep(0.1)
        if fault != "skip":
            state = resumeguard.restore_checkpoint(run, "ckpt.pt", model=model, optimizer=opt)
            start = state["step"]
    for _ in range(3):
        loss = ddp(torch.randn(8, 4)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    if rank == 0:  # the recipe's `if rank % ngpus_per_node == 0: save_checkpoint(...)`
        state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": start + 3}
        resumeguard.save_checkpoint(run, state, "ckpt.pt")
    Path(f"trained-{rank}-{os.environ['PHASE']}").write_text(str(start + 3))
    if run is not None:
        run.finish()


def worker(rank: int, world: int) -> None:
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        train(rank)
    except resumeguard.ResumeGuardError as e:
        if rank == 0 and os.environ.get("FAULT") == "late":
            Path("gave-up-0").write_text(str(e))
            time.sleep(60)  # alive, with the store, while rank 1 arrives; the launcher ends it
        exit_with(e)
    dist.destroy_process_group()


if __name__ == "__main__":
    if sys.argv[1:] == ["spawn"]:
        os.environ["MASTER_ADDR"] = "127.0.0.1"
        nproc = int(os.environ.get("NPROC", "2"))
        mp.spawn(worker, args=(nproc,), nprocs=nproc)
    else:
        worker(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]))
