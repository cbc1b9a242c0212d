"""The Lightning callback online: WandbLogger's run on the W&B-protocol test server through the
real wandb client, the record and checkpoint copies kept there, a resume checked against them."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

pytest.importorskip("lightning.pytorch")

from helpers import make_repo, write
from test_lightning import FILES, Tiny, ckpt_of, fit
from wandb_server import ENTITY, WandbServer

import resumeguard
from resumeguard.io.hashing import digest_file
from resumeguard.stores.layout import RECORD_FILE


@pytest.fixture
def project(online: WandbServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    repo = make_repo(tmp_path / "proj", FILES)
    monkeypatch.chdir(repo)
    return repo


def record_on(server: WandbServer, run_id: str) -> dict:
    return json.loads(server.store.get(f"{ENTITY}/p/{run_id}").files[RECORD_FILE].data)


def test_fit_records_and_a_resume_is_verified_online(online: WandbServer, project: Path) -> None:
    run_id = f"lt-{uuid.uuid4().hex[:8]}"
    fit(project, run_id, epochs=1, storage="latest+upload")
    ckpt = ckpt_of(project, run_id, "epoch=0-step=2.ckpt")
    entry = record_on(online, run_id)["checkpoints"][f"p/{run_id}/checkpoints/epoch=0-step=2.ckpt"]
    assert entry["digest"] == digest_file(ckpt)[0]
    stored = online.store.get(f"{ENTITY}/p/{run_id}")
    assert stored.files[entry["file"]].data == ckpt.read_bytes(), "the run's copy is on the server"

    model = fit(project, run_id, epochs=2, ckpt_path="last", storage="latest+upload")
    assert model.steps_run == 2, "resumed at step 2: only epoch 1 was trained"
    [resume] = record_on(online, run_id)["resumes"]
    assert resume["verdict"] == "ok"


def test_changed_code_blocks_before_any_step_online(online: WandbServer, project: Path) -> None:
    run_id = f"lt-{uuid.uuid4().hex[:8]}"
    fit(project, run_id, epochs=1)
    before = record_on(online, run_id)
    write(project, {"train.py": "HIDDEN = 16\n"})
    model = Tiny()
    with pytest.raises(resumeguard.ResumeBlocked) as info:
        fit(project, run_id, epochs=2, ckpt_path="last", model=model)
    assert [f.path for f in info.value.report.blocking] == ["code.files.train.py"]
    assert model.steps_run == 0
    assert record_on(online, run_id) == before, "the record only grows, and not on a block"


def test_the_cli_leaves_lightnings_own_step_alone_online(
    capsys: pytest.CaptureFixture[str], online: WandbServer, project: Path
) -> None:
    """Online, the last logged step is the server's history step, which counts log calls: a
    Lightning run that logs more often than it steps is not behind it, to ``check`` as to the
    callback (the stale flat-script checkpoint is the online flow's test)."""
    from helpers import cli_json
    from test_lightning import Logging

    run_id = f"lt-{uuid.uuid4().hex[:8]}"
    fit(project, run_id, epochs=2, model=Logging())
    saved = max(c["step"] for c in record_on(online, run_id)["checkpoints"].values())
    last = online.store.get(f"{ENTITY}/p/{run_id}").last_step
    assert saved < last, "W&B's step is ahead of Lightning's global step"
    policy = project.parent / "no-gap.toml"
    policy.write_text('block = ["run.step"]\n')
    code, report = cli_json(
        capsys, "check", "--run-id", f"{ENTITY}/p/{run_id}", "--policy", str(policy)
    )
    assert code == 0 and "run.step" not in [f["path"] for f in report["findings"]], report
