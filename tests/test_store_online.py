"""The online store against an in-memory stand-in of wandb's public API, and store selection."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from wandb_api_standin import TIMEOUT, StandinServer

from resumeguard.errors import BadInput, CheckpointError, StoreError, Unverifiable
from resumeguard.hashing import digest_json
from resumeguard.stores import OfflineStore, OnlineStore, RunRef, open_store

RECORD = {
    "schema": 1,
    "fingerprint": {"config": {"lr": 0.1}},
    "checkpoints": {"last": {"file": "resumeguard/checkpoints/last.pt", "step": 40}},
    "resumes": [],
}
COMPACT = {"schema": 1, "record_digest": digest_json(RECORD)}
USER_CONFIG = {"lr": 0.1, "layers": [64, 64], "optim": {"name": "adamw", "betas": [0.9, 0.99]}}


class _MaxRandom(random.Random):
    """Full jitter at its upper bound, so the backoff schedule itself is visible."""

    def random(self) -> float:
        return 1.0


@pytest.fixture
def server() -> StandinServer:
    server = StandinServer()
    server.add_run(
        "abc123",
        config={**USER_CONFIG, "resumeguard": COMPACT},
        summary={"_step": 41, "loss": 0.2},
        state="running",
        heartbeat_at="2024-05-01T12:00:00",
        files={
            "resumeguard.json": json.dumps(RECORD).encode(),
            "resumeguard/checkpoints/last.pt": b"weights",
        },
    )
    return server


def make_store(server: StandinServer, **kwargs: Any) -> tuple[OnlineStore, list[float]]:
    delays: list[float] = []
    kwargs.setdefault("rng", _MaxRandom())
    store = OnlineStore(api_factory=server.api, sleep=delays.append, **kwargs)
    return store, delays


def test_fetch_reads_config_record_step_and_state(server: StandinServer) -> None:
    store, delays = make_store(server)
    run = store.fetch(RunRef.parse("me/p/abc123"))
    assert run.record == RECORD
    assert run.config == {**USER_CONFIG, "resumeguard": COMPACT}
    assert run.last_step == 41
    assert run.state == "running"
    assert run.heartbeat == "2024-05-01T12:00:00+00:00"
    assert run.ref == RunRef("abc123", "p", "me")
    assert run.location.endswith("/me/p/runs/abc123")
    assert run.directories == ()
    assert server.count("run ") == 1 and delays == []


def test_fetch_reads_the_server_again_each_time(server: StandinServer) -> None:
    store, _ = make_store(server)
    ref = RunRef("abc123", "p", "me")
    assert store.fetch(ref).state == "running"
    server.runs["me/p/abc123"].state = "finished"
    assert store.fetch(ref).state == "finished"  # not the Api's cached Run
    assert server.count("api") == 1  # one Api for the store's life


def test_run_without_record_has_none_and_step_from_history(server: StandinServer) -> None:
    server.add_run("bare", config={"lr": 1}, last_history_step=7)
    store, _ = make_store(server)
    run = store.fetch(RunRef("bare", "p", "me"))
    assert run.record is None
    assert run.last_step == 7
    assert run.config == {"lr": 1}
    server.add_run("empty")
    assert store.fetch(RunRef("empty", "p", "me")).last_step is None  # history says -1


def test_state_names_are_reduced() -> None:
    server = StandinServer()
    expected = {
        "killed": "crashed",
        "preempted": "crashed",
        "failed": "failed",
        "pending": "unknown",
    }
    store, _ = make_store(server)
    for wandb_state, ours in expected.items():
        server.add_run(wandb_state, state=wandb_state)
        assert store.fetch(RunRef(wandb_state, "p", "me")).state == ours


def test_not_found_is_unverifiable_without_retry(server: StandinServer) -> None:
    store, delays = make_store(server)
    with pytest.raises(Unverifiable) as info:
        store.fetch(RunRef("nope", "p", "me"))
    assert not isinstance(info.value, StoreError)
    assert "no W&B run me/p/nope" in str(info.value) and "--project" in str(info.value)
    assert server.count("run ") == 1 and delays == []


def test_rate_limit_is_retried_with_growing_bounded_backoff(server: StandinServer) -> None:
    server.fail("run", 429, 429, 503)
    store, delays = make_store(server, backoff=0.5, max_backoff=8.0)
    assert store.fetch(RunRef("abc123", "p", "me")).record == RECORD
    assert server.count("run ") == 4
    assert delays == [0.5, 1.0, 2.0]


def test_backoff_is_capped_and_jittered(server: StandinServer) -> None:
    server.fail("run", *[500] * 6)
    store, delays = make_store(server, retries=6, backoff=1.0, max_backoff=3.0)
    store.fetch(RunRef("abc123", "p", "me"))
    assert delays == [1.0, 2.0, 3.0, 3.0, 3.0, 3.0]
    server.fail("run", *[500] * 6)
    jittered, seen = make_store(
        server, retries=6, backoff=1.0, max_backoff=3.0, rng=random.Random(1)
    )
    jittered.fetch(RunRef("abc123", "p", "me"))
    caps = [1.0, 2.0, 3.0, 3.0, 3.0, 3.0]
    assert all(0.0 <= d <= cap for d, cap in zip(seen, caps, strict=True))
    assert len(set(seen)) > 1


def test_persistent_server_error_gives_up_after_exactly_n_tries(server: StandinServer) -> None:
    server.fail("run", *[500] * 20)
    store, delays = make_store(server, retries=3)
    with pytest.raises(StoreError) as info:
        store.fetch(RunRef("abc123", "p", "me"))
    message = str(info.value)
    assert server.count("run ") == 4 and len(delays) == 3
    assert message.startswith(f"could not reach W&B at {server.base_url} after 4 tries: HTTP 500")
    assert "--offline" in message and "\n" not in message
    assert info.value.exit_code == 3


def test_timeouts_are_retried(server: StandinServer) -> None:
    server.fail("run", TIMEOUT, TIMEOUT)
    store, delays = make_store(server)
    assert store.fetch(RunRef("abc123", "p", "me")).last_step == 41
    assert len(delays) == 2


def test_unreachable_server_at_connect_is_retried_then_store_error(server: StandinServer) -> None:
    server.fail("api", *[TIMEOUT] * 5)
    store, delays = make_store(server, retries=4)
    with pytest.raises(StoreError, match="after 5 tries: Failed to verify credentials"):
        store.fetch(RunRef("abc123", "p", "me"))
    assert server.count("api") == 5 and len(delays) == 4


def test_rejected_key_is_not_retried(server: StandinServer) -> None:
    server.fail("api", 401)
    store, delays = make_store(server)
    with pytest.raises(StoreError, match=r"did not accept the credentials.*wandb login"):
        store.fetch(RunRef("abc123", "p", "me"))
    assert server.count("api") == 1 and delays == []


def test_other_client_errors_are_not_retried(server: StandinServer) -> None:
    server.fail("run", 400)
    store, delays = make_store(server)
    with pytest.raises(StoreError, match="HTTP 400"):
        store.fetch(RunRef("abc123", "p", "me"))
    assert delays == []


def test_timeout_is_passed_to_the_api(server: StandinServer) -> None:
    store, _ = make_store(server, timeout=3.5)
    store.fetch(RunRef("abc123", "p", "me"))
    assert server.api_timeouts == [3.5]


def test_project_and_entity_defaults(
    server: StandinServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    monkeypatch.delenv("WANDB_ENTITY", raising=False)
    store, _ = make_store(server)
    with pytest.raises(BadInput, match="--project"):
        store.fetch(RunRef("abc123"))
    monkeypatch.setenv("WANDB_PROJECT", "p")
    assert store.fetch(RunRef("abc123")).ref == RunRef("abc123", "p", "me")  # default entity
    assert server.count("default_entity") == 1
    monkeypatch.setenv("WANDB_ENTITY", "team")
    server.add_run("abc123", entity="team")
    assert store.fetch(RunRef("abc123")).ref.entity == "team"


def test_fetch_file_downloads_into_dest(server: StandinServer, tmp_path: Path) -> None:
    store, _ = make_store(server)
    got = store.fetch_file(RunRef("abc123", "p", "me"), "resumeguard/checkpoints/last.pt", tmp_path)
    assert got == tmp_path / "resumeguard/checkpoints/last.pt"
    assert got.read_bytes() == b"weights"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["checkpoints", "last.pt", "resumeguard"]


def test_fetch_file_missing_is_checkpoint_error(server: StandinServer, tmp_path: Path) -> None:
    store, delays = make_store(server)
    with pytest.raises(CheckpointError, match=r"gone\.pt not found in run me/p/abc123"):
        store.fetch_file(RunRef("abc123", "p", "me"), "gone.pt", tmp_path)
    assert server.count("download") == 0 and delays == []
    with pytest.raises(BadInput):
        store.fetch_file(RunRef("abc123", "p", "me"), "../escape.pt", tmp_path)


def test_fetch_file_download_404_is_checkpoint_error(server: StandinServer, tmp_path: Path) -> None:
    server.fail("download", 404)
    store, _ = make_store(server)
    with pytest.raises(CheckpointError, match="not found"):
        store.fetch_file(RunRef("abc123", "p", "me"), "resumeguard/checkpoints/last.pt", tmp_path)
    assert list(tmp_path.rglob("*.pt")) == []


def test_write_record_changes_only_the_resumeguard_key(server: StandinServer) -> None:
    data = server.add_run("old", config=USER_CONFIG, summary={"_step": 9, "acc": 0.5})
    store, _ = make_store(server)
    record = {**RECORD, "resumes": [{"at": "now"}]}
    compact = {"schema": 1, "record_digest": digest_json(record)}
    store.write_record(RunRef("old", "p", "me"), record, compact)
    assert data.config == {**USER_CONFIG, "resumeguard": compact}
    assert data.summary == {"_step": 9, "acc": 0.5}
    assert json.loads(data.files["resumeguard.json"]) == record
    assert server.count("update") == 1
    assert server.calls.index("upload resumeguard.json") < server.calls.index("update me/p/old")
    assert store.fetch(RunRef("old", "p", "me")).record == record


def test_write_record_retries_a_failed_update(server: StandinServer) -> None:
    data = server.add_run("old", config=USER_CONFIG)
    server.fail("update", 502)
    store, delays = make_store(server)
    store.write_record(RunRef("old", "p", "me"), RECORD, COMPACT)
    assert data.config["resumeguard"] == COMPACT and len(delays) == 1


def test_corrupt_record_is_bad_input(server: StandinServer) -> None:
    server.add_run("bad", files={"resumeguard.json": b"{not json"})
    store, _ = make_store(server)
    with pytest.raises(BadInput, match=r"resumeguard.json of run .* is damaged"):
        store.fetch(RunRef("bad", "p", "me"))


# -- open_store ------------------------------------------------------------------------


def test_open_store_offline_when_asked_or_by_mode(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert isinstance(open_store(offline=True, wandb_dir=str(tmp_path)), OfflineStore)
    for mode in ("offline", "dryrun", "disabled"):
        monkeypatch.setenv("WANDB_MODE", mode)
        assert open_store().name == "offline"
    monkeypatch.setenv("WANDB_MODE", "online")
    store = open_store(timeout=2.0)
    assert isinstance(store, OnlineStore) and store._timeout == 2.0  # nothing contacted yet
    assert isinstance(open_store(offline=False), OnlineStore)


def test_open_store_offline_without_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "online")  # conftest isolates HOME: no ~/.netrc
    assert open_store().name == "offline"
    netrc = Path.home() / ".netrc"
    netrc.write_text("machine api.standin.invalid login user password " + "k" * 40 + "\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("WANDB_BASE_URL", "https://api.standin.invalid")
    from wandb.sdk import wandb_setup

    monkeypatch.setattr(wandb_setup, "_singleton", None)  # re-read settings from env
    assert open_store().name == "online"


def test_default_online_store_refuses_without_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "online")
    store = OnlineStore(retries=0)
    with pytest.raises(StoreError, match="no W&B API key configured"):
        store.fetch(RunRef("abc", "p", "me"))


def test_a_bug_is_not_disguised_as_a_store_error(server: StandinServer) -> None:
    def broken_factory(timeout: float) -> Any:
        raise TypeError("unexpected keyword")

    store = OnlineStore(api_factory=broken_factory, sleep=lambda _: None)
    with pytest.raises(TypeError):
        store.fetch(RunRef("abc123", "p", "me"))
