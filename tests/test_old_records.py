"""Records from an older resumeguard, as the checked-in fingerprint of each schema version holds
them: a fact its recorder did not collect is not recorded (info), never changed; a value it did
record still blocks when it differs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import cli_json

from resumeguard.integrations.training import BatchSize, batch_rules
from resumeguard.records import fingerprint
from resumeguard.verdict.findings import Verdict
from resumeguard.verdict.hints import explain, not_recorded
from resumeguard.verdict.judge import judge
from resumeguard.verdict.policy import preset

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "fingerprints"
OLD, NEW = FIXTURES / "schema-1.json", FIXTURES / "schema-2.json"


def edited(tmp_path: Path, source: Path, name: str, **config: object) -> Path:
    """A copy of fingerprint ``source`` with ``config`` over its config (None drops a key)."""
    data = json.loads(source.read_text())
    data["config"] = {k: v for k, v in {**data["config"], **config}.items() if v is not None}
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(data))
    return path


def diff(capsys: pytest.CaptureFixture[str], tmp_path: Path, a: Path, b: Path, *extra: str):
    code, report = cli_json(capsys, "diff", str(a), str(b), "--repo", str(tmp_path), *extra)
    return code, {f["path"]: f for f in report["findings"]}


def test_a_schema_1_record_does_not_say_which_facts_it_collected() -> None:
    assert fingerprint.load(OLD).facts is None
    assert fingerprint.load(NEW).facts == ("batch_size", "effective_batch_size")


def test_a_fact_the_old_record_could_not_hold_is_info(capsys, tmp_path: Path) -> None:
    code, found = diff(capsys, tmp_path, OLD, NEW)
    assert code == 0 and list(found) == ["config.effective_batch_size"]
    finding = found["config.effective_batch_size"]
    assert (finding["severity"], finding["recorded"], finding["current"]) == ("info", None, 32)
    assert "not recorded when the run started" in finding["message"]
    # A rule cannot raise it above info (nothing recorded differs); it can hide it.
    rules = tmp_path / "rules.toml"
    rules.write_text('block = ["config.*"]\n')
    assert diff(capsys, tmp_path, OLD, NEW, "--policy", str(rules))[0] == 0
    rules.write_text('ignore = ["config.effective_batch_size"]\n')
    assert diff(capsys, tmp_path, OLD, NEW, "--policy", str(rules)) == (0, {})


def test_what_a_record_did_hold_still_blocks(capsys, tmp_path: Path) -> None:
    cases = [
        # a fact the old record holds, now another value
        (OLD, edited(tmp_path, NEW, "a", batch_size=16), "config.batch_size", 32),
        # a key of the user's own config, which every schema recorded: added since
        (OLD, edited(tmp_path, NEW, "b", warmup=5), "config.warmup", None),
        # a record that keeps its facts: a changed one, and one it did not have then
        (
            NEW,
            edited(tmp_path, NEW, "c", effective_batch_size=64),
            "config.effective_batch_size",
            32,
        ),
        (
            edited(tmp_path, NEW, "d", effective_batch_size=None),
            NEW,
            "config.effective_batch_size",
            None,
        ),
    ]
    for recorded, current, path, value in cases:
        code, found = diff(capsys, tmp_path, recorded, current)
        assert code == 1 and found[path]["severity"] == "block", (current.name, found)
        assert found[path]["recorded"] == value


def test_a_batch_factor_blocks_while_the_record_lacks_the_effective_batch_size(
    tmp_path: Path,
) -> None:
    """A factor's warn relies on the product being compared: without it, the factor is judged
    as any config change."""
    policy = preset("strict").with_preset_rules(batch_rules(BatchSize(2, 1, 1, ("batch_size",))))
    factor = explain("config.batch_size", 4, 2)
    assert judge(None, [factor], policy).verdict is Verdict.WARN
    product = not_recorded("config.effective_batch_size", 2)
    assert judge(None, [factor, product], policy).verdict is Verdict.BLOCK


def test_every_schema_reads_and_only_schema_3_keeps_the_files_classification() -> None:
    """A record of schema 1-2 sorted untracked files by name (``code.logs`` None: judged so);
    schema 3 counts every untracked file as code and keeps its logs' heads."""
    from resumeguard.collect.code import CodeRecord

    for name, logs in (("schema-1.json", None), ("schema-2.json", None)):
        code = fingerprint.load(FIXTURES / name).code
        assert isinstance(code, CodeRecord) and code.logs is logs
    code = fingerprint.load(FIXTURES / "schema-3.json").code
    assert isinstance(code, CodeRecord) and code.logs is not None
    assert code.logs["slurm-1234.out"].size == 18
    assert fingerprint.SCHEMA == 3
