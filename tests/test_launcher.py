"""``resumeguard run -- CMD`` on unmodified scripts (tests/scripts/unmodified/): every Python
process CMD starts is guarded through import hooks; the unchanged resume goes ahead, and a code
change, a changed model width, a truncated or altered checkpoint each end the command before its
first training step with the documented exit status, whatever the script's own except does."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import commit_all, make_repo

SCRIPTS = Path(__file__).resolve().parent / "scripts" / "unmodified"
RESUMEGUARD = [sys.executable, "-m", "resumeguard"]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    ignored = "out/\nwandb/\nlit/\n*.tar\n*.pt\n"
    repo = make_repo(tmp_path / "proj", {".gitignore": ignored})
    for script in SCRIPTS.glob("*.py"):
        shutil.copy(script, repo / script.name)
    commit_all(repo, "scripts")
    return repo


def guarded(
    repo: Path, *command: str, options: tuple[str, ...] = (), env: dict[str, str] | None = None
) -> tuple[int, str, dict]:
    """Run ``resumeguard run [options] -- command`` in ``repo``: exit status, output, report."""
    report = repo.parent / "report.json"
    report.unlink(missing_ok=True)
    env = {
        **os.environ,
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_DIR": str(repo),
        **(env or {}),
    }
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        [*RESUMEGUARD, "run", "--report", str(report), *options, "--", *command],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    body = json.loads(report.read_text()) if report.exists() else {}
    return done.returncode, done.stdout + done.stderr, body


def python(script: str, *args: str) -> tuple[str, ...]:
    return (sys.executable, script, *args)


def test_nano_fresh_then_an_unchanged_resume_goes_ahead(project: Path) -> None:
    code, out, report = guarded(project, *python("nano.py", "--max_iters=3"))
    assert code == 0, out
    assert (project / "out" / ".ckpt.pt.resumeguard.json").is_file(), "torch.save was recorded"
    record = json.loads((project / "out" / ".ckpt.pt.resumeguard.json").read_text())
    assert record["run"]["id"] == "nano1" and record["checkpoint"]["size"] > 0
    # From a job script's shell, as a Slurm batch script runs it.
    job = f"cd {project} && {sys.executable} nano.py --init_from=resume"
    code, out, report = guarded(project, "bash", "-c", job)
    assert code == 0, out
    assert "iter 4" in out and "iter 1\n" not in out, "resumed at iteration 3"
    assert "matches its recorded digest" in out and "resume of run nano/nano1 verified" in out
    assert (report["verdict"], report["exit_code"], report["command_exit_code"]) == (
        "went-ahead",
        0,
        0,
    )


def test_nano_harmful_resumes_end_before_the_first_step(project: Path) -> None:
    code, out, _ = guarded(project, *python("nano.py", "--max_iters=3"))
    assert code == 0, out
    ckpt = project / "out" / "ckpt.pt"
    intact = ckpt.read_bytes()

    # A code change: blocked, and the script's `except Exception: start fresh` cannot catch it.
    script = project / "nano.py"
    source = script.read_text()
    script.write_text(source.replace("torch.manual_seed(1337)", "torch.manual_seed(7)"))
    code, out, report = guarded(project, *python("nano.py", "--init_from=resume"))
    assert code == 1 and "starting fresh" not in out and "iter 4" not in out, out
    assert report["verdict"] == "block" and "code.files.nano.py" in out
    script.write_text(source)

    # A wider model: the fit check at load_state_dict, before a tensor is copied.
    code, out, report = guarded(project, *python("nano.py", "--init_from=resume", "--n_embd=16"))
    assert code == 1 and "0.weight" in out and "iter 4" not in out, out

    # A truncated, then an altered checkpoint; --block-exit-code tells a block from a crash.
    ckpt.write_bytes(intact[: len(intact) // 2])
    code, out, report = guarded(
        project, *python("nano.py", "--init_from=resume"), options=("--block-exit-code", "17")
    )
    assert code == 17 and "truncated" in out and "starting fresh" not in out, out
    assert (report["verdict"], report["exit_code"], report["command_exit_code"]) == (
        "block",
        17,
        1,
    )
    altered = bytearray(intact)
    altered[len(altered) // 2] ^= 1
    ckpt.write_bytes(bytes(altered))
    code, out, _ = guarded(project, *python("nano.py", "--init_from=resume"))
    assert code == 1 and "does not match its record" in out, out
    ckpt.write_bytes(intact)
    code, out, _ = guarded(project, *python("nano.py", "--init_from=resume"))
    assert code == 0, out


def test_nano_as_a_module_with_a_full_unpickling_load(project: Path) -> None:
    """``python -m nano`` (a module, not a script path) whose load unpickles everything
    (``weights_only=False``): the unchanged resume goes ahead, and the whole file is verified
    before a byte of it is unpickled, so an altered one is refused."""
    script = project / "nano.py"
    source = script.read_text()
    assert 'map_location="cpu")' in source
    script.write_text(
        source.replace('map_location="cpu")', 'map_location="cpu", weights_only=False)')
    )
    commit_all(project, "full unpickling")
    code, out, _ = guarded(project, sys.executable, "-m", "nano", "--max_iters=3")
    assert code == 0, out
    assert (project / "out" / ".ckpt.pt.resumeguard.json").is_file(), "torch.save was recorded"
    code, out, _ = guarded(project, sys.executable, "-m", "nano", "--init_from=resume")
    assert code == 0 and "iter 4" in out and "matches its recorded digest" in out, out
    ckpt = project / "out" / "ckpt.pt"
    altered = bytearray(ckpt.read_bytes())
    altered[len(altered) // 2] ^= 1
    ckpt.write_bytes(bytes(altered))
    code, out, report = guarded(project, sys.executable, "-m", "nano", "--init_from=resume")
    assert code == 1 and "does not match its record" in out and "iter 4" not in out, out
    assert report["verdict"] == "block"


def test_a_save_resumeguard_cannot_record_is_still_saved(project: Path) -> None:
    """The script's checkpoint is never lost over resumeguard: when the record beside it cannot
    be written (a folder planted at its name), torch.save writes the file alone, said once."""
    (project / "out" / ".ckpt.pt.resumeguard.json").mkdir(parents=True)
    code, out, _ = guarded(project, *python("nano.py", "--max_iters=3"))
    assert code == 0 and "iter 3" in out, out
    assert "out/ckpt.pt was not recorded" in out and "saved by torch.save alone" in out, out
    import torch

    saved = torch.load(project / "out" / "ckpt.pt", map_location="cpu", weights_only=False)
    assert {"model", "optimizer", "iter_num"} <= set(saved)


def test_nano_compiled_checkpoint_resumes(project: Path) -> None:
    code, out, _ = guarded(project, *python("nano.py", "--max_iters=3", "--compile=True"))
    assert code == 0, out
    code, out, _ = guarded(project, *python("nano.py", "--init_from=resume", "--compile=True"))
    assert code == 0 and "iter 4" in out, out


def test_the_command_status_is_returned_unchanged(project: Path) -> None:
    code, out, report = guarded(project, sys.executable, "-c", "import sys; sys.exit(5)")
    assert (code, report["verdict"], report["command_exit_code"]) == (5, "unchecked", 5), out
    code, out, _ = guarded(project, "no-such-command-here")
    assert code == 2 and "command not found: no-such-command-here" in out


def free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def test_imagenet_under_mp_spawn_saves_on_rank_0_and_resumes(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MASTER_PORT", free_port())
    spawn = ("--multiprocessing-distributed", "--world-size", "2")
    code, out, _ = guarded(project, *python("imagenet.py", "--epochs", "1", *spawn))
    assert code == 0, out
    assert (project / ".checkpoint.pth.tar.resumeguard.json").is_file()
    resume = ("--resume", "checkpoint.pth.tar", "--epochs", "2", *spawn)
    code, out, _ = guarded(project, *python("imagenet.py", *resume))
    assert code == 0 and "(epoch 1)" in out and "epoch 1 rank 1" in out, out
    # model_best.pth.tar is a copy the script made: loaded, said to be unverified.
    code, out, _ = guarded(project, *python("imagenet.py", "--resume", "model_best.pth.tar"))
    assert code == 0 and "not a checkpoint resumeguard recorded" in out, out
    # A wider model is refused on every rank before training.
    code, out, _ = guarded(project, *python("imagenet.py", *resume, "--width", "16"))
    assert code == 1 and "epoch 1 rank" not in out, out


def test_accelerate_save_and_load_state_folders_are_guarded(project: Path) -> None:
    run = ("--max_train_steps", "6")
    env = {"WANDB_RUN_ID": "acc1", "WANDB_RESUME": "allow"}
    code, out, _ = guarded(project, *python("accel.py", *run), env=env)
    assert code == 0, out
    assert (project / "out" / "step_4" / ".model.safetensors.resumeguard.json").is_file()
    resume = (*run, "--resume_from_checkpoint", "out/step_4")
    code, out, _ = guarded(project, *python("accel.py", *resume), env=env)
    assert code == 0 and "step 6" in out and "out/step_4 (4 files) matches its record" in out, out
    # A stale folder: older than what the run logged (run.step, a warning under strict).
    code, out, _ = guarded(
        project, *python("accel.py", *run, "--resume_from_checkpoint", "out/step_2"), env=env
    )
    assert code == 0 and "(run.step)" in out, out
    # A flipped byte in the weights, a truncated optimizer: refused before Accelerate reads them.
    folder = project / "out" / "step_4"
    for name, damage in (("model.safetensors", "flip"), ("optimizer.bin", "truncate")):
        path = folder / name
        intact = path.read_bytes()
        data = bytearray(intact)
        if damage == "flip":
            data[len(data) // 2] ^= 1
        path.write_bytes(bytes(data if damage == "flip" else data[: len(data) // 2]))
        code, out, report = guarded(project, *python("accel.py", *resume), env=env)
        assert code == 1 and report["verdict"] == "block" and name in out and "step 5" not in out
        path.write_bytes(intact)
    # A wider model: the weights' header does not fit.
    code, out, _ = guarded(project, *python("accel.py", *resume, "--width", "16"), env=env)
    assert code == 1 and "step 5" not in out, out
    # The stock script passes no run id: a new run, refused with the run to resume.
    code, out, _ = guarded(project, *python("accel.py", *resume))
    assert code == 1 and "saved by run acc1" in out and "WANDB_RUN_ID=acc1" in out, out


def test_accelerate_launch_is_guarded(project: Path) -> None:
    """``accelerate launch`` starts the script in a process of its own: it is guarded too."""
    launch = [str(Path(sys.executable).parent / "accelerate"), "launch", "--cpu"]
    launch += ["--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no"]
    launch += ["--dynamo_backend", "no", "accel.py", "--max_train_steps", "6"]
    env = {"WANDB_RUN_ID": "acl1", "WANDB_RESUME": "allow"}
    code, out, _ = guarded(project, *launch, env=env)
    assert code == 0, out
    assert (project / "out" / "step_4" / ".model.safetensors.resumeguard.json").is_file()
    resume = [*launch, "--resume_from_checkpoint", "out/step_4"]
    code, out, _ = guarded(project, *resume, env=env)
    assert code == 0 and "step 6" in out, out
    weights = project / "out" / "step_4" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 1
    weights.write_bytes(bytes(data))
    code, out, report = guarded(project, *resume, env=env)
    assert code == 1 and report["verdict"] == "block" and "step 5" not in out, out


def test_lightning_trainer_gets_the_callback(project: Path) -> None:
    code, out, _ = guarded(project, *python("lit.py", "1"))
    assert code == 0, out
    records = list((project / "lit").rglob(".last.ckpt.resumeguard.json"))
    assert records, "the callback recorded Lightning's checkpoint"
    code, out, _ = guarded(project, *python("lit.py", "2", "resume"))
    assert code == 0 and "resume of run lit/lit1 verified" in out, out
    code, out, report = guarded(project, *python("lit.py", "3", "resume"), env={"HIDDEN": "16"})
    assert code == 1 and report["verdict"] == "block", out


def test_transformers_trainer_gets_the_callback(project: Path) -> None:
    env = {"WANDB_PROJECT": "hf", "WANDB_RUN_ID": "hf1", "WANDB_RESUME": "allow"}
    code, out, _ = guarded(project, *python("hf.py"), env=env)
    assert code == 0, out
    assert (project / "out" / "checkpoint-4" / ".model.safetensors.resumeguard.json").is_file()
    code, out, _ = guarded(project, *python("hf.py", "resume"), env=env)
    assert code == 0 and "resume of run hf/hf1 verified" in out, out
    code, out, report = guarded(project, *python("hf.py", "resume"), env={**env, "WIDTH": "16"})
    assert code == 1 and report["verdict"] == "block", out


def test_torchrun_workers_are_guarded(project: Path) -> None:
    torchrun = (sys.executable, "-m", "torch.distributed.run", "--standalone")
    torchrun += ("--nproc_per_node", "2", "ddp.py")
    code, out, _ = guarded(project, *torchrun)
    assert code == 0 and (project / ".ddp.pt.resumeguard.json").is_file(), out
    code, out, _ = guarded(project, *torchrun, "resume")
    assert code == 0 and "rank 1 at step 4" in out, out
    code, out, report = guarded(project, *torchrun, "resume", env={"WIDTH": "16"})
    assert code == 1 and report["verdict"] == "block" and "at step" not in out, out


def test_nano_stale_checkpoint_is_run_step(project: Path) -> None:
    code, out, _ = guarded(project, *python("nano.py", "--max_iters=5"))  # saved at 3, logged 5
    assert code == 0, out
    code, out, _ = guarded(project, *python("nano.py", "--max_iters=5", "--init_from=resume"))
    assert code == 0 and "(run.step)" in out and "already logged up to step 4" in out, out
    strict_step = project.parent / "policy.toml"
    strict_step.write_text('block = ["run.step"]\n')
    resume = python("nano.py", "--max_iters=5", "--init_from=resume")
    code, out, _ = guarded(project, *resume, options=("--policy", str(strict_step)))
    assert code == 1 and "iter 4" not in out, out


SLEEPER = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, lambda *a: (print('got SIGTERM', flush=True), sys.exit(42)))\n"
    "import torch\n"
    "torch.save(torch.ones(2), 'plain.pt')\n"
    "print('ready', flush=True)\n"
    "time.sleep(60)\n"
)


def test_signals_reach_the_command_and_what_is_not_a_checkpoint_is_saved_as_is(
    project: Path,
) -> None:
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": ""}
    command = [*RESUMEGUARD, "run", "--", sys.executable, "-c", SLEEPER]
    with subprocess.Popen(
        command, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as wrapper:
        assert wrapper.stdout is not None
        lines = []
        for line in wrapper.stdout:
            lines.append(line)
            if line.startswith("ready"):
                wrapper.send_signal(signal.SIGTERM)  # as Slurm's preemption does
        code = wrapper.wait(timeout=60)
    out = "".join(lines)
    assert code == 42 and "got SIGTERM" in out, out
    assert "torch.save of Tensor is not a checkpoint it recognises" in out
    assert (project / "plain.pt").is_file() and not (
        project / ".plain.pt.resumeguard.json"
    ).exists()


def test_resumeguard_disable_turns_the_injection_off(project: Path) -> None:
    code, out, _ = guarded(
        project, *python("nano.py", "--max_iters=3"), env={"RESUMEGUARD_DISABLE": "1"}
    )
    assert code == 0 and "resumeguard: off" in out, out
    assert not (project / "out" / ".ckpt.pt.resumeguard.json").exists()
