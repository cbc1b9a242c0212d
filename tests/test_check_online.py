"""`resumeguard check` end to end through the ONLINE store, against the in-memory stand-in of
wandb's public API (tests/wandb_api_standin.py; no W&B server is involved)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import cli_json, make_repo, write
from wandb_api_standin import StandinServer

from resumeguard.fingerprint import take
from resumeguard.runrecord import new_record
from resumeguard.stores import interface
from resumeguard.stores.online import OnlineStore


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, StandinServer]:
    repo = make_repo(tmp_path / "proj", {"train.py": "HIDDEN = 8\n"})
    record = new_record(take(repo=repo, config={"lr": 0.1}))
    server = StandinServer()
    server.add_run(
        "on1",
        config={"lr": 0.1, "resumeguard": record.compact()},
        summary={"_step": 40},
        files={"resumeguard.json": json.dumps(record.to_json()).encode()},
    )
    store = OnlineStore(api_factory=server.api, sleep=lambda _: None, retries=2)
    monkeypatch.setattr(interface, "open_store", lambda **_: store)
    return repo, server


def test_online_check_passes_then_blocks_on_a_change(capsys, setup) -> None:
    repo, server = setup
    code, report = cli_json(capsys, "check", "--run-id", "me/p/on1", "--repo", str(repo))
    assert (code, report["verdict"]) == (0, "ok")
    assert server.count("run me/p/on1") == 1, "one run fetch per check"
    write(repo, {"train.py": "HIDDEN = 16\n"})
    code, report = cli_json(capsys, "check", "--run-id", "me/p/on1", "--repo", str(repo))
    assert code == 1
    assert [f["path"] for f in report["findings"]] == ["code.files.train.py"]


def test_online_store_unreachable_exits_3(capsys, setup) -> None:
    repo, server = setup
    server.fail("run", 503, 503, 503)
    code, report = cli_json(capsys, "check", "--run-id", "me/p/on1", "--repo", str(repo))
    assert (code, report["verdict"]) == (3, "unverified")
    assert "after 3 tries" in report["reason"]
