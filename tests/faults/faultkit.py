"""The fault suite's shared parts: one recorded offline run, copied per case, and the CLI run as
a subprocess whose exit code, stderr and effect on the tree each case checks."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
RUN_ID = "faultrun"
CHECKPOINT = "ckpt.pt"


@dataclasses.dataclass(frozen=True)
class Case:
    """One copy of the recorded run, with the places attacks aim at."""

    root: Path
    """Holds everything below; nothing outside it is touched."""

    @property
    def repo(self) -> Path:
        """The training code's git repository (the CLI runs here)."""
        return self.root / "repo"

    @property
    def wandb_dir(self) -> Path:
        """WANDB_DIR."""
        return self.root / "wb"

    @property
    def run_dir(self) -> Path:
        """The run's offline directory."""
        return next((self.wandb_dir / "wandb").glob(f"offline-run-*-{RUN_ID}"))

    @property
    def files(self) -> Path:
        """The run's files directory."""
        return self.run_dir / "files"

    @property
    def record(self) -> Path:
        """``resumeguard.json``."""
        return self.files / "resumeguard.json"

    @property
    def sidecar(self) -> Path:
        """``resumeguard-config.json``."""
        return self.files / "resumeguard-config.json"

    @property
    def state(self) -> Path:
        """``resumeguard-state.json``."""
        return self.files / "resumeguard-state.json"

    @property
    def copy(self) -> Path:
        """The run's copy of the checkpoint (a run file: the run is saved with storage
        "latest+upload"), as its record names it."""
        data = json.loads(self.record.read_text())
        return self.files / data["checkpoints"][CHECKPOINT]["file"]

    @property
    def outside(self) -> Path:
        """A folder outside the run and the destination, holding a victim file."""
        return self.root / "outside"

    @property
    def dest(self) -> Path:
        """Where ``restore`` writes."""
        return self.root / "dest"

    def edit_record(self, change: Callable[[dict[str, Any]], None]) -> None:
        """Change the parsed record in place and write it back (the config's digest is kept)."""
        data = json.loads(self.record.read_text())
        change(data)
        self.record.write_text(json.dumps(data))

    def edit_json(self, path: Path, change: Callable[[dict[str, Any]], None]) -> None:
        """Change a JSON file in place."""
        data = json.loads(path.read_text())
        change(data)
        path.write_text(json.dumps(data))

    def replace_with_link(self, path: Path, target: str | Path) -> None:
        """Replace ``path`` by a symbolic link to ``target``."""
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
        path.symlink_to(target)


@dataclasses.dataclass(frozen=True)
class Result:
    """A finished CLI process."""

    code: int
    out: str
    err: str
    seconds: float

    def assert_refused(self, code: int) -> None:
        """Exit ``code`` with one line on stderr (none for 0) and no traceback."""
        lines = [line for line in self.err.splitlines() if line.strip()]
        assert self.code == code, f"exit {self.code}, wanted {code}; stderr: {self.err[-2000:]}"
        assert "Traceback" not in self.err, self.err
        assert len(lines) == (code != 0), f"wanted one line on stderr, got: {self.err}"


def base_env(case: Case, **extra: str) -> dict[str, str]:
    """The environment every case runs in: offline, this checkout's resumeguard first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "RESUMEGUARD_"))}
    env.update(
        PYTHONPATH=str(ROOT),
        WANDB_MODE="offline",
        WANDB_SILENT="true",
        WANDB_DIR=str(case.wandb_dir),
        HOME=str(case.root / "home"),
        GIT_CONFIG_NOSYSTEM="1",
    )
    env.update(extra)
    return env


def run_cli(case: Case, *args: str, timeout: float = 120, **env: str) -> Result:
    """``python -m resumeguard ARGS`` in the case's repository."""
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "resumeguard", *args],
        cwd=case.repo,
        env=base_env(case, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)


def run_python(case: Case, code: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """``python -c CODE`` in the case's repository and environment."""
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=case.repo,
        env=base_env(case),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def tree_digest(root: Path, skip: Iterable[Path] = ()) -> dict[str, str]:
    """Path -> what it is (file digest, link target, folder) for everything below ``root``,
    links not followed, ``skip``, ``home/`` (W&B's own logs) and git's index (``git diff``
    refreshes its stat cache, GIT_OPTIONAL_LOCKS or not) left out: to show that nothing else
    changed."""
    skipped = {p.absolute() for p in [*skip, root / "home", root / "repo" / ".git" / "index"]}
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        if any(path == s or s in path.parents for s in skipped):
            continue
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            out[rel] = "-> " + os.readlink(path)
        elif path.is_dir():
            out[rel] = "dir"
        elif path.is_file():
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            out[rel] = "special"
    return out


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The recorded run every case copies (made once per test session and worker)."""
    root = tmp_path_factory.mktemp("fault-template")
    case = Case(root)
    env = base_env(case, GIT_AUTHOR_NAME="T", GIT_AUTHOR_EMAIL="t@example.com")
    env.update(GIT_COMMITTER_NAME="T", GIT_COMMITTER_EMAIL="t@example.com")
    subprocess.run(
        [sys.executable, str(HERE / "make_run.py"), str(root)],
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    (root / "outside").mkdir()
    (root / "outside" / "victim.txt").write_text("the user's own file\n")
    (root / "home").mkdir(exist_ok=True)
    return root


@pytest.fixture
def case(template: Path, tmp_path: Path) -> Case:
    """A fresh copy of the recorded run."""
    root = tmp_path / "case"
    shutil.copytree(template, root, symlinks=True)
    return Case(root)
