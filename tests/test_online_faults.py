"""Faults of the W&B server, injected per operation, met by the real wandb client.

Each ends in the documented exit code with one line of advice, within the documented time
(``retries + 1`` tries of ``RESUMEGUARD_TIMEOUT`` seconds plus backoff), and never as "ok" or
"new run". The run used is recorded and would check ok without the fault.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import wandb
from helpers import cli, make_repo
from wandb_server import ENTITY, Fault, WandbServer

import resumeguard

TIMEOUT = 1.0
TRIES = 5  # the CLI's documented 4 retries
# backoff caps 0.5 + 1 + 2 + 4, plus room for a loaded machine; the default 10 s timeout would
# take at least TRIES * 10 + 7.5 s, so the bound still shows RESUMEGUARD_TIMEOUT is honoured.
BOUND = TRIES * TIMEOUT + 7.5 + 15


@dataclass(frozen=True)
class Recorded:
    """A recorded online run with a checkpoint, and the repository it was recorded from."""

    path: str
    repo: Path
    checkpoint: str
    """The checkpoint's name in the run's files (what its download URL ends with)."""


@pytest.fixture(scope="module")
def recorded(wandb_server: WandbServer, tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    root = tmp_path_factory.mktemp("faults")
    repo = make_repo(root / "proj", {"train.py": "X = 1\n", ".gitignore": "*.pt\n"})
    run_id = f"faults-{uuid.uuid4().hex[:8]}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(root))
        for name, value in wandb_server.client_env(root / "client").items():
            mp.setenv(name, value)
        mp.chdir(repo)
        run = resumeguard.init(project="p", id=run_id, repo=repo)
        state = {"w": torch.zeros(50_000), "step": 0}
        saved = resumeguard.save_checkpoint(run, state, "ck.pt", storage="latest+upload")
        run.finish()
        wandb.teardown()
    return Recorded(f"{ENTITY}/p/{run_id}", repo, saved.file)


@pytest.fixture
def faulty(online: WandbServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[WandbServer]:
    monkeypatch.setenv("RESUMEGUARD_TIMEOUT", f"{TIMEOUT:g}")
    yield online


def timed_cli(capsys, *args: str) -> tuple[int, str, str, float]:
    start = time.monotonic()
    code, out, err = cli(capsys, *args)
    return code, out, err, time.monotonic() - start


def check(capsys, recorded: Recorded, *extra: str) -> tuple[int, str, str, float]:
    return timed_cli(
        capsys, "check", "--run-id", recorded.path, "--repo", str(recorded.repo), *extra
    )


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("resumeguard: "), lines[0]
    return lines[0]


def test_without_faults_the_check_is_ok(capsys, faulty: WandbServer, recorded: Recorded) -> None:
    code, out, err, _ = check(capsys, recorded)
    assert (code, out.splitlines()[0].endswith("ok: safe to resume")) == (0, True), err


def test_a_refused_key_exits_3(capsys, faulty: WandbServer, recorded: Recorded, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "b" * 40)
    code, out, err, took = check(capsys, recorded, "--allow-new")
    assert (code, out) == (3, "")
    assert "did not accept the credentials" in one_line(err) and "wandb login" in err
    assert took < BOUND


def test_no_such_run_is_not_found_and_new_only_when_allowed(
    capsys, faulty: WandbServer, recorded: Recorded
) -> None:
    missing = f"{ENTITY}/p/none-{uuid.uuid4().hex[:8]}"
    code, _, err, _ = timed_cli(capsys, "check", "--run-id", missing)
    assert code == 3 and "no W&B run" in one_line(err)
    code, out, _, _ = timed_cli(capsys, "check", "--run-id", missing, "--allow-new")
    assert code == 0 and "new run" in out


def test_an_http_404_of_the_api_itself_is_no_answer_about_the_run(
    capsys, faulty: WandbServer, recorded: Recorded
) -> None:
    # W&B says "no such run" with a null run in a 200 answer; a 404 for the GraphQL endpoint
    # means the URL is not W&B's API (a wrong WANDB_BASE_URL): never a new run.
    faulty.fail_always("Run", Fault(status=404))
    code, out, err, _ = check(capsys, recorded, "--allow-new")
    assert (code, out) == (3, "")
    assert "HTTP 404" in one_line(err) and "WANDB_BASE_URL" in err


@pytest.mark.parametrize(
    "fault",
    [
        Fault(status=429),
        Fault(status=429, retry_after=3600),
        Fault(status=503),
        Fault(hang=True),
        Fault(reset=True),
        Fault(malformed=True),
    ],
    ids=["429", "429-retry-after", "503", "hang", "reset", "malformed-json"],
)
def test_a_failing_run_read_is_unverifiable_never_ok_or_new(
    capsys, faulty: WandbServer, recorded: Recorded, fault: Fault
) -> None:
    faulty.fail_always("Run", fault)
    code, out, err, took = check(capsys, recorded, "--allow-new")
    assert (code, out) == (3, ""), (code, out, err)
    line = one_line(err)
    assert f"after {TRIES} tries" in line and "--offline" in line
    assert took < BOUND
    assert faulty.count("Run") >= 1


def test_a_failing_record_download_is_unverifiable(
    capsys, faulty: WandbServer, recorded: Recorded
) -> None:
    faulty.fail_always("download:resumeguard.json", Fault(status=500))
    code, out, err, took = check(capsys, recorded)
    assert (code, out) == (3, "")
    assert "downloading resumeguard.json" in one_line(err) and took < BOUND
    assert faulty.count("download") == TRIES


def test_a_rate_limit_on_download_is_waited_out(
    capsys, faulty: WandbServer, recorded: Recorded, tmp_path: Path
) -> None:
    faulty.fail(
        f"download:{recorded.checkpoint}", Fault(status=429, retry_after=0.2), Fault(status=429)
    )
    code, out, err, _ = timed_cli(
        capsys, "restore", "--run-id", recorded.path, "ck.pt", "--dest", str(tmp_path / "restored")
    )
    assert code == 0 and "digest verified" in out, err
    assert faulty.count("download") == 4  # the record, then the checkpoint three times


@pytest.mark.parametrize(
    "fault", [Fault(reset=True), Fault(hang=True), Fault(status=502)], ids=["reset", "hang", "502"]
)
def test_a_failing_checkpoint_download_leaves_nothing(
    capsys, faulty: WandbServer, recorded: Recorded, tmp_path: Path, fault: Fault
) -> None:
    faulty.fail_always(f"download:{recorded.checkpoint}", fault)
    dest = tmp_path / "restored"
    code, out, err, took = timed_cli(
        capsys, "restore", "--run-id", recorded.path, "ck.pt", "--dest", str(dest)
    )
    assert (code, out) == (3, "")
    assert "downloading" in one_line(err) and took < BOUND
    assert not dest.exists() or list(dest.iterdir()) == [], "no partial copy left behind"


@pytest.mark.parametrize("mode", ["allow", "must"])
def test_init_on_an_unreachable_store_is_unverifiable_not_a_new_run(
    faulty: WandbServer, recorded: Recorded, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(recorded.repo)
    faulty.fail_always("Run", Fault(status=503))
    run_id = recorded.path.rsplit("/", 1)[1]
    with pytest.raises(resumeguard.Unverifiable, match="could not reach W&B"):
        resumeguard.init(project="p", id=run_id, resume=mode, repo=recorded.repo)
    assert wandb.run is None
    assert not {"UpsertBucket", "file_stream"} & set(faulty.operations())
