"""Build one recorded offline run to copy per fault case: ``python make_run.py ROOT``.

ROOT gets ``repo/`` (a git repository with a training script and requirements) and ``wb/``
(WANDB_DIR) holding run ``faultrun``: recorded by ``resumeguard.init``, one checkpoint saved
with ``save_checkpoint``, finished.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

RUN_ID = "faultrun"
CHECKPOINT = "ckpt.pt"


def main(root: Path) -> None:
    repo, wb = root / "repo", root / "wb"
    repo.mkdir(parents=True)
    wb.mkdir()
    (repo / "train.py").write_text("print('train')\n")
    (repo / "requirements.txt").write_text("numpy>=1.0\n")
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "initial"]):
        subprocess.run(["git", "-c", "init.defaultBranch=main", *args], cwd=repo, check=True)
    os.chdir(repo)
    os.environ.update(WANDB_MODE="offline", WANDB_SILENT="true", WANDB_DIR=str(wb))

    import torch

    import resumeguard

    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.01)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    run = resumeguard.init(project="faults", id=RUN_ID, config={"lr": 0.01})
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": 1}
    resumeguard.save_checkpoint(run, state, CHECKPOINT, optimizer=opt, storage="latest+upload")
    run.finish()


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
