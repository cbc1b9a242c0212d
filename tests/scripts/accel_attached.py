"""The Accelerate script of unmodified/accel.py adopting resumeguard in one line, as README
shows: ``resumeguard.integrations.accelerate.attach(accelerator)`` right after the Accelerator
is made, run with plain ``python`` (no ``resumeguard run``)."""

import argparse
import os

import torch
from accelerate import Accelerator

import resumeguard.integrations.accelerate

parser = argparse.ArgumentParser()
parser.add_argument("--max_train_steps", type=int, default=4)
parser.add_argument("--checkpointing_steps", type=int, default=2)
parser.add_argument("--resume_from_checkpoint", default=None)
parser.add_argument("--width", type=int, default=8)
parser.add_argument("--learning_rate", type=float, default=1e-3)
args = parser.parse_args()

accelerator = Accelerator(log_with="wandb", cpu=True)
resumeguard.integrations.accelerate.attach(accelerator)
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(4, args.width), torch.nn.Linear(args.width, 1))
optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate)
scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 3))
model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
accelerator.init_trackers("clm_no_trainer", vars(args), init_kwargs={"wandb": {}})
completed_steps = 0
if args.resume_from_checkpoint:
    accelerator.print(f"Resumed from checkpoint: {args.resume_from_checkpoint}")
    accelerator.load_state(args.resume_from_checkpoint)
    completed_steps = int(os.path.basename(args.resume_from_checkpoint.rstrip("/"))[5:])
while completed_steps < args.max_train_steps:
    loss = model(torch.ones(2, 4)).pow(2).mean()
    accelerator.backward(loss)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()
    completed_steps += 1
    accelerator.log({"train_loss": loss.item()}, step=completed_steps)
    if completed_steps % args.checkpointing_steps == 0:
        accelerator.save_state(os.path.join("out", f"step_{completed_steps}"))
    accelerator.print(f"step {completed_steps}")
accelerator.end_training()
