"""Checkpoints in real training scripts: copies that are copies, the storage option, loading
without a model, compiled models, no run at all, the record beside the file, file modes."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import stat
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from helpers import cli, offline_project

import resumeguard
from resumeguard.checkpoint.beside import beside
from resumeguard.io.atomic import TMP_SUFFIX, clone_or_copy
from resumeguard.stores.layout import LOCAL_COPIES


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return offline_project(tmp_path, monkeypatch, {"train.py": "X = 1\n", ".gitignore": "*.pt\n"})


def model_and_opt(hidden: int = 8) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, hidden), torch.nn.Linear(hidden, 1))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    return model, opt


def state_of(model: torch.nn.Module, opt: torch.optim.Optimizer, step: int) -> dict[str, object]:
    return {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step}


def start(run_id: str, project: Path, **kw: object) -> object:
    return resumeguard.init(project="p", id=run_id, repo=project, **kw)


def rewrite_in_place(path: Path) -> None:
    """What a plain ``torch.save`` to the same path does: truncate and write the same inode."""
    with open(path, "r+b") as f:
        f.truncate(0)
        f.write(b"not the checkpoint any more")


# --- A copy that is a copy ---------------------------------------------------------------------


def test_copy_survives_an_in_place_rewrite_of_the_original(project: Path) -> None:
    model, opt = model_and_opt()
    run = start("copy1", project)
    record = resumeguard.save_checkpoint(run, state_of(model, opt, 5), "ckpt.pt", storage="latest")
    copy = Path(run.dir).parent / LOCAL_COPIES / record.file
    assert not os.path.samefile(copy, project / "ckpt.pt")
    rewrite_in_place(project / "ckpt.pt")
    fresh, fresh_opt = model_and_opt(hidden=8)
    torch.nn.init.zeros_(fresh[0].weight)
    state = resumeguard.restore_checkpoint(run, "ckpt.pt", model=fresh, optimizer=fresh_opt)
    assert state["step"] == 5 and torch.equal(fresh[0].weight, model[0].weight)
    run.finish()


@pytest.fixture
def reflink_fs(tmp_path: Path) -> Iterator[Path]:
    """A small btrfs (or xfs) this test loop-mounts itself: a filesystem with reflinks."""
    if os.geteuid() != 0:
        pytest.skip("loop-mounting a filesystem needs root")
    image = tmp_path / "fs.img"
    where = tmp_path / f"mnt-{uuid.uuid4().hex[:6]}"
    where.mkdir()
    for mkfs, size in (("mkfs.btrfs", 256), ("mkfs.xfs", 512)):
        if shutil.which(mkfs) is None:
            continue
        with open(image, "wb") as f:
            f.truncate(size << 20)
        if subprocess.run([mkfs, "-q", str(image)], capture_output=True).returncode != 0:
            continue
        if subprocess.run(["mount", "-o", "loop", str(image), str(where)]).returncode == 0:
            break
    else:
        pytest.skip("no mkfs.btrfs/mkfs.xfs or no loop device to mount a reflink filesystem")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_reflink_copy_shares_nothing_an_in_place_rewrite_changes(
    project: Path, reflink_fs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = reflink_fs / "a.bin"
    source.write_bytes(os.urandom(1 << 20))
    dest = reflink_fs / "b.bin"
    dest.touch()
    assert clone_or_copy(source, dest, clone_only=True) == "reflink"
    # The default (auto) keeps a reflinked copy where the filesystem makes one.
    monkeypatch.setenv("WANDB_DIR", str(reflink_fs))
    model, opt = model_and_opt()
    run = start("reflink1", project)
    path = reflink_fs / "ckpt.pt"
    record = resumeguard.save_checkpoint(run, state_of(model, opt, 7), path)
    assert record.file and record.local
    rewrite_in_place(path)
    state = resumeguard.restore_checkpoint(run, path)
    assert state["step"] == 7
    run.finish()


def test_auto_on_a_filesystem_without_reflinks_keeps_no_copy(project: Path) -> None:
    probe_src, probe_dst = project / "probe-a", project / "probe-b"
    probe_src.write_bytes(b"x" * 4096)
    probe_dst.touch()
    if clone_or_copy(probe_src, probe_dst, clone_only=True) == "reflink":
        pytest.skip("this filesystem makes reflinks")
    model, opt = model_and_opt()
    run = start("auto1", project)
    record = resumeguard.save_checkpoint(run, state_of(model, opt, 1), "ckpt.pt")
    assert record.file == ""  # said in the record (and by `resumeguard show`): no copy kept
    assert resumeguard.restore_checkpoint(run, "ckpt.pt")["step"] == 1
    run.finish()


# --- Storage the user chooses ------------------------------------------------------------------


def copies_in(run: object) -> list[str]:
    directory = Path(run.dir).parent  # type: ignore[attr-defined]
    return sorted(
        str(p.relative_to(directory))
        for p in directory.rglob("resumeguard/checkpoints/**/*")
        if p.is_file()
    )


def test_storage_option_latest_all_upload_and_rotation(
    capsys: pytest.CaptureFixture[str], project: Path
) -> None:
    model, opt = model_and_opt()
    run = start("store1", project)
    digest_only = resumeguard.save_checkpoint(run, {"step": 0}, "d.pt", storage="digest")
    assert digest_only.file == "" and copies_in(run) == []
    resumeguard.save_checkpoint(run, state_of(model, opt, 1), "ckpt.pt", storage="latest")
    resumeguard.save_checkpoint(run, state_of(model, opt, 2), "ckpt.pt", storage="latest")
    kept = copies_in(run)
    assert len(kept) == 1 and kept[0].startswith(LOCAL_COPIES), "the previous copy is retired"
    uploaded = resumeguard.save_checkpoint(run, {"step": 3}, "up.pt", storage="latest+upload")
    assert not uploaded.local and (Path(run.dir) / uploaded.file).is_file()
    resumeguard.save_checkpoint(run, {"step": 4}, "every.pt", storage="all")
    resumeguard.save_checkpoint(run, {"step": 5}, "every.pt", storage="all")
    assert len([c for c in copies_in(run) if c.endswith("every.pt")]) == 2
    # Rotation: the user deletes an old checkpoint file; the next save drops its copy.
    resumeguard.save_checkpoint(run, {"step": 6}, "old.pt", storage="latest")
    (project / "old.pt").unlink()
    resumeguard.save_checkpoint(run, state_of(model, opt, 7), "ckpt.pt", storage="latest")
    assert not [c for c in copies_in(run) if c.endswith("old.pt")]
    run.finish()
    code, out, _ = cli(capsys, "show", "--run-id", "store1", "--json")
    storage = json.loads(out)["storage"]
    # The record points at 3 copies; the disk also holds the older save of every.pt ("all").
    assert code == 0 and storage["copies"] == 3 and storage["bytes"] > 0
    assert storage["uploaded"] == uploaded.size and storage["on_disk"] > storage["bytes"]
    code, out, _ = cli(capsys, "show", "--run-id", "store1")
    assert code == 0 and "stores: 3 checkpoint copies" in out


def test_storage_from_the_environment_and_bad_values(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = start("store2", project)
    monkeypatch.setenv("RESUMEGUARD_STORAGE", "latest")
    assert resumeguard.save_checkpoint(run, {"step": 1}, "a.pt").local
    with pytest.raises(resumeguard.BadInput, match="bad storage 'sometimes'"):
        resumeguard.save_checkpoint(run, {"step": 1}, "a.pt", storage="sometimes")
    run.finish()


# --- Fits the way scripts are written ----------------------------------------------------------


def test_load_checkpoint_before_the_model_exists_then_fit_check(project: Path) -> None:
    model, opt = model_and_opt(hidden=8)
    run = start("load1", project)
    state = {**state_of(model, opt, 3), "model_args": {"hidden": 8}}
    resumeguard.save_checkpoint(run, state, "ckpt.pt")
    loaded = resumeguard.load_checkpoint(run, "ckpt.pt")
    rebuilt, rebuilt_opt = model_and_opt(hidden=loaded["model_args"]["hidden"])
    resumeguard.check_fit(loaded, model=rebuilt, optimizer=rebuilt_opt)
    wrong, wrong_opt = model_and_opt(hidden=16)
    with pytest.raises(resumeguard.CheckpointError, match="does not fit"):
        resumeguard.check_fit(loaded, model=wrong, optimizer=wrong_opt)
    rewrite_in_place(project / "ckpt.pt")
    with pytest.raises(resumeguard.CheckpointError, match=r"truncated|does not match"):
        resumeguard.load_checkpoint(run, "ckpt.pt")
    run.finish()


def test_compiled_model_checkpoints_fit_and_load_both_ways(project: Path) -> None:
    model, opt = model_and_opt()
    compiled = torch.compile(model, backend="eager")
    assert all(k.startswith("_orig_mod.") for k in compiled.state_dict())
    run = start("compile1", project)
    saved = {"model": compiled.state_dict(), "optimizer": opt.state_dict(), "step": 2}
    resumeguard.save_checkpoint(run, saved, "compiled.pt")
    plain, plain_opt = model_and_opt()
    torch.nn.init.zeros_(plain[0].weight)
    resumeguard.restore_checkpoint(run, "compiled.pt", model=plain, optimizer=plain_opt)
    assert torch.equal(plain[0].weight, model[0].weight)
    resumeguard.save_checkpoint(run, state_of(model, opt, 3), "plain.pt")
    target, target_opt = model_and_opt()
    torch.nn.init.zeros_(target[0].weight)
    again = torch.compile(target, backend="eager")
    resumeguard.restore_checkpoint(run, "plain.pt", model=again, optimizer=target_opt)
    assert torch.equal(target[0].weight, model[0].weight)
    run.finish()


def test_without_a_run_or_with_a_disabled_one_the_record_lies_beside(project: Path) -> None:
    import wandb

    model, opt = model_and_opt()
    for run in (None, wandb.init(mode="disabled")):
        record = resumeguard.save_checkpoint(run, state_of(model, opt, 4), "solo.pt")
        origin = resumeguard.checkpoint_origin("solo.pt")
        assert origin is not None and origin.run is None
        assert origin.checkpoint.digest == record.digest
        assert beside(Path("solo.pt")).name == ".solo.pt.resumeguard.json"
        fresh, fresh_opt = model_and_opt()
        state = resumeguard.restore_checkpoint(run, "solo.pt", model=fresh, optimizer=fresh_opt)
        assert state["step"] == 4
        data = bytearray(Path("solo.pt").read_bytes())
        data[len(data) // 2] ^= 1
        Path("solo.pt").write_bytes(bytes(data))
        with pytest.raises(resumeguard.CheckpointError, match="does not match its record"):
            resumeguard.load_checkpoint(run, "solo.pt")
    torch.save({"step": 1}, "plain.pt")
    with pytest.raises(resumeguard.CheckpointError, match="no resumeguard record beside it"):
        resumeguard.load_checkpoint(None, "plain.pt")


def test_the_record_beside_a_checkpoint_names_its_run(project: Path) -> None:
    run = start("origin1", project)
    resumeguard.save_checkpoint(run, {"step": 1}, "sub/ckpt-{rank}.pt")
    origin = resumeguard.checkpoint_origin(project / "sub" / "ckpt-0.pt")
    assert origin is not None and origin.run is not None
    assert (origin.run.id, origin.run.project) == ("origin1", "p")
    assert origin.name == "sub/ckpt-{rank}.pt"
    assert origin.offline and origin.wandb_dir is not None
    assert resumeguard.checkpoint_origin(project / "train.py") is None
    run.finish()


# --- Same guarantees ---------------------------------------------------------------------------


def test_file_modes_are_what_a_plain_torch_save_leaves(project: Path) -> None:
    old = os.umask(0o022)
    try:
        resumeguard.save_checkpoint(None, {"step": 1}, "new.pt")
        torch.save({"step": 1}, "plain.pt")
        assert stat.S_IMODE(os.stat("new.pt").st_mode) == stat.S_IMODE(os.stat("plain.pt").st_mode)
        assert stat.S_IMODE(os.stat("new.pt").st_mode) == 0o644
        os.chmod("new.pt", 0o640)
        resumeguard.save_checkpoint(None, {"step": 2}, "new.pt")
        assert stat.S_IMODE(os.stat("new.pt").st_mode) == 0o640
    finally:
        os.umask(old)


def test_temp_files_of_a_dead_save_are_reclaimed_and_a_live_one_is_left(project: Path) -> None:
    dead = project / f".ckpt.pt.dead{TMP_SUFFIX}"
    dead.write_bytes(b"half a checkpoint")
    live = project / f".ckpt.pt.live{TMP_SUFFIX}"
    live.write_bytes(b"being written")
    with open(live, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # what a saver in another process holds
        resumeguard.save_checkpoint(None, {"step": 1}, "ckpt.pt")
        assert not dead.exists() and live.exists()


@pytest.mark.parametrize("name", ["folder", "a\0b.pt", ""])
def test_a_checkpoint_name_that_cannot_be_a_file_is_bad_input(project: Path, name: str) -> None:
    """A directory, a NUL byte or nothing: one line (exit 2), nothing written; a file name in
    that directory saves."""
    (project / "folder").mkdir()
    model, opt = model_and_opt()
    run = resumeguard.init(project="p", id="badname", repo=project)
    with pytest.raises(resumeguard.BadInput, match="checkpoint name"):
        resumeguard.save_checkpoint(run, state_of(model, opt, 1), name)
    assert list((project / "folder").iterdir()) == []
    resumeguard.save_checkpoint(run, state_of(model, opt, 1), "folder/ckpt.pt")
    run.finish()
