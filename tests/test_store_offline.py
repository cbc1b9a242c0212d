"""The offline store against real wandb offline runs (and hand-made directories for edge cases)."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest

from resumeguard.errors import BadInput, CheckpointError, Unverifiable
from resumeguard.io.hashing import digest_json
from resumeguard.stores import OfflineStore, RunRef, layout, write_config_sidecar

USER_CONFIG = {"lr": 0.1, "layers": [64, 64], "optim": {"name": "adamw"}}
CKPT = "resumeguard/checkpoints/last.pt"
OLD_CKPT = "resumeguard/checkpoints/old.pt"


def record(version: int, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """A record shaped like resumeguard's (content opaque to the store)."""
    return {
        "schema": 1,
        "fingerprint": {"config": config if config is not None else USER_CONFIG},
        "checkpoints": {"last": {"file": CKPT, "digest": f"blake3:{version}", "step": version}},
        "resumes": [{"n": i} for i in range(version - 1)],
    }


def start(base: Path, run_id: str, resume: Literal["allow"] | None = None) -> Any:
    import wandb

    return wandb.init(
        project="p", id=run_id, dir=str(base), mode="offline", config=USER_CONFIG, resume=resume
    )


def save_like_resumeguard(run: Any, rec: dict[str, Any], files: dict[str, bytes]) -> None:
    """Real copies inside run.dir, then wandb.save'd, as resumeguard does."""
    run_dir = Path(run.dir)
    for name, content in files.items():
        path = run_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        run.save(str(path), base_path=run.dir, policy="now")
    (run_dir / layout.RECORD_FILE).write_text(json.dumps(rec))
    run.save(str(run_dir / layout.RECORD_FILE), base_path=run.dir, policy="now")


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One WANDB_DIR with real offline runs: "solo" (one dir), "spread" (two), "linked"."""
    root = tmp_path_factory.mktemp("wandb_dir")
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(home))
        mp.setenv("WANDB_CONFIG_DIR", str(home / ".config" / "wandb"))
        mp.setenv("WANDB_CACHE_DIR", str(home / ".cache" / "wandb"))
        mp.delenv("WANDB_API_KEY", raising=False)

        run = start(root, "solo")
        for i in range(3):
            run.log({"loss": 1.0 / (i + 1)})
        save_like_resumeguard(run, record(1), {CKPT: b"solo"})
        run.finish()

        run = start(root, "spread")
        save_like_resumeguard(run, record(1), {CKPT: b"v1", OLD_CKPT: b"old"})
        run.finish()
        run = start(root, "spread", resume="allow")  # offline: a new directory, step 0
        assert not run.resumed and run.step == 0
        save_like_resumeguard(run, record(2), {CKPT: b"v2"})
        run.finish()

        run = start(root, "sidecar")  # as resumeguard's own init would, offline
        write_config_sidecar(run.dir, {**dict(run.config), "resumeguard": {"schema": 1}})
        run.finish()

        outside = root / "elsewhere.pt"
        outside.write_bytes(b"linked")
        run = start(root, "linked")
        run.save(str(outside), base_path=str(root), policy="now")  # wandb symlinks it
        run.finish()
    yield root


@pytest.fixture
def scratch(base: Path, tmp_path: Path) -> Path:
    """A private copy of ``base`` for tests that write."""
    copy = tmp_path / "base"
    shutil.copytree(base, copy, symlinks=True)
    return copy


# -- fetch -----------------------------------------------------------------------------


def test_fetch_finds_record_and_user_config(base: Path) -> None:
    run = OfflineStore(base).fetch(RunRef("solo"))
    assert run.record == record(1)
    assert run.config == USER_CONFIG  # from the record: wandb 0.31 writes no config.yaml offline
    assert len(run.directories) == 1 and run.location == run.directories[0]
    assert Path(run.location).name.startswith("offline-run-")
    assert Path(run.location).name.endswith("-solo")
    assert run.state == "finished"  # W&B's exit record in its .wandb log, no state file needed
    assert run.last_step == 2  # offline, wandb keeps the step only in its .wandb log: read there
    assert run.heartbeat is not None and dt.datetime.fromisoformat(run.heartbeat).tzinfo


def test_config_sidecar_of_a_live_run(base: Path) -> None:
    run = OfflineStore(base).fetch(RunRef("sidecar"))
    assert run.config == {**USER_CONFIG, "resumeguard": {"schema": 1}}
    assert run.record is None


def test_wandb_writes_no_config_or_summary_offline(base: Path) -> None:
    """The facts the store is built on (wandb 0.31): if this fails, revisit layout."""
    (directory,) = OfflineStore(base).dirs(RunRef("solo"))
    files = {p.name for p in (directory / "files").iterdir()}
    assert not files & {"config.yaml", "wandb-summary.json", "wandb-metadata.json"}
    assert (directory / "run-solo.wandb").is_file()


def test_run_spread_over_two_dirs_gives_newest_record_and_file(base: Path, tmp_path: Path) -> None:
    store = OfflineStore(base)
    run = store.fetch(RunRef("spread"))
    first, second = (Path(d).name for d in run.directories)
    stamp = first.split("-")[2]
    # Same second: wandb adds "-1"; otherwise the later timestamp sorts later.
    assert second == f"{first}-1" or second.split("-")[2] > stamp
    assert run.location == run.directories[1]
    assert run.record == record(2)
    assert store.fetch_file(RunRef("spread"), CKPT, tmp_path).read_bytes() == b"v2"
    got = store.fetch_file(RunRef("spread"), OLD_CKPT, tmp_path / "other")
    assert got == tmp_path / "other" / OLD_CKPT and got.read_bytes() == b"old"  # older dir
    assert not got.is_symlink()


def test_unknown_id_is_unverifiable(base: Path) -> None:
    with pytest.raises(Unverifiable, match=r"no offline W&B run with id nope under .*--wandb-dir"):
        OfflineStore(base).fetch(RunRef("nope"))
    with pytest.raises(Unverifiable):
        OfflineStore(base / "missing").fetch(RunRef("solo"))


def test_base_may_be_the_wandb_folder_or_come_from_env(
    base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert OfflineStore(base / "wandb").fetch(RunRef("solo")).record == record(1)
    monkeypatch.setenv("WANDB_DIR", str(base))
    assert OfflineStore().fetch(RunRef("solo")).record == record(1)


def test_fetch_file_refuses_a_link_out_of_the_run_and_reports_broken(
    scratch: Path, tmp_path: Path
) -> None:
    store = OfflineStore(scratch)
    # What wandb.save leaves for a file outside run.dir: the run's file would follow it.
    with pytest.raises(BadInput, match=r"elsewhere\.pt in .* resolves outside the run"):
        store.fetch_file(RunRef("linked"), "elsewhere.pt", tmp_path / "dest")
    assert not (tmp_path / "dest").exists()
    (link,) = scratch.rglob("files/elsewhere.pt")
    assert link.is_symlink()  # what wandb.save does with a file outside run.dir
    link.unlink()
    link.symlink_to(scratch / "deleted-since.pt")
    with pytest.raises(
        CheckpointError, match=r"elsewhere\.pt not found in run linked.*broken link"
    ):
        store.fetch_file(RunRef("linked"), "elsewhere.pt", tmp_path / "dest2")


def test_fetch_file_missing_or_escaping(base: Path, tmp_path: Path) -> None:
    store = OfflineStore(base)
    with pytest.raises(CheckpointError, match=r"nothing\.pt not found in run solo"):
        store.fetch_file(RunRef("solo"), "nothing.pt", tmp_path)
    for bad in ("../solo.pt", "/etc/passwd", ""):
        with pytest.raises(BadInput):
            store.fetch_file(RunRef("solo"), bad, tmp_path)


# -- write_record ----------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, bytes | str]:
    """Every file's bytes (or a link's target), resumeguard's own record files left out."""
    ours = {layout.RECORD_FILE, layout.CONFIG_SIDECAR}
    out: dict[str, bytes | str] = {}
    for path in sorted(root.rglob("*")):
        if path.name in ours:
            continue
        if path.is_symlink():
            out[str(path)] = os.readlink(path)
        elif path.is_file():
            out[str(path)] = path.read_bytes()
    return out


def test_write_record_touches_only_resumeguard_files(scratch: Path) -> None:
    store = OfflineStore(scratch)
    ref = RunRef("spread")
    old_dir, new_dir = (Path(d) for d in store.fetch(ref).directories)
    # An older wandb (or an online-mode directory) has config.yaml: honour it, never write it.
    yaml_text = "wandb_version: 1\n_wandb:\n  value: {}\nlr:\n  desc: null\n  value: 0.3\n"
    (new_dir / "files" / "config.yaml").write_text(yaml_text)
    assert store.fetch(ref).config == {"lr": 0.3}
    before = snapshot(scratch)
    older_record = (old_dir / "files" / layout.RECORD_FILE).read_bytes()

    new = record(3, config={"lr": 0.3})
    compact = {"schema": 1, "record_digest": digest_json(new)}
    store.write_record(ref, new, compact)

    assert snapshot(scratch) == before
    assert (old_dir / "files" / layout.RECORD_FILE).read_bytes() == older_record
    assert json.loads((new_dir / "files" / layout.RECORD_FILE).read_text()) == new
    run = store.fetch(ref)
    assert run.record == new
    assert run.config == {"lr": 0.3, "resumeguard": compact}
    assert not list(scratch.rglob("*.tmp"))


def test_write_record_keeps_user_config_from_record(scratch: Path) -> None:
    store = OfflineStore(scratch)
    compact = {"schema": 1, "record_digest": digest_json(record(1))}
    store.write_record(RunRef("solo"), record(1), compact)
    assert store.fetch(RunRef("solo")).config == {**USER_CONFIG, "resumeguard": compact}
    with pytest.raises(Unverifiable):
        store.write_record(RunRef("nope"), record(1), compact)


def test_corrupt_newest_record_is_bad_input(scratch: Path) -> None:
    store = OfflineStore(scratch)
    newest = Path(store.fetch(RunRef("spread")).location)
    (newest / "files" / layout.RECORD_FILE).write_text("{truncated")
    with pytest.raises(BadInput, match="damaged: not valid JSON"):
        store.fetch(RunRef("spread"))


# -- state, step, heartbeat (hand-made directories: the layout checked above) ----------

NOW = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc)


def make_dir(root: Path, name: str, run_id: str, **files: Any) -> Path:
    directory = root / "wandb" / name
    (directory / "files").mkdir(parents=True)
    (directory / f"run-{run_id}.wandb").write_bytes(b"")
    for fname, content in files.items():
        target = directory / "files" / fname.replace("__", "/")
        target.write_text(content if isinstance(content, str) else json.dumps(content))
    return directory


def state(state: str, minutes_ago: float, **extra: Any) -> dict[str, Any]:
    beat = (NOW - dt.timedelta(minutes=minutes_ago)).isoformat()
    return {"state": state, "heartbeat": beat, "step": 5, **extra}


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (state("running", 1), "running"),
        (state("running", 60), "crashed"),
        (state("finished", 1), "finished"),
        (state("running", 1, host=socket.gethostname(), pid=os.getpid()), "running"),
        (state("running", 1, host=socket.gethostname(), pid=2**22 + 12345), "crashed"),
        (state("running", 1, host="other-host", pid=2**22 + 12345), "running"),
        (state("running", -60), "unknown"),  # a heartbeat from the future is no sign of life
        ({"state": "running"}, "unknown"),
    ],
)
def test_state_from_state_file(tmp_path: Path, content: Any, expected: str) -> None:
    make_dir(tmp_path, "offline-run-20240501_115000-r1", "r1", **{layout.STATE_FILE: content})
    store = OfflineStore(tmp_path, stale_after_s=600, now=lambda: NOW)
    assert store.fetch(RunRef("r1")).state == expected


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        {"state": 5},
        {"pid": "x"},
        {"step": -1},
        [],
        {"pid": -4},
        {"heartbeat": "yesterday"},
        {"heartbeat": "0001-01-01T00:00:00+01:00"},  # before what UTC can hold
    ],
)
def test_damaged_state_file_is_bad_input(tmp_path: Path, content: Any) -> None:
    make_dir(tmp_path, "offline-run-20240501_115000-r1", "r1", **{layout.STATE_FILE: content})
    with pytest.raises(BadInput, match="damaged"):
        OfflineStore(tmp_path, now=lambda: NOW).fetch(RunRef("r1"))


def test_live_older_session_counts_and_steps_take_the_max(tmp_path: Path) -> None:
    make_dir(
        tmp_path,
        "offline-run-20240501_115000-r1",
        "r1",
        **{layout.STATE_FILE: state("running", 1, step=90), "wandb-summary.json": {"_step": 80}},
    )
    make_dir(
        tmp_path, "offline-run-20240501_115900-r1", "r1", **{"wandb-summary.json": {"_step": 3}}
    )
    run = OfflineStore(tmp_path, now=lambda: NOW).fetch(RunRef("r1"))
    # The step is W&B's own (summary here, the .wandb log for wandb-core runs), never the
    # state file's second copy of it.
    assert run.state == "running" and run.last_step == 80
    assert (
        run.heartbeat is not None and run.heartbeat >= (NOW - dt.timedelta(minutes=1)).isoformat()
    )


def test_directory_order_and_ids_ending_in_digits(tmp_path: Path) -> None:
    names = [
        ("offline-run-20240501_120000-ab-10", "ab"),
        ("offline-run-20240501_120000-ab-2", "ab"),
        ("offline-run-20240501_120000-ab", "ab"),
        ("offline-run-20240430_235959-ab", "ab"),
        ("offline-run-20240501_120000-ab-1", "ab-1"),  # run "ab-1", not a second dir of "ab"
        ("offline-run-20240501_120001-ab-1", "ab"),
        ("run-20240501_120002-ab", "ab"),  # online-mode directory: not this store's
    ]
    for name, run_id in names:
        make_dir(tmp_path, name, run_id)
    store = OfflineStore(tmp_path)
    assert [Path(d).name for d in store.fetch(RunRef("ab")).directories] == [
        "offline-run-20240430_235959-ab",
        "offline-run-20240501_120000-ab",
        "offline-run-20240501_120000-ab-2",
        "offline-run-20240501_120000-ab-10",
        "offline-run-20240501_120001-ab-1",
    ]
    assert [Path(d).name for d in store.fetch(RunRef("ab-1")).directories] == [
        "offline-run-20240501_120000-ab-1"
    ]


def test_sidecar_beats_config_yaml_beats_record_in_a_dir(tmp_path: Path) -> None:
    sidecar = {"schema": 1, "config": {"lr": 1, "resumeguard": {"schema": 1}}}
    yaml_text = "lr:\n  value: 2\n"
    files = {"config.yaml": yaml_text, layout.RECORD_FILE: record(1, config={"lr": 3})}
    make_dir(tmp_path, "offline-run-20240501_120000-r1", "r1", **files)
    assert OfflineStore(tmp_path).fetch(RunRef("r1")).config == {"lr": 2}
    make_dir(tmp_path, "offline-run-20240501_120005-r1", "r1", **{layout.CONFIG_SIDECAR: sidecar})
    run = OfflineStore(tmp_path).fetch(RunRef("r1"))
    assert run.config == sidecar["config"] and run.record == record(1, config={"lr": 3})


def test_newer_record_beats_older_sidecar(tmp_path: Path) -> None:
    sidecar = {"schema": 1, "config": {"lr": 1}}
    make_dir(tmp_path, "offline-run-20240501_120000-r1", "r1", **{layout.CONFIG_SIDECAR: sidecar})
    make_dir(
        tmp_path,
        "offline-run-20240501_120000-r1-1",
        "r1",
        **{layout.RECORD_FILE: record(2, config={"lr": 2})},
    )
    assert OfflineStore(tmp_path).fetch(RunRef("r1")).config == {"lr": 2}


# -- RunRef ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kwargs", "expected"),
    [
        ("abc123", {}, RunRef("abc123")),
        ("  abc123 ", {}, RunRef("abc123")),
        ("abc123", {"project": "p", "entity": "e"}, RunRef("abc123", "p", "e")),
        ("e/p/abc123", {}, RunRef("abc123", "p", "e")),
        ("e/p/abc123", {"project": "p"}, RunRef("abc123", "p", "e")),
        ("e/p/runs/abc123", {}, RunRef("abc123", "p", "e")),
        ("https://wandb.ai/e/p/runs/abc123?nw=1", {}, RunRef("abc123", "p", "e")),
        ("my-run-1", {}, RunRef("my-run-1")),
    ],
)
def test_runref_parse(text: str, kwargs: dict[str, str], expected: RunRef) -> None:
    assert RunRef.parse(text, **kwargs) == expected


@pytest.mark.parametrize(
    ("text", "kwargs"),
    [
        ("", {}),
        ("p/abc", {}),
        ("a/b/c/d", {}),
        ("e//abc", {}),
        ("e/p/", {}),
        ("ab:c", {}),
        ("ab#c", {}),
        ("e/p/abc", {"project": "other"}),
        ("e/p/abc", {"entity": "other"}),
        ("abc", {"project": " "}),
    ],
)
def test_runref_parse_rejects(text: str, kwargs: dict[str, str]) -> None:
    with pytest.raises(BadInput):
        RunRef.parse(text, **kwargs)


def test_runref_str() -> None:
    assert str(RunRef("abc", "p", "e")) == "e/p/abc"
    assert str(RunRef("abc", "p")) == "p/abc"
    assert str(RunRef("abc")) == "abc"
