"""resumeguard.api.dcp: torch.distributed.checkpoint's save and load with every file digested as
written and verified before it is read (one process here; test_distributed runs 2 ranks)."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed.checkpoint as dcp
from helpers import cli_json, model_and_opt, offline_project, start

import resumeguard
import resumeguard.api.dcp
from resumeguard.records.run import CheckpointRecord, DirFile


def saved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, torch.nn.Module]:
    """A run that saved its model to the sharded checkpoint "ck" (step 7), and the model."""
    repo = offline_project(tmp_path, monkeypatch, {"train.py": "x = 1\n", ".gitignore": "ck/\n"})
    run = start("dcp1", repo)
    model, _ = model_and_opt()
    resumeguard.api.dcp.save(run, {"model": model.state_dict()}, "ck", step=7)
    return run, model


def fresh_state(hidden: int = 8, dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    torch.manual_seed(5)
    other = torch.nn.Sequential(torch.nn.Linear(4, hidden), torch.nn.Linear(hidden, 1))
    return {"model": other.to(dtype).state_dict()}


def test_the_record_lists_every_file_and_the_load_matches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run, model = saved(tmp_path, monkeypatch)
    entry = json.loads(Path(run.dir, "resumeguard.json").read_text())["checkpoints"]["ck"]
    names = [f["name"] for f in entry["files"]]
    assert names == [".metadata", "__0_0.distcp"]
    for f in entry["files"]:
        assert f["size"] == (Path("ck") / f["name"]).stat().st_size and f["rank"] == 0
    assert entry["step"] == 7 and entry["size"] == sum(f["size"] for f in entry["files"])
    state = fresh_state()
    resumeguard.api.dcp.load(run, state, "ck")
    assert torch.equal(state["model"]["0.weight"], model.state_dict()["0.weight"])

    resumeguard.api.dcp.save(run, {"model": model.state_dict()}, "ck", step=8)
    entry = json.loads(Path(run.dir, "resumeguard.json").read_text())["checkpoints"]["ck"]
    assert entry["previous"]["files"] == [] and entry["previous"]["step"] == 7, "one digest"
    run.finish()


def flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        (lambda ck: flip(ck / "__0_0.distcp"), "__0_0.distcp (written by rank 0) does not match"),
        (
            lambda ck: (ck / "__0_0.distcp").write_bytes(b"x"),
            "__0_0.distcp (written by rank 0) has 1",
        ),
        (lambda ck: (ck / "__0_0.distcp").unlink(), "__0_0.distcp (written by rank 0) is missing"),
        (lambda ck: flip(ck / ".metadata"), ".metadata (written by rank 0) does not match"),
    ],
    ids=["flipped", "truncated", "missing", "metadata"],
)
def test_a_damaged_file_is_refused_by_name_and_nothing_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: Any, said: str
) -> None:
    run, _ = saved(tmp_path, monkeypatch)
    damage(Path("ck"))
    state = fresh_state()
    before = state["model"]["0.weight"].clone()
    with pytest.raises(resumeguard.CheckpointError, match=re.escape(said)):
        resumeguard.api.dcp.load(run, state, "ck")
    assert torch.equal(state["model"]["0.weight"], before), "nothing was loaded"
    run.finish()


class _Planted:
    def __reduce__(self) -> tuple[Any, ...]:
        return (Path("planted").write_text, ("ran",))


def test_a_metadata_pickle_of_unknown_origin_is_never_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run, _ = saved(tmp_path, monkeypatch)
    Path("ck/.metadata").write_bytes(pickle.dumps(_Planted()))
    with pytest.raises(resumeguard.CheckpointError, match=r"\.metadata"):
        resumeguard.api.dcp.load(run, fresh_state(), "ck")
    assert not Path("planted").exists(), "the planted pickle was not unpickled"

    plain = Path("plain")
    dcp.save({"model": fresh_state()["model"]}, checkpoint_id=plain)
    with pytest.raises(resumeguard.CheckpointError, match="has no resumeguard record"):
        resumeguard.api.dcp.load(run, fresh_state(), plain)
    run.finish()


@pytest.mark.parametrize(
    ("state", "path"),
    [
        (lambda: fresh_state(hidden=16), "checkpoint.ck.tensors.model.0.weight"),
        (lambda: fresh_state(dtype=torch.float64), "checkpoint.ck.tensors.model.0.weight"),
        (lambda: {**fresh_state(), "extra": torch.zeros(2)}, "checkpoint.ck.tensors.extra"),
    ],
    ids=["shape", "dtype", "absent"],
)
def test_a_state_dict_that_does_not_fit_is_refused_before_loading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, state: Any, path: str
) -> None:
    """DCP would convert a dtype silently, and find a shape only after reading the tensor."""
    run, _ = saved(tmp_path, monkeypatch)
    target = state()
    before = target["model"]["0.weight"].clone()
    with pytest.raises(resumeguard.CheckpointError, match="does not fit") as info:
        resumeguard.api.dcp.load(run, target, "ck")
    assert info.value.report is not None
    assert path in [j.finding.path for j in info.value.report.findings]
    assert torch.equal(target["model"]["0.weight"], before)
    resumeguard.api.dcp.load(run, fresh_state(), "ck")  # the harmless look-alike: it fits
    run.finish()


def test_a_listing_of_thousands_of_ranks_keeps_the_record_small() -> None:
    files = tuple(
        DirFile(name=f"__{r}_0.distcp", digest="blake3:" + "ab" * 32, size=1 << 30, rank=r)
        for r in range(8192)
    )
    previous = CheckpointRecord(file="", digest="blake3:" + "cd" * 32, size=8192 << 30)
    entry = CheckpointRecord(file="", digest="blake3:" + "ef" * 32, size=8192 << 30, files=files)
    entry = CheckpointRecord.from_json({**entry.to_json(), "previous": previous.to_json()})
    assert len(json.dumps(entry.to_json())) < 2 << 20, "far below the 16 MiB read limit"


def test_an_async_save_is_recorded_once_its_files_are_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torchtitan's default: the future completes after the files are digested and recorded."""
    repo = offline_project(tmp_path, monkeypatch, {"train.py": "x = 1\n", ".gitignore": "ck/\n"})
    run = start("dcp2", repo)
    model, _ = model_and_opt()
    future = resumeguard.api.dcp.async_save(run, {"model": model.state_dict()}, "ck", step=3)
    entry = future.result(timeout=60)
    assert entry is not None and [f.name for f in entry.files] == [".metadata", "__0_0.distcp"]
    state = fresh_state()
    resumeguard.api.dcp.load(run, state, "ck")
    assert torch.equal(state["model"]["0.weight"], model.state_dict()["0.weight"])
    run.finish()


def test_check_verifies_the_files_it_reaches_and_names_those_it_cannot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run, _ = saved(tmp_path, monkeypatch)
    run.finish()
    code, report = cli_json(capsys, "check", "--run-id", "dcp1", "--offline")
    assert code == 0, report
    flip(Path("ck/__0_0.distcp"))
    code, report = cli_json(capsys, "check", "--run-id", "dcp1", "--offline")
    assert code == 1
    assert [f["path"] for f in report["findings"] if f["severity"] == "block"] == [
        "checkpoint.ck/__0_0.distcp.digest"
    ]
    Path("ck/__0_0.distcp").unlink()  # as on another node's disk
    code, report = cli_json(capsys, "check", "--run-id", "dcp1", "--offline")
    assert code == 0, report
    assert any(
        "1 of 2 files not reachable from here (__0_0.distcp" in n for n in report["unchecked"]
    )
