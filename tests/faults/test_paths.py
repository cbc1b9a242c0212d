"""Paths stay inside: a recorded copy never resolves outside the run, and ``restore --dest``
never writes through a planted link nor outside its destination."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable

import pytest
from faultkit import Case, run_cli, tree_digest

Plant = Callable[[Case], None]


def copy_links_outside(case: Case) -> None:
    """The run's copy replaced by a link to the same bytes outside the run (digest matches)."""
    shutil.copyfile(case.copy, case.outside / "ckpt.pt")
    case.replace_with_link(case.copy, case.outside / "ckpt.pt")


def folder_links_outside(case: Case) -> None:
    """The run's checkpoint folder replaced by a link to a folder outside with the same file."""
    folder = case.copy.parent
    shutil.copytree(folder, case.outside / "checkpoints")
    case.replace_with_link(folder, case.outside / "checkpoints")


def files_links_outside(case: Case) -> None:
    """``files/resumeguard`` a link to a copy of it outside the run."""
    folder = case.files / "resumeguard"
    shutil.copytree(folder, case.outside / "resumeguard")
    case.replace_with_link(folder, case.outside / "resumeguard")


def copy_links_to_dev_zero(case: Case) -> None:
    case.replace_with_link(case.copy, "/dev/zero")


@pytest.mark.parametrize(
    ("plant", "command", "code"),
    [
        pytest.param(copy_links_outside, "restore", 2, id="restore-copy-link-outside"),
        pytest.param(folder_links_outside, "restore", 2, id="restore-folder-link-outside"),
        pytest.param(files_links_outside, "restore", 2, id="restore-parent-link-outside"),
        pytest.param(copy_links_to_dev_zero, "restore", 1, id="restore-copy-dev-zero"),
        pytest.param(copy_links_outside, "check", 2, id="check-copy-link-outside"),
        pytest.param(folder_links_outside, "check", 2, id="check-folder-link-outside"),
    ],
)
def test_recorded_copy_never_read_outside_the_run(
    case: Case, plant: Plant, command: str, code: int
) -> None:
    plant(case)
    before = tree_digest(case.root)
    args = ["ckpt.pt", "--dest", str(case.dest)] if command == "restore" else []
    result = run_cli(case, command, "--run-id", "faultrun", *args, timeout=90)
    result.assert_refused(code)
    assert tree_digest(case.root) == before
    assert not case.dest.exists()


def dest_link_to_victim(case: Case) -> None:
    case.dest.mkdir()
    (case.dest / "ckpt.pt").symlink_to(case.outside / "victim.txt")


def dest_dangling_link(case: Case) -> None:
    case.dest.mkdir()
    (case.dest / "ckpt.pt").symlink_to(case.outside / "planted.pt")


def dest_existing_file(case: Case) -> None:
    case.dest.mkdir()
    (case.dest / "ckpt.pt").write_text("mine")


def dest_is_a_file(case: Case) -> None:
    case.dest.write_text("a file, not a folder")


@pytest.mark.parametrize(
    ("plant", "dest", "code"),
    [
        pytest.param(dest_link_to_victim, "dest", 2, id="dest-link-to-victim"),
        pytest.param(dest_dangling_link, "dest", 2, id="dest-dangling-link"),
        pytest.param(dest_existing_file, "dest", 2, id="dest-existing-file"),
        pytest.param(dest_is_a_file, "dest", 2, id="dest-is-a-file"),
        pytest.param(dest_is_a_file, "dest/sub", 2, id="dest-below-a-file"),
    ],
)
def test_restore_never_writes_through_a_planted_link(
    case: Case, plant: Plant, dest: str, code: int
) -> None:
    plant(case)
    before = tree_digest(case.root)
    target = str(case.root / dest)
    result = run_cli(case, "restore", "--run-id", "faultrun", "ckpt.pt", "--dest", target)
    result.assert_refused(code)
    assert tree_digest(case.root) == before
    assert not (case.outside / "planted.pt").exists()


def test_restore_ignores_a_planted_partial_file_link(case: Case) -> None:
    """The look-alike: a link where an older version wrote its partial file is left alone and
    the restore goes ahead, writing only its own file."""
    case.dest.mkdir()
    (case.dest / ".ckpt.pt.partial").symlink_to(case.outside / "victim.txt")
    before = tree_digest(case.root, skip=[case.dest])
    result = run_cli(case, "restore", "--run-id", "faultrun", "ckpt.pt", "--dest", str(case.dest))
    assert result.code == 0, result
    assert tree_digest(case.root, skip=[case.dest]) == before
    restored = case.dest / "ckpt.pt"
    assert not restored.is_symlink() and restored.read_bytes() == case.copy.read_bytes()
    assert sorted(os.listdir(case.dest)) == [".ckpt.pt.partial", "ckpt.pt"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_restore_into_a_read_only_folder(case: Case) -> None:
    case.dest.mkdir()
    case.dest.chmod(0o555)
    try:
        result = run_cli(
            case, "restore", "--run-id", "faultrun", "ckpt.pt", "--dest", str(case.dest)
        )
    finally:
        case.dest.chmod(0o755)
    result.assert_refused(2)
    assert os.listdir(case.dest) == []
