"""The W&B-protocol test server, driven by the real wandb client (wandb-core and ``wandb.Api``)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import wandb
from wandb_server import ENTITY, WandbServer


def new_id(prefix: str) -> str:
    """A run id no other test of the session uses (the server is shared)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_init_log_save_finish_are_stored(online: WandbServer, tmp_path: Path) -> None:
    run_id = new_id("srv")
    run = wandb.init(project="p", id=run_id, config={"lr": 0.1, "nested": {"a": 1}})
    for i in range(3):
        run.log({"loss": float(i)})
    (tmp_path / "ck.pt").write_bytes(b"x" * 1000)
    wandb.save(str(tmp_path / "ck.pt"), base_path=str(tmp_path), policy="now")
    run.finish()
    stored = online.store.get(f"{ENTITY}/p/{run_id}")
    assert stored.user_config == {"lr": 0.1, "nested": {"a": 1}}
    assert [row["_step"] for row in stored.history_rows()] == [0, 1, 2]
    assert stored.summary["loss"] == 2.0 and stored.summary["_step"] == 2
    assert stored.files["ck.pt"].data == b"x" * 1000
    assert stored.state == "finished"
    assert {"UpsertBucket", "file_stream", "CreateRunFiles", "upload"} <= set(online.operations())


def test_public_api_reads_what_init_wrote(online: WandbServer, tmp_path: Path) -> None:
    run_id = new_id("api")
    run = wandb.init(project="p", id=run_id, config={"lr": 0.1})
    run.log({"loss": 1.0})
    run.log({"loss": 0.5})
    (tmp_path / "blob.bin").write_bytes(b"\x00\x01" * 300)
    wandb.save(str(tmp_path / "blob.bin"), base_path=str(tmp_path), policy="now")
    run.finish()

    api = wandb.Api(timeout=5)
    got = api.run(f"{ENTITY}/p/{run_id}")
    assert got.config == {"lr": 0.1}
    assert got.summary_metrics["_step"] == 1 and got.state == "finished"
    assert got.lastHistoryStep == 1
    assert [row["loss"] for row in got.history(pandas=False)] == [1.0, 0.5]
    handle = got.file("blob.bin")
    assert handle.size == 600
    handle.download(root=str(tmp_path / "dl"), replace=True).close()
    assert (tmp_path / "dl" / "blob.bin").read_bytes() == b"\x00\x01" * 300
    assert got.file("absent.bin").md5 == "0", "W&B's placeholder for a file the run lacks"

    got.config["added"] = 2
    got.update()
    (tmp_path / "extra.json").write_text("{}")
    got.upload_file(str(tmp_path / "extra.json"), root=str(tmp_path))
    stored = online.store.get(f"{ENTITY}/p/{run_id}")
    assert stored.user_config == {"lr": 0.1, "added": 2}
    assert stored.files["extra.json"].data == b"{}"


def test_resume_continues_the_stored_run(online: WandbServer) -> None:
    run_id = new_id("res")
    run = wandb.init(project="p", id=run_id, config={"lr": 0.1})
    run.log({"loss": 1.0})
    run.log({"loss": 0.5})
    run.finish()
    run = wandb.init(project="p", id=run_id, resume="must")
    assert run.config["lr"] == 0.1
    run.log({"loss": 0.25})
    run.finish()
    stored = online.store.get(f"{ENTITY}/p/{run_id}")
    assert [row["_step"] for row in stored.history_rows()] == [0, 1, 2]
    assert "RunResumeStatus" in online.operations()


def test_must_resume_of_a_missing_run_and_a_missing_run_read(online: WandbServer) -> None:
    with pytest.raises(wandb.errors.UsageError, match="does not exist"):
        wandb.init(project="p", id=new_id("none"), resume="must")
    with pytest.raises(wandb.errors.CommError, match="Could not find run"):
        wandb.Api(timeout=5).run(f"{ENTITY}/p/{new_id('none')}")


def test_a_wrong_key_is_refused(online: WandbServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "b" * 40)
    with pytest.raises(wandb.errors.AuthenticationError):
        wandb.Api(timeout=5)
