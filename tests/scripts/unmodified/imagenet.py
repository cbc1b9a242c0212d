"""pytorch/examples' ImageNet main.py, in its shape: --resume PATH, a checkpoint saved each epoch
(rank 0 only under --multiprocessing-distributed with mp.spawn), shutil.copyfile to
model_best.pth.tar. No W&B. It knows nothing of resumeguard."""

import argparse
import os
import shutil

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=2)
parser.add_argument("--resume", default="")
parser.add_argument("--width", type=int, default=8)
parser.add_argument("--multiprocessing-distributed", action="store_true")
parser.add_argument("--world-size", type=int, default=1)


def save_checkpoint(state, is_best, filename="checkpoint.pth.tar"):
    torch.save(state, filename)
    if is_best:
        shutil.copyfile(filename, "model_best.pth.tar")


def main_worker(gpu, ngpus, args):
    if args.multiprocessing_distributed:
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        dist.init_process_group("gloo", rank=gpu, world_size=ngpus)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, args.width), torch.nn.Linear(args.width, 1))
    optimizer = torch.optim.SGD(model.parameters(), 0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.1)
    start_epoch = 0
    if args.resume:
        if os.path.isfile(args.resume):
            checkpoint = torch.load(args.resume, map_location="cpu")
            start_epoch = checkpoint["epoch"]
            model.load_state_dict(checkpoint["state_dict"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            scheduler.load_state_dict(checkpoint["scheduler"])
            print(f"=> loaded checkpoint '{args.resume}' (epoch {start_epoch})", flush=True)
        else:
            print(f"=> no checkpoint found at '{args.resume}'", flush=True)
    if args.multiprocessing_distributed:
        dist.barrier()  # every rank has read the checkpoint before rank 0 writes the next
    for epoch in range(start_epoch, args.epochs):
        loss = model(torch.ones(2, 4)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        if not args.multiprocessing_distributed or gpu % ngpus == 0:
            save_checkpoint(
                {
                    "epoch": epoch + 1,
                    "arch": "tiny",
                    "state_dict": model.state_dict(),
                    "best_acc1": torch.tensor(0.5),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                },
                is_best=True,
            )
        print(f"epoch {epoch} rank {gpu}", flush=True)
    if args.multiprocessing_distributed:
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    args = parser.parse_args()
    if args.multiprocessing_distributed:
        os.environ["MASTER_PORT"] = os.environ.get("MASTER_PORT", "29533")
        mp.spawn(main_worker, nprocs=args.world_size, args=(args.world_size, args))
    else:
        main_worker(0, 1, args)
