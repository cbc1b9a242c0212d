"""Bounded work on hostile tensors and archives."""

from __future__ import annotations

import time
import zipfile
from pathlib import Path

import pytest
from faultkit import ROOT, Case, run_cli, run_python

torch = pytest.importorskip("torch")

FIXTURE = ROOT / "fixtures" / "checkpoints" / "linear-adamw.pt"


def test_expanded_tensor_digests_its_storage() -> None:
    from resumeguard.io.hashing import digest_tensors

    start = time.monotonic()
    zeros = digest_tensors([("m", torch.zeros(1).expand(10**12))])
    ones = digest_tensors([("m", torch.ones(1).expand(10**12))])
    assert time.monotonic() - start < 10  # reading 4 TB of view would take hours
    assert zeros != ones
    assert zeros == digest_tensors([("m", torch.zeros(1).expand(10**12))])
    # The look-alike: an ordinary tensor still digests its values, whatever its layout.
    t = torch.arange(6.0).reshape(2, 3)
    assert digest_tensors([("t", t.t().contiguous())]) == digest_tensors([("t", t.t().clone())])


SAVE = """
import torch, resumeguard
run = resumeguard.init(project="faults", id="expanded", config={})
state = {"step": 1, "optimizer": {"state": {0: {"exp_avg": torch.zeros(1).expand(10**11)}},
         "param_groups": [{"params": [0], "lr": 0.1}]}}
resumeguard.save_checkpoint(run, state, "expanded.pt")
run.finish()
"""


def test_save_checkpoint_with_an_expanded_tensor_finishes(case: Case) -> None:
    proc = run_python(case, SAVE, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = run_cli(case, "restore", "--run-id", "expanded", "expanded.pt", "--dest", "out")
    assert result.code == 0, result


def _bomb(path: Path, megabytes: int = 64) -> Path:
    """The fixture checkpoint with one more entry that deflates ``megabytes`` MiB of zeros."""
    with zipfile.ZipFile(FIXTURE) as src, zipfile.ZipFile(path, "w") as out:
        for info in src.infolist():
            out.writestr(info, src.read(info.filename))
        prefix = src.infolist()[0].filename.split("/")[0]
        entry = zipfile.ZipInfo(f"{prefix}/data/99")
        entry.compress_type = zipfile.ZIP_DEFLATED
        with out.open(entry, "w") as f:
            for _ in range(megabytes):
                f.write(bytes(1 << 20))
    return path


def test_archive_that_inflates_far_beyond_its_size_is_refused(tmp_path: Path) -> None:
    from resumeguard.checkpoint import load_verified
    from resumeguard.errors import CheckpointError

    bomb = _bomb(tmp_path / "bomb.pt")
    with pytest.raises(CheckpointError, match="inflate to") as info:
        load_verified(bomb, name="bomb.pt")
    assert info.value.exit_code == 1 and "\n" not in str(info.value)
    assert isinstance(load_verified(FIXTURE, name="fixture"), dict)  # the look-alike loads
