"""The online store through the real wandb client against the W&B-protocol test server, and store
selection.

Retries and backoff are observed where resumeguard itself retries: its own downloads, and wandb-core
answers that come too late (wandb-core retries 429s and 5xxs of GraphQL requests on its own, inside
one try of ours). No stand-in of wandb is used: the only replaced piece is the Api factory in the
last test, which stands for a programming error rather than for W&B.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from wandb_server import ENTITY, Fault, WandbServer

from resumeguard.errors import BadInput, CheckpointError, RunNotFound, StoreError
from resumeguard.io.hashing import digest_json
from resumeguard.stores import OfflineStore, OnlineStore, RunRef, open_store

RECORD = {
    "schema": 1,
    "fingerprint": {"config": {"lr": 0.1}},
    "checkpoints": {"last": {"file": "resumeguard/checkpoints/last.pt", "step": 40}},
    "resumes": [],
}
COMPACT = {"schema": 1, "record_digest": digest_json(RECORD)}
USER_CONFIG = {"lr": 0.1, "layers": [64, 64], "optim": {"name": "adamw", "betas": [0.9, 0.99]}}
CKPT = "resumeguard/checkpoints/last.pt"
PATH = f"{ENTITY}/p/abc123"
REF = RunRef("abc123", "p", ENTITY)


class _MaxRandom(random.Random):
    """Full jitter at its upper bound, so the backoff schedule itself is visible."""

    def random(self) -> float:
        return 1.0


@pytest.fixture
def server(online: WandbServer) -> WandbServer:
    online.add_run(
        PATH,
        config={**USER_CONFIG, "resumeguard": COMPACT},
        summary={"_step": 41, "loss": 0.2},
        steps=42,
        state="running",
        files={"resumeguard.json": json.dumps(RECORD).encode(), CKPT: b"weights"},
    )
    online.heal()
    return online


def make_store(**kwargs: Any) -> tuple[OnlineStore, list[float]]:
    delays: list[float] = []
    kwargs.setdefault("rng", _MaxRandom())
    kwargs.setdefault("timeout", 1.0)
    store = OnlineStore(sleep=delays.append, **kwargs)
    return store, delays


def test_fetch_reads_config_record_step_and_state(server: WandbServer) -> None:
    store, delays = make_store()
    run = store.fetch(REF)
    assert run.record == RECORD
    assert run.config == {**USER_CONFIG, "resumeguard": COMPACT}
    assert run.last_step == 41
    assert run.state == "running"
    assert run.heartbeat is not None
    assert run.ref == REF
    assert run.location.endswith(f"/{ENTITY}/p/runs/abc123")
    assert run.directories == ()
    assert server.count("Run") == 1 and delays == []


def test_fetch_reads_the_server_again_each_time(server: WandbServer) -> None:
    store, _ = make_store()
    assert store.fetch(REF).state == "running"
    server.store.get(PATH).state = "finished"
    assert store.fetch(REF).state == "finished"  # not the Api's cached Run
    assert server.count("Viewer") == 1  # one Api for the store's life


def test_run_without_record_has_none_and_step_from_history(server: WandbServer) -> None:
    server.add_run(f"{ENTITY}/p/bare", config={"lr": 1}, steps=8)
    store, _ = make_store()
    run = store.fetch(RunRef("bare", "p", ENTITY))
    assert run.record is None
    assert run.last_step == 7
    assert run.config == {"lr": 1}
    server.add_run(f"{ENTITY}/p/empty")
    assert store.fetch(RunRef("empty", "p", ENTITY)).last_step is None  # no history at all


def test_state_names_are_reduced(server: WandbServer) -> None:
    expected = {
        "killed": "crashed",
        "preempted": "crashed",
        "failed": "failed",
        "pending": "unknown",
    }
    store, _ = make_store()
    for wandb_state, ours in expected.items():
        server.add_run(f"{ENTITY}/p/{wandb_state}", state=wandb_state)
        assert store.fetch(RunRef(wandb_state, "p", ENTITY)).state == ours


def test_not_found_is_run_not_found_without_retry(server: WandbServer) -> None:
    store, delays = make_store()
    with pytest.raises(RunNotFound) as info:
        store.fetch(RunRef("nope", "p", ENTITY))
    assert not isinstance(info.value, StoreError)
    assert f"no W&B run {ENTITY}/p/nope" in str(info.value) and "--project" in str(info.value)
    assert server.count("Run") == 1 and delays == []
    with pytest.raises(RunNotFound):
        store.fetch(RunRef("abc123", "no-such-project", ENTITY))


def test_download_errors_are_retried_with_growing_bounded_backoff(
    server: WandbServer, tmp_path: Path
) -> None:
    server.fail(f"download:{CKPT}", Fault(status=429), Fault(status=500), Fault(reset=True))
    store, delays = make_store(backoff=0.5, max_backoff=8.0)
    assert store.fetch_file(REF, CKPT, tmp_path).read_bytes() == b"weights"
    assert delays == [0.5, 1.0, 2.0]


def test_retry_after_is_honoured_up_to_the_cap(server: WandbServer, tmp_path: Path) -> None:
    server.fail(
        f"download:{CKPT}", Fault(status=429, retry_after=0.25), Fault(status=503, retry_after=60)
    )
    store, delays = make_store(max_backoff=3.0)
    store.fetch_file(REF, CKPT, tmp_path)
    assert delays == [0.25, 3.0]


def test_backoff_is_capped_and_jittered(server: WandbServer, tmp_path: Path) -> None:
    server.fail(f"download:{CKPT}", *[Fault(status=500)] * 6)
    store, delays = make_store(retries=6, backoff=1.0, max_backoff=3.0)
    store.fetch_file(REF, CKPT, tmp_path / "a")
    assert delays == [1.0, 2.0, 3.0, 3.0, 3.0, 3.0]
    server.fail(f"download:{CKPT}", *[Fault(status=500)] * 6)
    jittered, seen = make_store(retries=6, backoff=1.0, max_backoff=3.0, rng=random.Random(1))
    jittered.fetch_file(REF, CKPT, tmp_path / "b")
    caps = [1.0, 2.0, 3.0, 3.0, 3.0, 3.0]
    assert all(0.0 <= d <= cap for d, cap in zip(seen, caps, strict=True))
    assert len(set(seen)) > 1


def test_persistent_server_error_gives_up_after_exactly_n_tries(
    server: WandbServer, tmp_path: Path
) -> None:
    server.fail_always(f"download:{CKPT}", Fault(status=500))
    store, delays = make_store(retries=3)
    with pytest.raises(StoreError) as info:
        store.fetch_file(REF, CKPT, tmp_path)
    message = str(info.value)
    assert server.count("download") == 4 and len(delays) == 3
    assert message.startswith(f"could not reach W&B at {server.base_url} after 4 tries")
    assert "HTTP 500" in message and "--offline" in message and "\n" not in message
    assert info.value.exit_code == 3
    assert list(tmp_path.rglob("*.pt")) == []


def test_a_late_answer_is_retried(server: WandbServer) -> None:
    server.fail("Run", Fault(hang=True))
    store, delays = make_store()
    assert store.fetch(REF).last_step == 41
    assert len(delays) == 1


def test_unreachable_server_at_connect_is_retried_then_store_error(server: WandbServer) -> None:
    server.fail_always("Viewer", Fault(hang=True))
    store, delays = make_store(retries=1)
    with pytest.raises(StoreError, match=r"after 2 tries .*no answer within 1 s"):
        store.fetch(REF)
    assert server.count("Viewer") >= 2 and len(delays) == 1


def test_rejected_key_is_not_retried(server: WandbServer, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "b" * 40)
    store, delays = make_store()
    with pytest.raises(StoreError, match=r"did not accept the credentials.*wandb login"):
        store.fetch(REF)
    assert server.count("Viewer") == 1 and delays == []


def test_other_client_errors_are_not_retried(server: WandbServer, tmp_path: Path) -> None:
    server.fail(f"download:{CKPT}", Fault(status=400))
    store, delays = make_store()
    with pytest.raises(StoreError, match="HTTP 400"):
        store.fetch_file(REF, CKPT, tmp_path)
    assert delays == []


def test_project_and_entity_defaults(server: WandbServer, monkeypatch: pytest.MonkeyPatch) -> None:
    store, _ = make_store()
    with pytest.raises(BadInput, match="--project"):
        store.fetch(RunRef("abc123"))
    monkeypatch.setenv("WANDB_PROJECT", "p")
    assert store.fetch(RunRef("abc123")).ref == REF  # the account's default entity
    assert server.count("GetDefaultEntity") == 1
    monkeypatch.setenv("WANDB_ENTITY", "team")
    server.add_run("team/p/abc123")
    assert store.fetch(RunRef("abc123")).ref.entity == "team"


def test_fetch_file_downloads_into_dest(server: WandbServer, tmp_path: Path) -> None:
    store, _ = make_store()
    dest = tmp_path / "dest"
    got = store.fetch_file(REF, CKPT, dest)
    assert got == dest / CKPT
    assert got.read_bytes() == b"weights"
    assert sorted(p.name for p in dest.rglob("*")) == ["checkpoints", "last.pt", "resumeguard"]


def test_fetch_file_missing_is_checkpoint_error(server: WandbServer, tmp_path: Path) -> None:
    store, delays = make_store()
    with pytest.raises(CheckpointError, match=rf"gone\.pt not found in run {ENTITY}/p/abc123"):
        store.fetch_file(REF, "gone.pt", tmp_path)
    assert server.count("download") == 0 and delays == []
    with pytest.raises(BadInput):
        store.fetch_file(REF, "../escape.pt", tmp_path)


def test_fetch_file_gone_at_download_is_checkpoint_error(
    server: WandbServer, tmp_path: Path
) -> None:
    server.fail(f"download:{CKPT}", Fault(status=404))
    store, _ = make_store()
    with pytest.raises(CheckpointError, match="not found"):
        store.fetch_file(REF, CKPT, tmp_path)
    assert list(tmp_path.rglob("*.pt")) == []


def test_write_record_changes_only_the_resumeguard_key(server: WandbServer) -> None:
    data = server.add_run(f"{ENTITY}/p/old", config=USER_CONFIG, summary={"_step": 9, "acc": 0.5})
    server.heal()
    store, _ = make_store()
    record = {**RECORD, "resumes": [{"at": "now"}]}
    compact = {"schema": 1, "record_digest": digest_json(record)}
    store.write_record(RunRef("old", "p", ENTITY), record, compact)
    assert data.user_config == {**USER_CONFIG, "resumeguard": compact}
    assert data.summary == {"_step": 9, "acc": 0.5}
    assert json.loads(data.files["resumeguard.json"].data) == record
    ops = server.operations()
    assert ops.index("upload") < ops.index("UpsertBucket"), "the file first, then the config key"
    assert store.fetch(RunRef("old", "p", ENTITY)).record == record


def test_write_record_retries_a_failed_upload(server: WandbServer) -> None:
    data = server.add_run(f"{ENTITY}/p/old2", config=USER_CONFIG)
    server.fail("UpsertBucket", Fault(status=502))
    store, _ = make_store(timeout=5.0)
    store.write_record(RunRef("old2", "p", ENTITY), RECORD, COMPACT)
    assert data.user_config["resumeguard"] == COMPACT
    assert server.count("UpsertBucket") >= 2


def test_corrupt_record_is_bad_input(server: WandbServer) -> None:
    server.add_run(f"{ENTITY}/p/bad", files={"resumeguard.json": b"{not json"})
    store, _ = make_store()
    with pytest.raises(BadInput, match=r"resumeguard.json of run .* is damaged"):
        store.fetch(RunRef("bad", "p", ENTITY))


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


def test_a_bug_is_not_disguised_as_a_store_error() -> None:
    def broken_factory(timeout: float) -> Any:
        raise TypeError("unexpected keyword")

    store = OnlineStore(api_factory=broken_factory, sleep=lambda _: None)
    with pytest.raises(TypeError):
        store.fetch(RunRef("abc123", "p", "me"))
