"""A DDP script for torchrun (gloo, CPU): rank 0 saves, every rank loads on --resume. It knows
nothing of resumeguard."""

import os
import sys

import torch
import torch.distributed as dist

dist.init_process_group("gloo")
rank = dist.get_rank()
width = int(os.environ.get("WIDTH", "8"))
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(4, width), torch.nn.Linear(width, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
step = 0
if len(sys.argv) > 1:
    state = torch.load("ddp.pt", map_location="cpu")
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    step = state["step"]
dist.barrier()  # every rank has read the checkpoint before rank 0 writes the next
for _ in range(2):
    model(torch.ones(2, 4)).sum().backward()
    opt.step()
    opt.zero_grad()
    step += 1
if rank == 0:
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step}, "ddp.pt")
dist.barrier()
print(f"rank {rank} at step {step}", flush=True)
dist.destroy_process_group()
