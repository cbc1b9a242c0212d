"""A Transformers Trainer script (a tiny GPT-2 built from a config, no download), reporting to
W&B, resumed with train(resume_from_checkpoint=True). It knows nothing of resumeguard."""

import os
import sys

import torch
import transformers

width = int(os.environ.get("WIDTH", "8"))
torch.manual_seed(0)
config = transformers.GPT2Config(
    vocab_size=32, n_positions=16, n_embd=width, n_layer=1, n_head=2, bos_token_id=0, eos_token_id=0
)
g = torch.Generator().manual_seed(0)
data = [{"input_ids": ids, "labels": ids} for ids in torch.randint(0, 32, (8, 8), generator=g)]
args = transformers.TrainingArguments(
    output_dir="out",
    max_steps=4,
    save_steps=2,
    per_device_train_batch_size=2,
    use_cpu=True,
    report_to=["wandb"],
    disable_tqdm=True,
)
trainer = transformers.Trainer(
    model=transformers.GPT2LMHeadModel(config), args=args, train_dataset=data
)
trainer.train(resume_from_checkpoint=len(sys.argv) > 1)
print(f"global step {trainer.state.global_step}", flush=True)
