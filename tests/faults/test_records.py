"""Hostile or broken records, sidecars and state files: bad input (exit 2) or unverifiable (3),
one line, bounded time, nothing changed."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from faultkit import Case, run_cli, tree_digest

Edit = Callable[[Case], None]


def record(change: Callable[[dict[str, Any]], None]) -> Edit:
    return lambda case: case.edit_record(change)


def raw_record(text: str | bytes) -> Edit:
    def edit(case: Case) -> None:
        data = text if isinstance(text, bytes) else text.encode()
        case.record.write_bytes(data)

    return edit


def field(*path: str, value: Any) -> Edit:
    """Set one field of the record, found by its path."""

    def change(data: dict[str, Any]) -> None:
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return record(change)


def vouched(change: Callable[[dict[str, Any]], None]) -> Edit:
    """Change the record and the run config's digest of it alike: a record the run vouches for."""

    def edit(case: Case) -> None:
        from resumeguard.records.run import record_from_json
        from resumeguard.stores.layout import CONFIG_KEY

        case.edit_record(change)
        compact = record_from_json(json.loads(case.record.read_text())).compact()
        case.edit_json(case.sidecar, lambda data: data["config"][CONFIG_KEY].update(compact))

    return edit


def raw_field(*path: str, literal: str) -> Edit:
    """Set one field to a raw JSON literal (numbers JSON parsers read differently)."""
    marker = "__RAW__"

    def edit(case: Case) -> None:
        field(*path, value=marker)(case)
        case.record.write_text(case.record.read_text().replace(f'"{marker}"', literal))

    return edit


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def fifo(case: Case) -> None:
    _fifo_as(case, case.record)


def _fifo_as(case: Case, path: Path) -> None:
    """``path`` replaced by a link to a FIFO nobody writes to (a blocking open never returns)."""
    os.mkfifo(case.outside / "fifo")
    case.replace_with_link(path, case.outside / "fifo")


CKPT = ("checkpoints", "ckpt.pt")
LONG_NAME = "resumeguard/checkpoints/" + "x" * 300 + "/ckpt.pt"


def _copy_in(folder: str) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        data["checkpoints"]["ckpt.pt"]["file"] = folder

    return change


FP = ("fingerprint",)

RECORD_CASES: list[tuple[str, Edit, int]] = [
    ("not-json", raw_record("{oops"), 2),
    ("not-utf8", raw_record(b'{"fingerprint": "\xff\xfe"}'), 2),
    ("empty", raw_record(""), 2),
    ("array", raw_record("[]"), 2),
    ("string", raw_record('"record"'), 2),
    ("schema-negative", field(*FP, "schema", value=-1), 2),
    ("schema-zero", field(*FP, "schema", value=0), 2),
    ("schema-future", field(*FP, "schema", value=99), 2),
    ("schema-string", field(*FP, "schema", value="1"), 2),
    ("schema-bool", field(*FP, "schema", value=True), 2),
    ("schema-float", field(*FP, "schema", value=1.5), 2),
    ("record-schema-future", field("schema", value=7), 2),
    ("schema-huge", raw_field(*FP, "schema", literal="1" + "0" * 40), 2),
    ("code-int", field(*FP, "code", value=5), 2),
    ("code-list", field(*FP, "code", value=[]), 2),
    ("commit-int", field(*FP, "code", "commit", value=12), 2),
    ("changed-list", field(*FP, "code", "changed", value=[]), 2),
    ("changed-values-int", field(*FP, "code", "changed", value={"a.py": 1}), 2),
    ("installed-string", field(*FP, "deps", "installed", value="numpy"), 2),
    ("unavailable-int", field(*FP, "deps", value={"unavailable": 5}), 2),
    ("env-device-count-string", field(*FP, "env", "device_count", value="2"), 2),
    ("config-list", field(*FP, "config", value=[1]), 2),
    ("config-deep", field(*FP, "config", value={"a": nested(500)}), 2),
    ("config-very-deep", raw_field(*FP, "config", literal="[" * 100_000 + "]" * 100_000), 2),
    ("config-infinity", raw_field(*FP, "config", literal='{"lr": Infinity}'), 2),
    ("config-nan", raw_field(*FP, "config", literal='{"lr": NaN}'), 2),
    ("checkpoints-list", field("checkpoints", value=[]), 2),
    ("size-string", field(*CKPT, "size", value="big"), 2),
    ("size-negative", field(*CKPT, "size", value=-5), 2),
    ("size-huge", field(*CKPT, "size", value=10**30), 2),
    ("size-overflow-float", raw_field(*CKPT, "size", literal="1e999"), 2),
    ("size-bool", field(*CKPT, "size", value=True), 2),
    ("step-float", field(*CKPT, "step", value=1.5), 2),
    ("step-negative", field(*CKPT, "step", value=-1), 2),
    ("digest-int", field(*CKPT, "digest", value=12), 2),
    ("file-absolute", field(*CKPT, "file", value="/etc/passwd"), 2),
    ("file-dotdot", field(*CKPT, "file", value="resumeguard/checkpoints/../../../../x.pt"), 2),
    ("file-elsewhere-in-run", field(*CKPT, "file", value="resumeguard.json"), 2),
    ("shards-string", field(*CKPT, "shards", value="x"), 2),
    (
        "optimizer-shape-float",
        field(
            *CKPT,
            "optimizer",
            value={
                "cls": None,
                "groups": [],
                "params": [{"shape": [1.5], "dtype": None}],
                "state_digest": "",
            },
        ),
        2,
    ),
    ("resumes-object", field("resumes", value={"a": 1}), 2),
    (
        "resume-pid-string",
        field(
            "resumes", value=[{"at": "", "host": "h", "pid": "x", "commit": None, "verdict": "ok"}]
        ),
        2,
    ),
    ("huge-file", lambda case: os.truncate(case.record, 200 << 20), 2),
    ("fifo", fifo, 2),
    ("dev-zero", lambda case: case.replace_with_link(case.record, "/dev/zero"), 2),
    ("directory", lambda case: _replace_with_directory(case), 2),
]


def _replace_with_directory(case: Case) -> None:
    case.record.unlink()
    case.record.mkdir()


def _swap_copy_and_record(case: Case) -> None:
    """Another file as the run's copy, with the record's digest and size edited to match."""
    from resumeguard.io.hashing import digest_file

    case.copy.write_bytes(b"not the checkpoint that was saved")
    digest, size = digest_file(case.copy)
    field(*CKPT, "digest", value=digest)(case)
    field(*CKPT, "size", value=size)(case)


DIGEST_CASES: list[tuple[str, Edit, int]] = [
    ("record-and-copy-swapped", _swap_copy_and_record, 3),
    ("record-edited-one-field", field(*CKPT, "step", value=2), 3),
    ("record-extra-key", field("note", value="planted"), 3),
    ("config-digest-removed", lambda c: c.sidecar.unlink(), 3),
]


def _sidecar(change: Callable[[dict[str, Any]], None]) -> Edit:
    return lambda case: case.edit_json(case.sidecar, change)


SIDECAR_CASES: list[tuple[str, Edit, int]] = [
    ("sidecar-not-json", lambda c: c.sidecar.write_text("{"), 2),
    ("sidecar-not-utf8", lambda c: c.sidecar.write_bytes(b'{"config": "\xff"}'), 2),
    ("sidecar-schema-future", _sidecar(lambda d: d.update(schema=2)), 2),
    ("sidecar-config-list", _sidecar(lambda d: d.update(config=[])), 2),
    ("sidecar-dev-zero", lambda c: c.replace_with_link(c.sidecar, "/dev/zero"), 2),
    (
        "sidecar-digest-int",
        _sidecar(lambda d: d["config"]["resumeguard"].update(record_digest=1)),
        3,
    ),
    ("state-not-json", lambda c: c.state.write_text("{"), 2),
    ("state-pid-string", lambda c: c.edit_json(c.state, lambda d: d.update(pid="x")), 2),
    ("state-pid-huge", lambda c: c.edit_json(c.state, lambda d: d.update(pid=10**30)), 2),
    ("state-step-negative", lambda c: c.edit_json(c.state, lambda d: d.update(step=-3)), 2),
    ("state-heartbeat-int", lambda c: c.edit_json(c.state, lambda d: d.update(heartbeat=5)), 2),
    ("wandb-log-fifo", lambda c: _fifo_as(c, c.run_dir / "run-faultrun.wandb"), 0),
    (
        "wandb-log-dev-zero",
        lambda c: c.replace_with_link(c.run_dir / "run-faultrun.wandb", "/dev/zero"),
        0,
    ),
    (
        "summary-step-overflow",
        lambda c: (c.files / "wandb-summary.json").write_text('{"_step": 1e999}'),
        2,
    ),
    ("config-yaml-alias-bomb", lambda c: _alias_bomb(c), 2),
]


def _alias_bomb(case: Case) -> None:
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for i in range(1, 12):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    case.sidecar.unlink()
    (case.files / "config.yaml").write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    ("edit", "code"),
    [pytest.param(e, c, id=n) for n, e, c in RECORD_CASES + DIGEST_CASES + SIDECAR_CASES],
)
def test_show_refuses(case: Case, edit: Edit, code: int) -> None:
    edit(case)
    before = tree_digest(case.root)
    result = run_cli(case, "show", "--run-id", "faultrun", timeout=60)
    result.assert_refused(code)
    assert result.seconds < 30
    assert tree_digest(case.root) == before


@pytest.mark.parametrize(
    ("edit", "code", "command"),
    [
        pytest.param(raw_record("[]"), 2, "check", id="check-record-array"),
        pytest.param(field(*FP, "schema", value=99), 2, "check", id="check-schema-future"),
        pytest.param(fifo, 2, "check", id="check-record-fifo"),
        pytest.param(field(*CKPT, "file", value="/etc/passwd"), 2, "check", id="check-file-abs"),
        pytest.param(_swap_copy_and_record, 3, "check", id="check-swapped"),
        pytest.param(_swap_copy_and_record, 3, "restore", id="restore-swapped"),
        pytest.param(field(*CKPT, "size", value=-1), 2, "restore", id="restore-size-negative"),
        # A copy whose folder cannot be read (as root, a name too long to look up stands in
        # for a folder without permissions): bad input, as for an unreadable record.
        pytest.param(vouched(_copy_in(LONG_NAME)), 2, "check", id="check-copy-unreadable"),
        pytest.param(vouched(_copy_in(LONG_NAME)), 2, "restore", id="restore-copy-unreadable"),
    ],
)
def test_check_and_restore_refuse(case: Case, edit: Edit, code: int, command: str) -> None:
    edit(case)
    before = tree_digest(case.root)
    args = ["ckpt.pt", "--dest", str(case.dest)] if command == "restore" else []
    result = run_cli(case, command, "--run-id", "faultrun", *args, timeout=90)
    result.assert_refused(code)
    assert tree_digest(case.root) == before


def test_intact_run_checks_shows_and_restores(case: Case) -> None:
    """The look-alike: the untouched copy goes ahead everywhere."""
    assert run_cli(case, "show", "--run-id", "faultrun", "--json").code == 0
    assert run_cli(case, "check", "--run-id", "faultrun").code == 0
    result = run_cli(case, "restore", "--run-id", "faultrun", "ckpt.pt", "--dest", str(case.dest))
    assert result.code == 0, result
    assert (case.dest / "ckpt.pt").read_bytes() == case.copy.read_bytes()


def killed(case: Case) -> None:
    """Make the run look like its process was killed: W&B's log holds only its header."""
    log = case.run_dir / "run-faultrun.wandb"
    log.write_bytes(log.read_bytes()[:7])


def test_state_heartbeat_from_the_future_is_no_sign_of_life(case: Case) -> None:
    killed(case)
    case.edit_json(
        case.state,
        lambda d: d.update(
            state="running", heartbeat="2999-01-01T00:00:00+00:00", host="elsewhere"
        ),
    )
    result = run_cli(case, "check", "--run-id", "faultrun", "--json")
    assert result.code == 0, result
    assert "run.live" not in json.dumps(json.loads(result.out)["findings"])


def test_fresh_heartbeat_elsewhere_is_a_live_copy(case: Case) -> None:
    """The look-alike of the future heartbeat: a fresh one from another host blocks."""
    import datetime as dt

    now = dt.datetime.now(dt.timezone.utc).isoformat()
    killed(case)
    case.edit_json(case.state, lambda d: d.update(state="running", heartbeat=now, host="elsewhere"))
    result = run_cli(case, "check", "--run-id", "faultrun", "--json")
    assert result.code == 1 and "run.live" in result.out, result
