"""A tiny guarded training job for `torchrun --nproc_per_node 2` (gloo, CPU)."""

import os
from pathlib import Path

import torch
import torch.distributed as dist

import resumeguard

REPO = Path(os.environ["REPO"])


@resumeguard.guard(repo=REPO)
def main() -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    hidden = int((REPO / "hidden.txt").read_text())
    torch.manual_seed(rank)
    model = torch.nn.Sequential(torch.nn.Linear(4, hidden), torch.nn.Linear(hidden, 1))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    resume = os.environ.get("WANDB_RESUME")
    run = None
    if rank == 0:
        run = resumeguard.init(project="p", id=os.environ["WANDB_RUN_ID"], resume=resume, repo=REPO)
    start = 0
    if resume:
        state = resumeguard.restore_checkpoint(run, "ckpt-{rank}.pt", model=model, optimizer=opt)
        start = state["step"]
    for _ in range(3):
        loss = model(torch.randn(8, 4)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": start + 3}
    resumeguard.save_checkpoint(run, state, "ckpt-{rank}.pt")
    Path(f"trained-{rank}-{os.environ['PHASE']}").write_text(str(start + 3))
    if run is not None:
        run.finish()
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
