"""The checkpoint verify path on real files: the recorded bytes load, and anything else (missing,
unreadable, truncated, longer, other bytes of the same size, a rewrite while it is read,
pickled objects) is refused with a line that names the checkpoint and what is wrong."""

from __future__ import annotations

import io
import os
import re
import zipfile
from pathlib import Path
from typing import BinaryIO

import pytest
import torch

from resumeguard.checkpoint.files import load_verified, load_weights, read_verified, verify_file
from resumeguard.errors import CheckpointError
from resumeguard.io.hashing import digest_file
from resumeguard.records.run import CheckpointRecord


def saved(path: Path, state: object) -> CheckpointRecord:
    """``torch.save`` ``state`` to ``path`` and record its bytes as a save does."""
    torch.save(state, path)
    digest, size = digest_file(path)
    copy = f"resumeguard/checkpoints/{path.name}"
    return CheckpointRecord(file=copy, digest=digest, size=size, step=1)


def read_all(f: BinaryIO) -> bytes:
    return f.read()


@pytest.fixture
def ckpt(tmp_path: Path) -> tuple[Path, CheckpointRecord]:
    path = tmp_path / "model.pt"
    return path, saved(path, {"w": torch.arange(6.0)})


def test_the_recorded_bytes_verify_and_load(ckpt: tuple[Path, CheckpointRecord]) -> None:
    path, record = ckpt
    verify_file(path, record, name="last")
    assert read_verified(path, record, name="last", load=read_all) == path.read_bytes()
    assert read_verified(path, record, name="last", load=None) is None


def test_a_missing_or_unreadable_copy_is_named(
    ckpt: tuple[Path, CheckpointRecord], tmp_path: Path
) -> None:
    _, record = ckpt
    gone = tmp_path / "gone.pt"
    with pytest.raises(CheckpointError) as missing:
        verify_file(gone, record, name="last")
    assert str(missing.value) == f"checkpoint last is missing: {gone} does not exist"
    with pytest.raises(CheckpointError, match=r"^checkpoint last cannot be read: .*Is a directory"):
        verify_file(tmp_path, record, name="last")


@pytest.mark.parametrize(
    ("cut", "what", "before_load"),
    [(-1, "truncated", True), (+1, "longer than recorded", True), (0, "", False)],
    ids=["truncated", "longer", "same-size"],
)
def test_only_the_recorded_size_reaches_the_digest(
    ckpt: tuple[Path, CheckpointRecord], cut: int, what: str, before_load: bool
) -> None:
    """A shorter or longer copy is refused by its size before anything is loaded; the same
    size goes on to the digest."""
    path, record = ckpt
    data = path.read_bytes()
    path.write_bytes(data[:cut] if cut < 0 else data + b"\0" * cut)
    loads: list[int] = []

    def load(f: BinaryIO) -> bytes:
        loads.append(1)
        return f.read()

    if not what:
        assert read_verified(path, record, name="last", load=load) == data
        assert loads == [1]
        return
    expected = (
        f"checkpoint last is {what}: {len(data) + cut} of {len(data)} bytes; nothing was loaded "
        "(restore an intact copy, or save a new checkpoint)"
    )
    with pytest.raises(CheckpointError) as refused:
        read_verified(path, record, name="last", load=load)
    assert str(refused.value) == expected
    assert bool(loads) is not before_load


def test_other_bytes_of_the_same_size_are_refused_with_both_digests(
    ckpt: tuple[Path, CheckpointRecord],
) -> None:
    path, record = ckpt
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    digest = digest_file(path)[0]
    with pytest.raises(CheckpointError) as refused:
        read_verified(path, record, name="last", load=read_all)
    assert str(refused.value) == (
        f"checkpoint last does not match its record (digest {digest[:19]}..., recorded "
        f"{record.digest[:19]}...): it was changed or corrupted after it was saved; "
        "nothing was loaded"
    )
    with pytest.raises(CheckpointError, match=r"^checkpoint best does not match its record"):
        verify_file(path, record, name="best")


def test_a_same_size_rewrite_during_the_read_is_refused(
    ckpt: tuple[Path, CheckpointRecord],
) -> None:
    """The same bytes written again while they are read: what was digested may not be what
    was loaded, so the read is refused; a load that only reads goes ahead."""
    path, record = ckpt
    data = path.read_bytes()

    def rewrite(f: BinaryIO) -> bytes:
        loaded = f.read()
        stat = os.stat(path)
        path.write_bytes(data)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
        return loaded

    with pytest.raises(CheckpointError) as refused:
        read_verified(path, record, name="last", load=rewrite)
    assert str(refused.value) == f"checkpoint last changed while it was read ({path}); try again"
    assert read_verified(path, record, name="last", load=read_all) == data


def test_a_failed_load_is_raised_only_when_the_bytes_are_the_recorded_ones(
    ckpt: tuple[Path, CheckpointRecord],
) -> None:
    """Damage explains a failed load (the digest's error); intact bytes that fail to load
    raise the load's own error."""
    path, record = ckpt

    def fails(f: BinaryIO) -> bytes:
        f.read(1)
        raise ValueError("the loader's own error")

    with pytest.raises(ValueError, match="the loader's own error"):
        read_verified(path, record, name="last", load=fails)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match its record"):
        read_verified(path, record, name="last", load=fails)


def test_weights_load_on_the_cpu_and_pickled_objects_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    saved(path, {"w": torch.arange(3.0)})
    with open(path, "rb") as f:
        state = load_weights(f, name="last")
    assert torch.equal(state["w"], torch.arange(3.0)) and state["w"].device.type == "cpu"
    loaded = load_verified(path, name="last")
    assert torch.equal(loaded["w"], torch.arange(3.0)) and loaded["w"].device.type == "cpu"
    assert load_verified(path, name="last", map_location="meta")["w"].device.type == "meta"

    evil = tmp_path / "evil.pt"
    saved(evil, {"obj": io.StringIO("pickled")})
    with pytest.raises(CheckpointError) as refused:
        load_verified(evil, name="evil")
    said = re.fullmatch(
        r"refusing to load checkpoint evil: it holds pickled objects other than tensors and "
        r"plain containers \((.*)\); save plain state dicts",
        str(refused.value),
    )
    assert said is not None, refused.value
    # torch's reason, cut to its first line's first 160 characters
    cause = refused.value.__cause__
    assert said[1] == str(cause).splitlines()[0][:160]
    assert said[1].startswith("Weights only load failed")

    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("bomb/data.pkl", b"\0" * (8 << 20))  # inflates far beyond its size
    with pytest.raises(CheckpointError, match=r"^refusing to load checkpoint bomb: its 1 archive"):
        load_verified(bomb, name="bomb")

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # a torn archive
    with pytest.raises(CheckpointError, match=r"^checkpoint garbage cannot be read by torch: "):
        load_verified(garbage, name="garbage")
