"""What resumeguard costs a W&B server: requests and bytes per ``save_checkpoint`` and per check.

``python bench/bench_online_costs.py [--mib 16] [--saves 3]``

The real wandb client (wandb-core and ``wandb.Api``) talks to the W&B-protocol server of the test
suite on 127.0.0.1, which counts every request and its bytes. Baselines from the same run:

- a run that only starts and finishes, to subtract what W&B itself sends for any run;
  saves are measured with the default storage (nothing of the checkpoint uploaded) and with
  ``storage="latest+upload"`` (the run keeps a copy: the checks below download it);
- the checkpoint's own size (what ``wandb.save`` of the file would upload);
- ``wandb.Api().run(path)``: the least any online look at a run costs.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from wandb_server import ENTITY, Request, WandbServer


def tally(requests: list[Request]) -> tuple[int, int, int, dict[str, int]]:
    """Requests, bytes sent to the server, bytes received from it, requests per operation."""
    per_op = collections.Counter(r.operation for r in requests if r.operation != "other")
    kept = [r for r in requests if r.operation != "other"]  # wandb's own telemetry (404)
    return len(kept), sum(r.bytes_in for r in kept), sum(r.bytes_out for r in kept), dict(per_op)


def state(mib: float, step: int) -> dict[str, Any]:
    import torch

    width = max(8, int((mib * 2**20 / 4 / 3) ** 0.5))  # weights + AdamW's two moments
    torch.manual_seed(0)
    model = torch.nn.Linear(width, width, bias=False)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(2, width)).sum().backward()
    opt.step()
    return {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=float, default=16.0, help="checkpoint size, MiB")
    parser.add_argument("--saves", type=int, default=3, help="checkpoints saved per run")
    args = parser.parse_args()

    server = WandbServer().start()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ.update(server.client_env(root / "client"))
        os.environ.update({"WANDB_DISABLE_GIT": "true", "HOME": str(root)})
        repo = root / "repo"
        repo.mkdir()
        (repo / "train.py").write_text("x = 1\n")
        (repo / ".gitignore").write_text("*.pt\nwandb/\n")
        git = ["git", "-c", "user.name=b", "-c", "user.email=b@b", "-C", str(repo)]
        subprocess.run([*git, "init", "-q"], check=True)
        subprocess.run([*git, "add", "-A"], check=True)
        subprocess.run([*git, "commit", "-qm", "bench"], check=True)
        os.chdir(repo)

        import wandb

        import resumeguard
        from resumeguard.cli.main import main as cli

        def session(
            run_id: str, saves: int, *, guarded: bool, storage: str | None = None
        ) -> list[Request]:
            start = wandb.init if not guarded else resumeguard.init
            kwargs: dict[str, Any] = {"repo": repo} if guarded else {}
            run = start(project="bench", id=run_id, config={"lr": 0.1}, **kwargs)
            server.heal()
            for i in range(saves):
                resumeguard.save_checkpoint(
                    run, state(args.mib, i), f"ckpt-{i}.pt", storage=storage
                )
            run.finish()
            return list(server.requests)

        plain = tally(session("plain", 0, guarded=False))
        recorded = tally(session("recorded", 0, guarded=True))
        saved = {
            "default storage": tally(session("kept", args.saves, guarded=True)),
            "storage=latest+upload": tally(
                session("saved", args.saves, guarded=True, storage="latest+upload")
            ),
        }
        size = sum((repo / f"ckpt-{i}.pt").stat().st_size for i in range(args.saves))

        def check(*extra: str) -> tuple[int, tuple[int, int, int, dict[str, int]]]:
            server.heal()
            argv = ["check", "--run-id", f"{ENTITY}/bench/saved", "--repo", str(repo), *extra]
            quiet = io.StringIO()
            with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
                code = cli(argv)
            return code, tally(server.requests)

        checks = {"check": check(), "check --quick": check("--quick")}
        server.heal()
        wandb.teardown()
        wandb.Api(timeout=10).run(f"{ENTITY}/bench/saved")
        bare = tally(server.requests)
    server.stop()

    mib = 2**20
    per = max(1, args.saves)
    print(f"checkpoint: {size / per / mib:.1f} MiB each, {args.saves} saved in one run")
    print(f"run finish, plain wandb (baseline): {plain[0]} requests, {plain[1] / 1024:.0f} KiB up")
    print(
        f"run finish, recorded by resumeguard.init: {recorded[0]} requests, "
        f"{recorded[1] / 1024:.0f} KiB up"
    )
    for label, got in saved.items():
        extra_requests = (got[0] - recorded[0]) / per
        extra_bytes = (got[1] - recorded[1]) / per
        print(
            f"per save_checkpoint, {label}: {extra_requests:+.1f} requests, "
            f"{extra_bytes / mib:.3f} MiB up = {extra_bytes / (size / per):.3f} x the checkpoint "
            f"(wandb.save of the file: 1.000 x); run's operations: {got[3]}"
        )
    print(f"baseline wandb.Api().run(path): {bare[0]} requests, {bare[2] / 1024:.1f} KiB down")
    for label, (code, got) in checks.items():
        print(
            f"per {label} (exit {code}): {got[0]} requests "
            f"({got[0] / max(1, bare[0]):.1f} x baseline), {got[1] / 1024:.1f} KiB up, "
            f"{got[2] / mib:.2f} MiB down ({got[2] / size:.2f} x the run's checkpoints); {got[3]}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
