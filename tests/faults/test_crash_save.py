"""A save killed (SIGKILL, as ``kill -9``) at each named point, and a save into a full disk:
the previous checkpoint stays restorable, the record agrees with the files, and the temp files
left behind are reclaimed by the next save and never count as code."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from helpers import cli_json, offline_project

import resumeguard
from resumeguard.checkpoint.files import CRASH_ENV, CRASH_POINTS
from resumeguard.io.atomic import TMP_SUFFIX

CHILD = """
import os, sys, torch, resumeguard
run_id, name, storage, crash = sys.argv[1:5]
if sys.argv[5:] == ["aside"]:  # every replaced checkpoint is set aside, as large ones are
    import resumeguard.io.atomic
    resumeguard.io.atomic.SET_ASIDE_BYTES = 0
run = None if run_id == "-" else resumeguard.init(project="p", id=run_id, resume="allow", repo=".")
torch.manual_seed(0)
model = torch.nn.Linear(64, 64)
opt = torch.optim.AdamW(model.parameters())
resumeguard.save_checkpoint(run, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                  "step": 1}, name, storage=storage)
os.environ["RESUMEGUARD_CRASH_AT"] = crash
model.weight.data.add_(1.0)
resumeguard.save_checkpoint(run, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                  "step": 2}, name, storage=storage)
print("not killed")
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return offline_project(tmp_path, monkeypatch, {"train.py": "X = 1\n", ".gitignore": "*.pt\n"})


def kill_at(point: str, run_id: str, storage: str, name: str = "ckpt.pt", *extra: str) -> None:
    """Run the child: one save, then a second one killed at ``point``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop(CRASH_ENV, None)
    done = subprocess.run(
        [sys.executable, "-c", CHILD, run_id, name, storage, point, *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == -signal.SIGKILL, done.stdout + done.stderr


def expected_step(point: str, storage: str) -> int:
    """The previous save wins while its bytes are there; without a copy, the new file (complete
    once renamed into place) is what is left after the rename."""
    if CRASH_POINTS.index(point) >= CRASH_POINTS.index("published"):
        return 2
    if point == "replaced" and storage == "digest":
        return 2
    return 1


def temps(folder: Path) -> list[Path]:
    return sorted(folder.rglob(f"*{TMP_SUFFIX}"))


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_kill_with_a_run_and_a_copy_keeps_the_previous_checkpoint(
    capsys: pytest.CaptureFixture[str], project: Path, point: str
) -> None:
    run_id = f"crash{CRASH_POINTS.index(point)}"
    kill_at(point, run_id, "latest")
    # The record agrees with the files: the check says the run is safe to resume, and the
    # killed save's temp files are not code.
    code, report = cli_json(capsys, "check", "--run-id", run_id, "--repo", str(project))
    assert (code, report["verdict"]) == (0, "ok"), report
    run = resumeguard.init(project="p", id=run_id, resume="must", repo=project)
    model = torch.nn.Linear(64, 64)
    opt = torch.optim.AdamW(model.parameters())
    state = resumeguard.restore_checkpoint(run, "ckpt.pt", model=model, optimizer=opt)
    assert state["step"] == expected_step(point, "latest")
    # The next save reclaims what the killed one left and retires what no record needs.
    resumeguard.save_checkpoint(run, {**state, "step": 3}, "ckpt.pt", storage="latest")
    assert temps(project) == [] and temps(Path(run.dir).parent) == []
    copies = list(Path(run.dir).parent.parent.rglob("resumeguard-local/**/ckpt.pt"))
    live = [p for p in copies if Path(run.dir).parent in p.parents]
    assert len(live) == 1, copies
    run.finish()


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_kill_without_a_run_keeps_a_verifiable_checkpoint(project: Path, point: str) -> None:
    kill_at(point, "-", "digest")
    state = resumeguard.load_checkpoint(None, "ckpt.pt")
    assert state["step"] == expected_step(point, "digest")
    resumeguard.save_checkpoint(None, {**state, "step": 3}, "ckpt.pt")
    assert temps(project) == []
    assert resumeguard.load_checkpoint(None, "ckpt.pt")["step"] == 3


@pytest.mark.parametrize("point", ["replaced", "published", "retired"])
def test_a_replaced_checkpoint_set_aside_is_reclaimed_after_a_kill(
    capsys: pytest.CaptureFixture[str], project: Path, point: str
) -> None:
    """A large checkpoint being replaced keeps a second name until the save is recorded (its
    blocks are freed off the save's path): killed before that, the name is a temp file the
    check ignores and the next save removes."""
    run_id = f"aside{point}"
    kill_at(point, run_id, "digest", "ckpt.pt", "aside")
    assert [p for p in temps(project) if p.name.startswith(".ckpt.pt.") and ".old" in p.name]
    code, report = cli_json(capsys, "check", "--run-id", run_id, "--repo", str(project))
    assert (code, report["verdict"]) == (0, "ok"), report
    run = resumeguard.init(project="p", id=run_id, resume="must", repo=project)
    state = resumeguard.restore_checkpoint(run, "ckpt.pt")
    assert state["step"] == 2
    resumeguard.save_checkpoint(run, {**state, "step": 3}, "ckpt.pt")
    run.finish()
    assert temps(project) == []
    assert resumeguard.load_checkpoint(None, "ckpt.pt")["step"] == 3


def test_a_replaced_checkpoint_set_aside_is_gone_once_the_save_returns(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    import resumeguard.io.atomic

    monkeypatch.setattr(resumeguard.io.atomic, "SET_ASIDE_BYTES", 0)
    run = resumeguard.init(project="p", id="aside-done", repo=project)
    for step in (1, 2):
        resumeguard.save_checkpoint(run, big_state(step, 1), "ckpt.pt")
    for thread in threading.enumerate():  # the removal runs off the save's path
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join(timeout=30)
    assert temps(project) == []
    assert resumeguard.restore_checkpoint(run, "ckpt.pt")["step"] == 2
    run.finish()


# --- A full disk -------------------------------------------------------------------------------


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs this test mounts itself (root only)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root and mount(8)")
    where = tmp_path / f"small-{uuid.uuid4().hex[:6]}"
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def big_state(step: int, mib: int) -> dict[str, object]:
    return {"model": {"w": torch.full((mib << 18,), float(step))}, "step": step}


def test_full_disk_under_the_checkpoint_is_one_clear_error_and_loses_nothing(
    project: Path, small_fs: Path
) -> None:
    path = small_fs / "ckpt.pt"
    resumeguard.save_checkpoint(None, big_state(1, 1), path)
    before = path.read_bytes()
    with pytest.raises(resumeguard.DiskFull) as caught:
        resumeguard.save_checkpoint(None, big_state(2, 3), path)
    message = str(caught.value)
    assert message.startswith(f"no space left on {small_fs} (tmpfs) writing {path} (")
    assert "bytes)" in message and "\n" not in message
    assert path.read_bytes() == before
    assert temps(small_fs) == []
    assert resumeguard.load_checkpoint(None, path)["step"] == 1


def test_full_disk_under_the_run_directory_keeps_the_checkpoint_and_its_copy(
    project: Path, small_fs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_DIR", str(small_fs))
    run = resumeguard.init(project="p", id="full1", repo=project)
    first = resumeguard.save_checkpoint(run, big_state(1, 1), "ckpt.pt", storage="latest")
    copy = Path(run.dir).parent / "resumeguard-local" / first.file
    kept, mine = copy.read_bytes(), (project / "ckpt.pt").read_bytes()
    with pytest.raises(resumeguard.DiskFull, match=r"^no space left on .* writing .* bytes\)"):
        resumeguard.save_checkpoint(run, big_state(2, 3), "ckpt.pt", storage="latest")
    assert copy.read_bytes() == kept and (project / "ckpt.pt").read_bytes() == mine
    assert temps(small_fs) == [] and temps(project) == []
    state = resumeguard.restore_checkpoint(run, "ckpt.pt")
    assert state["step"] == 1
    run.finish()
