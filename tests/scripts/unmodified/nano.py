"""nanoGPT's train.py, in its shape: config globals overridden from the command line, one
torch.save(checkpoint, ckpt.pt), --init_from=resume, wandb.init after the checkpoint is read.
It knows nothing of resumeguard."""

import os
import sys

import torch
import wandb

init_from = "scratch"
out_dir = "out"
max_iters = 6
n_embd = 8
learning_rate = 1e-3
compile = False
for arg in sys.argv[1:]:  # configurator.py's --key=value
    key, value = arg[2:].split("=")
    globals()[key] = type(globals()[key])(value) if key != "compile" else value == "True"
config = {"learning_rate": learning_rate, "n_embd": n_embd, "max_iters": max_iters}

torch.manual_seed(1337)
model = torch.nn.Sequential(torch.nn.Linear(4, n_embd), torch.nn.Linear(n_embd, 1))
optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
iter_num = 0
if init_from == "resume":
    try:
        checkpoint = torch.load(os.path.join(out_dir, "ckpt.pt"), map_location="cpu")
    except Exception as e:  # what a script may do: any failure starts fresh
        print(f"cannot resume ({e}); starting fresh", flush=True)
        checkpoint = None
    if checkpoint is not None:
        state_dict = checkpoint["model"]
        unwanted_prefix = "_orig_mod."
        for k, _ in list(state_dict.items()):
            if k.startswith(unwanted_prefix):
                state_dict[k[len(unwanted_prefix) :]] = state_dict.pop(k)
        model.load_state_dict(state_dict)
        optimizer.load_state_dict(checkpoint["optimizer"])
        iter_num = checkpoint["iter_num"]
        checkpoint = None
raw_model = model
if compile:
    model = torch.compile(model, backend="eager")  # the prefix it adds, without a C++ build
wandb.init(project="nano", name="gpt", config=config, id="nano1", resume="allow")
while iter_num < max_iters:
    loss = model(torch.ones(2, 4)).pow(2).mean()
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    iter_num += 1
    wandb.log({"iter": iter_num, "loss": loss.item()})
    if iter_num % 3 == 0:
        checkpoint = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "iter_num": iter_num,
            "config": config,
        }
        os.makedirs(out_dir, exist_ok=True)
        torch.save(checkpoint, os.path.join(out_dir, "ckpt.pt"))
    print(f"iter {iter_num}", flush=True)
wandb.finish()
