"""Shared test helpers: real git repositories and running the CLI in-process."""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import pytest
import torch

import resumeguard
from resumeguard.cli.main import main

SCRIPTS = Path(__file__).resolve().parent / "scripts"


def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd`` (identity pinned by conftest) and return stdout."""
    out = subprocess.run(
        ["git", "-c", "init.defaultBranch=main", "-c", "protocol.file.allow=always", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def make_repo(root: Path, files: dict[str, str]) -> Path:
    """A git repository at ``root`` with ``files`` committed."""
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q")
    write(root, files)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "initial")
    return root


def offline_project(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    files: dict[str, str] | None = None,
) -> Path:
    """A committed repository as the working directory, with W&B offline runs beside it."""
    repo = make_repo(tmp_path / "proj", files or {"train.py": "x = 1\n", ".gitignore": "*.pt\n"})
    monkeypatch.chdir(repo)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    (tmp_path / "wb").mkdir()
    return repo


def model_and_opt(
    hidden: int = 8, lr: float = 1e-3
) -> tuple[torch.nn.Sequential, torch.optim.AdamW]:
    """A seeded two-layer model and its AdamW optimizer."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, hidden), torch.nn.Linear(hidden, 1))
    return model, torch.optim.AdamW(model.parameters(), lr=lr)


def start(run_id: str | None, repo: Path, **kw: Any) -> Any:
    """``resumeguard.init`` in project "p", the config ``{"lr": 1e-3}`` unless one is given."""
    kw.setdefault("config", {"lr": 1e-3})
    return resumeguard.init(project="p", id=run_id, repo=repo, **kw)


def assert_tampered_copy_not_loaded(resumed: Any) -> None:
    """Restoring ``checkpoint.pt`` into a fresh model is refused (the copy does not match its
    record) and loads nothing; the run is finished."""
    model, opt = model_and_opt()
    before = model[0].weight.detach().clone()
    with pytest.raises(resumeguard.CheckpointError, match="does not match its record"):
        resumeguard.restore_checkpoint(resumed, "checkpoint.pt", model=model, optimizer=opt)
    assert torch.equal(model[0].weight, before), "nothing was loaded"
    resumed.finish()


def assert_older_checkpoint_refused(resumed: Any, late_step: int) -> None:
    """Restoring ``checkpoint.pt`` is blocked by run.step, naming the newer ``late.pt``, which
    restores at ``late_step``; the run is finished."""
    with pytest.raises(resumeguard.ResumeBlocked) as info:
        resumeguard.restore_checkpoint(resumed, "checkpoint.pt")
    [finding] = info.value.report.blocking
    assert finding.path == "run.step" and "late.pt" in finding.hint
    assert resumeguard.restore_checkpoint(resumed, "late.pt")["step"] == late_step
    resumed.finish()


def write(root: Path, files: dict[str, str]) -> None:
    """Write files below ``root``, making folders."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def commit_all(root: Path, message: str = "change") -> None:
    """Stage everything and commit."""
    git(root, "add", "-A")
    git(root, "commit", "-qm", message)


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the CLI in-process: exit code, stdout, stderr."""
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def cli_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    """Run the CLI with --json and parse stdout as one JSON object."""
    code, out, _ = cli(capsys, *args, "--json")
    return code, json.loads(out)


def rewrite_record(
    wandb_dir: Path, run_id: str, edit: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    """Rewrite offline run ``run_id``'s record with ``edit`` (in place), as the resumeguard
    that wrote it would have: the run config names the rewritten record."""
    from resumeguard.io.hashing import digest_json
    from resumeguard.stores.interface import RunRef
    from resumeguard.stores.layout import CONFIG_KEY
    from resumeguard.stores.offline import OfflineStore

    store, ref = OfflineStore(wandb_dir), RunRef(run_id)
    stored = store.fetch(ref)
    record = copy.deepcopy(stored.record)
    assert record is not None
    edit(record)
    compact = {
        **stored.config[CONFIG_KEY],
        "schema": record["schema"],
        "record_digest": digest_json(record),
    }
    compact.pop("previous_record_digest", None)
    store.write_record(ref, record, compact)
    return record


def as_recorded_by_schema_1(
    wandb_dir: Path, run_id: str, keep: Collection[str] = ()
) -> dict[str, Any]:
    """Rewrite offline run ``run_id``'s record as a schema 1 resumeguard wrote it: no
    ``facts``, and of the config keys a framework callback collected only ``keep`` (its
    recorder did not collect the others)."""

    def edit(record: dict[str, Any]) -> None:
        fp = record["fingerprint"]
        facts = set(fp.pop("facts"))
        fp["config"] = {k: v for k, v in fp["config"].items() if k not in facts or k in keep}
        fp["schema"] = record["schema"] = 1

    return rewrite_record(wandb_dir, run_id, edit)
