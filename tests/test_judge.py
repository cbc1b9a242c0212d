"""The one judge, as a table: order, verdict, what could not be read, and the report fields."""

from __future__ import annotations

import dataclasses

import pytest

from resumeguard.verdict.findings import Finding, Judged, Severity, Verdict
from resumeguard.verdict.judge import judge, report_of, verdict_of
from resumeguard.verdict.policy import Rule, preset
from resumeguard.verdict.runcontrol import _differing_keys, mark_run_control


def judged(path: str, severity: Severity, unknown: str = "") -> Judged:
    return Judged(Finding(path, 1, 2, f"{path} changed", "h", unknown=unknown), severity, "r")


@pytest.mark.parametrize(
    ("severities", "verdict"),
    [
        ((), Verdict.OK),
        ((Severity.INFO,), Verdict.OK),
        ((Severity.INFO, Severity.WARN), Verdict.WARN),
        ((Severity.WARN, Severity.BLOCK, Severity.INFO), Verdict.BLOCK),
        ((Severity.BLOCK,), Verdict.BLOCK),
    ],
)
def test_the_verdict_is_the_worst_severity(severities: tuple, verdict: Verdict) -> None:
    rows = [judged(f"config.k{i}", s) for i, s in enumerate(severities)]
    assert verdict_of(rows) is verdict
    assert report_of("r", rows).verdict is verdict


def test_findings_come_most_severe_first_then_by_path() -> None:
    rows = [
        judged("config.b", Severity.INFO),
        judged("config.a", Severity.WARN),
        judged("code.x", Severity.BLOCK),
        judged("config.a0", Severity.INFO),
    ]
    report = report_of("run", rows, "preset strict")
    assert [j.finding.path for j in report.findings] == [
        "code.x",
        "config.a",
        "config.a0",
        "config.b",
    ]
    assert (report.run, report.policy, report.reason) == ("run", "preset strict", "")


@pytest.mark.parametrize(
    ("others", "verdict"),
    [
        ((), Verdict.UNVERIFIED),
        ((Severity.WARN,), Verdict.UNVERIFIED),
        ((Severity.BLOCK,), Verdict.BLOCK),
    ],
)
def test_what_could_not_be_read_is_unverified_unless_something_blocks(
    others: tuple, verdict: Verdict
) -> None:
    rows = [
        judged("run.step", Severity.WARN, unknown="log damaged"),
        judged("run.live", Severity.INFO, unknown="state unreadable"),
        *(judged(f"config.k{i}", s) for i, s in enumerate(others)),
    ]
    report = report_of("r", rows, "p")
    assert report.verdict is verdict and report.policy == "p"
    assert len(report.findings) == len(rows)
    if verdict is Verdict.UNVERIFIED:
        assert report.reason == "log damaged; state unreadable"


def test_judge_applies_the_policy_and_drops_what_it_ignores() -> None:
    policy = preset("strict").with_rules([Rule("config.seed", Severity.IGNORE, "pyproject.toml")])
    policy = policy.with_rules([Rule("config.lr", Severity.WARN, "pyproject.toml")])
    found = [Finding(p, 1, 2, "m", "h") for p in ("config.seed", "config.lr", "code.commit")]
    report = judge("r", found, policy)
    assert [(j.finding.path, j.severity) for j in report.findings] == [
        ("code.commit", Severity.BLOCK),
        ("config.lr", Severity.WARN),
    ]
    assert report.verdict is Verdict.BLOCK and report.policy == policy.origin


@pytest.mark.parametrize(
    ("recorded", "current", "paths"),
    [
        ({"a": 1, "b": 2}, {"a": 1, "b": 3}, [("c", "b")]),
        ({"a": 1}, {"a": 1, "new": 0}, [("c", "new")]),
        ({"gone": 0, "a": 1}, {"a": 1}, [("c", "gone")]),
        ({"a": {"x": 1, "y": 2}}, {"a": {"x": 1, "y": 5}}, [("c", "a", "y")]),
        ({"a": 1}, 5, [("c",)]),
        (3, {"a": 1}, [("c",)]),
        ({1: "x", "z": 1}, {1: "y", "z": 1}, [("c", "1")]),  # keys of mixed types sort
        ({"a": None}, {}, [("c", "a")]),  # a None is a value, not a missing key
        ({}, {"a": None}, [("c", "a")]),
        ({"b": 1, "a": 1}, {"b": 2, "a": 2}, [("c", "a"), ("c", "b")]),
    ],
)
def test_the_keys_that_differ_are_found_by_their_whole_path(
    recorded: object, current: object, paths: list
) -> None:
    assert _differing_keys(("c",), recorded, current) == paths


def test_a_harmless_finding_says_which_families_and_a_length_names_the_block_rule() -> None:
    from resumeguard.verdict.hints import explain

    [length] = mark_run_control([explain("config.max_iters", 1, 2)])
    assert length.downgrade == "run-control"
    assert length.detail == "run-control config key (how long the run lasts)"
    assert length.hint == (
        "nothing to do: it steers the run, not what it computes (if this key also sets your LR "
        'schedule\'s length, add a block rule for it: block = ["config.max_iters"])'
    )
    [interval] = mark_run_control([explain("config.eval_interval", 1, 2)])
    assert interval.detail == "run-control config key (how often it evaluates, logs or saves)"
    assert interval.hint == "nothing to do: it steers the run, not what it computes"
    both = explain(
        "config.trainer",
        {"max_epochs": 1, "log_every_n_steps": 1},
        {"max_epochs": 2, "log_every_n_steps": 5},
    )
    [mixed] = mark_run_control([both])
    assert mixed.detail == (
        "run-control config key (how long the run lasts, how often it evaluates, logs or saves)"
    )
    [scheduled] = mark_run_control(
        [explain("config.max_steps", 10, 20)], {"lr_scheduler_type": "linear"}
    )
    assert scheduled.downgrade == "schedule-length"
    assert (
        scheduled.detail
        == "the linear (lr_scheduler_type) learning-rate schedule is derived from it"
    )
    assert scheduled.message.endswith(
        "; the linear (lr_scheduler_type) learning-rate schedule is derived from the run's "
        "length, so it changes from the resume on"
    )
    assert scheduled.hint.startswith("go ahead if the stretched schedule is what you want")
    # A flat key with dots is one key: neither its first nor its last part makes it run control.
    for dotted in ("config.lr_schedule.max_steps", "config.max_steps.decay"):
        [flat] = mark_run_control([explain(dotted, 1, 2)])
        assert flat.downgrade == "", dotted
    [other] = mark_run_control([explain("code.commit", "a", "b")])
    assert other.downgrade == "" and other.detail == ""


def test_the_run_output_folders_its_config_names() -> None:
    from resumeguard.verdict.runcontrol import output_dirs

    config = {
        "out_dir": "out",
        "output_dir": "/srv/r/results",  # absolute, inside the repository
        "default_root_dir": "/elsewhere/logs",  # outside: not the repository's
        "logging_dir": "../up",
        "save_dir": ".",  # the whole repository is never an output folder
        "dirpath": "",
        "checkpoint_dir": 5,
        "run_name": "exp",  # names no folder
        "lr_dir": "x",  # not a run-control key
    }
    assert output_dirs(config, "/srv/r") == ["out", "results"]
    assert output_dirs(config, None) == ["out"]
    assert output_dirs({"out_dir": "a", "ckpt_dir": "a"}, "/r") == ["a"]


def test_the_report_names_the_run_and_the_policy_that_judged() -> None:
    report = judge("run-1", [], preset("lenient"))
    assert (report.run, report.policy, report.verdict) == ("run-1", "", Verdict.OK)
    named = dataclasses.replace(preset("lenient"), origin="policy file mine.toml")
    assert judge("run-1", [], named).policy == "policy file mine.toml"
    assert report_of("run-2", []).policy == ""
