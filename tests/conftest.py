"""Test-wide settings: W&B offline and silent, git identity pinned, no user config leaking in."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from wandb_server import WandbServer

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("WANDB_DISABLE_GIT", "true")
os.environ["GIT_AUTHOR_NAME"] = os.environ["GIT_COMMITTER_NAME"] = "Test"
os.environ["GIT_AUTHOR_EMAIL"] = os.environ["GIT_COMMITTER_EMAIL"] = "test@example.com"
os.environ["GIT_CONFIG_NOSYSTEM"] = "1"

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@pytest.fixture(autouse=True)
def _isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No ~/.gitconfig, ~/.netrc or W&B settings of the machine's user."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(home / ".config" / "wandb"))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_RUN_ID", raising=False)
    monkeypatch.delenv("WANDB_RESUME", raising=False)


@pytest.fixture(autouse=True)
def _fresh_wandb_settings() -> Iterator[None]:
    """wandb caches its settings (WANDB_DIR included) in a process-wide singleton: reset it."""
    yield
    import sys

    wandb = sys.modules.get("wandb")
    if wandb is not None:
        if wandb.run is not None:
            wandb.run.finish()
        _bounded_teardown(wandb)


def _bounded_teardown(wandb: Any, wait: float = 30.0) -> None:
    """``wandb.teardown()``, which waits for its wandb-core service to exit: after a test whose
    server answered with broken connections, that service can linger until its 10-minute idle
    timeout. Past ``wait`` seconds it is killed, so one test never stalls the suite."""
    done = threading.Thread(target=wandb.teardown, daemon=True)
    done.start()
    done.join(wait)
    if done.is_alive():
        for pid in _children_named("wandb-core"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        done.join(wait)


def _children_named(name: str) -> list[int]:
    """This process's children whose command is ``name`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            text = stat.read_text()
            comm = text[text.index("(") + 1 : text.rindex(")")]
            ppid = int(text[text.rindex(")") + 2 :].split()[1])
            if comm == name and ppid == os.getpid():
                found.append(int(stat.parent.name))
    return found


@pytest.fixture(scope="session")
def wandb_server() -> Iterator[WandbServer]:
    """One W&B-protocol server per test session (runs are told apart by their ids)."""
    server = WandbServer().start()
    yield server
    server.stop()


@pytest.fixture
def online(
    wandb_server: WandbServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[WandbServer]:
    """The real wandb client pointed at the session's server: online mode, a valid key, W&B's
    directories in ``tmp_path``; no faults pending and an empty request log."""
    wandb_server.heal()
    for name, value in wandb_server.client_env(tmp_path / "wandb-client").items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("WANDB_ENTITY", raising=False)
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    yield wandb_server
    wandb_server.heal()
