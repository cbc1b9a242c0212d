"""Accelerate adopted in one line, in process (``attach(accelerator)``, no ``resumeguard run``):
``init_trackers`` checks the resume, ``save_state`` folders are recorded, ``load_state``
verifies every file before Accelerate reads it. Each refusal beside its harmless look-alike."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from helpers import commit_all, make_repo
from wandb_server import ENTITY, WandbServer

from resumeguard.stores.layout import RECORD_FILE

pytest.importorskip("accelerate")

STOCK = Path(__file__).resolve().parent / "scripts" / "unmodified" / "accel.py"
ATTACH = 'accelerator = Accelerator(log_with="wandb", cpu=True)\n'


def attached() -> str:
    """The stock Accelerate script adopting resumeguard in one line, as README shows."""
    script = STOCK.read_text()
    assert ATTACH in script
    return script.replace(
        ATTACH,
        ATTACH + "import resumeguard.integrations.accelerate\n"
        "resumeguard.integrations.accelerate.attach(accelerator)\n",
    )


RUN = ("--max_train_steps", "6")
RESUME = (*RUN, "--resume_from_checkpoint", "out/step_4")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    repo = make_repo(tmp_path / "proj", {".gitignore": "out/\nwandb/\n"})
    (repo / "train.py").write_text(attached())
    commit_all(repo, "script")
    return repo


def train(repo: Path, *args: str, run_id: str = "att1", online: bool = False) -> tuple[int, str]:
    env = {
        **os.environ,
        "WANDB_SILENT": "true",
        "WANDB_RUN_ID": run_id,
        "WANDB_RESUME": "allow",
    }
    if not online:  # online: the test server's client environment, set by the fixture
        env.update(WANDB_MODE="offline", WANDB_DIR=str(repo))
    env.pop("PYTHONPATH", None)
    env.pop("RESUMEGUARD_REPORT", None)
    done = subprocess.run(
        [sys.executable, "train.py", *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    return done.returncode, done.stdout + done.stderr


def test_an_attached_accelerator_records_and_an_unchanged_resume_goes_ahead(
    project: Path,
) -> None:
    code, out = train(project, *RUN)
    assert code == 0, out
    assert (project / "out" / "step_4" / ".model.safetensors.resumeguard.json").is_file()
    code, out = train(project, *RESUME)
    assert code == 0 and "step 6" in out, out
    assert "out/step_4 (4 files) matches its record" in out, out


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_damaged_folder_file_is_refused_before_accelerate_reads_it(
    project: Path, damage: str
) -> None:
    code, out = train(project, *RUN)
    assert code == 0, out
    path = (
        project / "out" / "step_4" / ("model.safetensors" if damage == "flip" else "optimizer.bin")
    )
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 1
    else:
        del data[len(data) // 2 :]
    path.write_bytes(bytes(data))
    code, out = train(project, *RESUME)
    assert code == 1 and path.name in out and "step 5" not in out, out
    assert "CheckpointError" in out, out


def test_a_changed_model_or_code_is_refused_and_a_comment_goes_ahead(project: Path) -> None:
    code, out = train(project, *RUN)
    assert code == 0, out
    code, out = train(project, *RESUME, "--width", "16")  # the weights do not fit
    assert code == 1 and "step 5" not in out, out
    script = project / "train.py"
    original = script.read_text()
    script.write_text(original + "# a note about the learning rate\n")
    commit_all(project, "comment")
    code, out = train(project, *RESUME)
    assert code == 0 and "step 6" in out, out
    script.write_text(original.replace("torch.ones(2, 4)", "torch.ones(2, 4) * 2"))
    commit_all(project, "loss")
    code, out = train(project, *RESUME)
    assert code == 1 and "code.files.train.py" in out and "step 5" not in out, out


def test_an_attached_accelerator_online_keeps_its_record_on_the_server(
    online: WandbServer, project: Path
) -> None:
    run_id = f"att-{uuid.uuid4().hex[:8]}"
    code, out = train(project, *RUN, run_id=run_id, online=True)
    assert code == 0, out
    stored = online.store.get(f"{ENTITY}/clm_no_trainer/{run_id}")
    record = json.loads(stored.files[RECORD_FILE].data)
    assert any(name.startswith("out/step_4") for name in record["checkpoints"]), record
    code, out = train(project, *RESUME, run_id=run_id, online=True)
    assert code == 0 and "step 6" in out and "matches its record" in out, out
    weights = project / "out" / "step_4" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 1
    weights.write_bytes(bytes(data))
    code, out = train(project, *RESUME, run_id=run_id, online=True)
    assert code == 1 and "model.safetensors" in out and "step 5" not in out, out
