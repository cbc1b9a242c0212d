"""The Transformers callback online: WandbCallback's run on the W&B-protocol test server through
the real wandb client, checked before the Trainer touches it on a resume."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("accelerate")

import wandb
from helpers import make_repo, write
from test_transformers import FILES, preempted, train, trainer_for
from wandb_server import ENTITY, WandbServer

import resumeguard
from resumeguard.stores.layout import RECORD_FILE


@pytest.fixture
def run_id(online: WandbServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    repo = make_repo(tmp_path / "proj", FILES)
    monkeypatch.chdir(repo)
    run_id = f"hf-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("WANDB_PROJECT", "p")
    monkeypatch.setenv("WANDB_RUN_ID", run_id)  # what a requeued job sets
    monkeypatch.setenv("WANDB_RESUME", "allow")
    return run_id


def record_on(server: WandbServer, run_id: str) -> dict:
    return json.loads(server.store.get(f"{ENTITY}/p/{run_id}").files[RECORD_FILE].data)


def test_a_preempted_run_resumes_verified_online(online: WandbServer, run_id: str) -> None:
    project = Path.cwd()
    upload = {"storage": "latest+upload"}
    preempted(project, guard=upload)
    checkpoints = record_on(online, run_id)["checkpoints"]
    assert {n.rpartition("/")[0] for n in checkpoints} == {"out/checkpoint-2"}
    stored = online.store.get(f"{ENTITY}/p/{run_id}")
    assert all(entry["file"] in stored.files for entry in checkpoints.values())
    trainer, counter = train(project, resume=True, guard=upload)
    assert counter.steps == 2 and trainer.state.global_step == 4
    [resume] = record_on(online, run_id)["resumes"]
    assert resume["verdict"] == "ok"


def test_changed_code_blocks_before_the_run_is_touched_online(
    online: WandbServer, run_id: str
) -> None:
    project = Path.cwd()
    preempted(project)
    write(project, {"train.py": "HIDDEN = 16\n"})
    online.heal()
    with pytest.raises(resumeguard.ResumeBlocked) as info:
        trainer_for(project)
    assert [f.path for f in info.value.report.blocking] == ["code.files.train.py"]
    assert wandb.run is None
    assert not {"UpsertBucket", "file_stream", "upload"} & set(online.operations())
