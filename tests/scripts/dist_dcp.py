"""A torchrun job that saves and loads a sharded checkpoint (torch.distributed.checkpoint) of
a DDP model and its optimizer through resumeguard.dcp, on 2 processes (gloo, CPU).

PHASE "save" starts run WANDB_RUN_ID and saves to ckpt-dcp; PHASE "load" resumes it and loads
the checkpoint into a fresh model, writing loaded-<rank> with the weights' sum."""

import os
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

import resumeguard
import resumeguard.dcp
from resumeguard.entry import exit_with

REPO = Path(os.environ["REPO"])


def weights(model: torch.nn.Module) -> str:
    return str(float(sum(p.detach().sum() for p in model.parameters())))


def main() -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0 if os.environ["PHASE"] == "save" else 1)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 1))
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ddp(torch.randn(2, 4)).sum().backward()
    opt.step()
    resume = "must" if os.environ["PHASE"] == "load" else None
    run = None
    if rank == 0:
        run = resumeguard.init(project="p", id=os.environ["WANDB_RUN_ID"], resume=resume, repo=REPO)
    model_sd, optim_sd = get_state_dict(ddp, opt)
    state = {"model": model_sd, "optim": optim_sd}
    if os.environ["PHASE"] == "save":
        resumeguard.dcp.save(run, state, "ckpt-dcp", step=1)
        Path(f"saved-{rank}").write_text(
            str(float(sum(p.detach().sum() for p in model.parameters())))
        )
    else:
        resumeguard.dcp.load(run, state, "ckpt-dcp")
        set_state_dict(ddp, opt, model_state_dict=state["model"], optim_state_dict=state["optim"])
        Path(f"loaded-{rank}").write_text(
            str(float(sum(p.detach().sum() for p in model.parameters())))
        )
    if run is not None:
        run.finish()
    dist.destroy_process_group()


if __name__ == "__main__":
    try:
        main()
    except resumeguard.ResumeGuardError as e:
        exit_with(e)
