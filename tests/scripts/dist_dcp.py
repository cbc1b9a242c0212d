"""A torchrun job that saves and loads a sharded checkpoint (torch.distributed.checkpoint) of
an FSDP2 (fully_shard) model and its optimizer through resumeguard.api.dcp (gloo, CPU).

PHASE "save" starts run WANDB_RUN_ID and saves to ckpt-dcp; PHASE "load" resumes it and loads
the checkpoint into a fresh model, writing loaded-<rank> with the weights' sum."""

import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from torch.distributed.fsdp import fully_shard

import resumeguard
import resumeguard.api.dcp
from resumeguard.api.entry import exit_with

REPO = Path(os.environ["REPO"])


def weights(model: torch.nn.Module) -> str:
    """The sum of the full (unsharded) weights."""
    full = get_state_dict(model, [])[0]
    return str(float(sum(t.full_tensor().sum() for t in full.values())))


def main() -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0 if os.environ["PHASE"] == "save" else 1)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 1))
    for layer in model:
        fully_shard(layer)
    fully_shard(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    torch.manual_seed(2)
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    resume = "must" if os.environ["PHASE"] == "load" else None
    run = None
    if rank == 0:
        run = resumeguard.init(project="p", id=os.environ["WANDB_RUN_ID"], resume=resume, repo=REPO)
    model_sd, optim_sd = get_state_dict(model, opt)
    state = {"model": model_sd, "optim": optim_sd}
    if os.environ["PHASE"] == "save":
        resumeguard.api.dcp.save(run, state, "ckpt-dcp", step=1)
        Path(f"saved-{rank}").write_text(weights(model))
    else:
        resumeguard.api.dcp.load(run, state, "ckpt-dcp")
        set_state_dict(model, opt, model_state_dict=state["model"], optim_state_dict=state["optim"])
        Path(f"loaded-{rank}").write_text(weights(model))
    if run is not None:
        run.finish()
    dist.destroy_process_group()


if __name__ == "__main__":
    try:
        main()
    except resumeguard.ResumeGuardError as e:
        exit_with(e)
    # Everything is written and the run finished: leave without finalizing the interpreter.
    # A gloo worker thread can still be releasing the last collective's tensors (the model
    # still holds the process group, so destroy_process_group does not stop its threads);
    # the release takes the GIL, a finalizing interpreter ends any thread that asks for it,
    # and ending a C++ thread that way aborts the process ("terminate called without an
    # active exception", SIGABRT). A race of torch's, seen under load, not of this job's.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
