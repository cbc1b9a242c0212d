"""No exit 4 on user input: bad policies, timeouts, fingerprints to diff, files to digest."""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import pytest
from faultkit import Case, run_cli, tree_digest

Setup = Callable[[Case], list[str]]


def policy_file(text: str | bytes) -> Setup:
    def setup(case: Case) -> list[str]:
        path = case.root / "policy.toml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return ["check", "--run-id", "faultrun", "--policy", str(path)]

    return setup


def pyproject(text: str) -> Setup:
    def setup(case: Case) -> list[str]:
        (case.repo / "pyproject.toml").write_text(text)
        return ["check", "--run-id", "faultrun"]

    return setup


def policy_fifo(case: Case) -> list[str]:
    os.mkfifo(case.root / "policy.toml")
    return ["check", "--run-id", "faultrun", "--policy", str(case.root / "policy.toml")]


def fingerprints(current: str | bytes | None) -> Setup:
    """``diff`` of a real fingerprint (made by ``show --json``) against ``current``."""

    def setup(case: Case) -> list[str]:
        recorded = case.root / "recorded.json"
        recorded.write_text(json.dumps(json.loads(case.record.read_text())["fingerprint"]))
        other = case.root / "current.json"
        if current is None:
            os.mkfifo(other)
        else:
            other.write_bytes(current if isinstance(current, bytes) else current.encode())
        return ["diff", str(recorded), str(other)]

    return setup


def args(*given: str) -> Setup:
    return lambda case: list(given)


def digest_of(make: Callable[[Case], str]) -> Setup:
    return lambda case: ["digest", make(case)]


def _fifo_path(case: Case) -> str:
    os.mkfifo(case.root / "pipe")
    return str(case.root / "pipe")


ONLINE = {"WANDB_MODE": "online", "WANDB_API_KEY": "x" * 40, "WANDB_BASE_URL": "http://127.0.0.1:9"}

CASES: list[tuple[str, Setup, dict[str, str], int]] = [
    ("policy-ignore-int", policy_file("ignore = 5\n"), {}, 2),
    ("policy-preset-int", policy_file("preset = 5\n"), {}, 2),
    ("policy-tool-string", policy_file('tool = "x"\n'), {}, 2),
    ("policy-tool-resumeguard-int", policy_file("[tool]\nresumeguard = 5\n"), {}, 2),
    ("policy-not-utf8", policy_file(b'ignore = ["\xff"]\n'), {}, 2),
    ("policy-invalid-toml", policy_file("ignore = [\n"), {}, 2),
    ("policy-missing", args("check", "--run-id", "faultrun", "--policy", "nope.toml"), {}, 2),
    ("policy-fifo", policy_fifo, {}, 2),
    # Bad input is reported before the store is asked: not "no such run" (exit 3).
    (
        "policy-missing-no-run",
        args("check", "--run-id", "nosuchrun", "--policy", "nope.toml"),
        {},
        2,
    ),
    (
        "policy-preset-unknown-no-run",
        args("check", "--run-id", "nosuchrun", "--policy", "x"),
        {},
        2,
    ),
    (
        "policy-env-unknown-no-run",
        args("check", "--run-id", "nosuchrun"),
        {"RESUMEGUARD_POLICY": "x"},
        2,
    ),
    ("pyproject-tool-int", pyproject("tool = 5\n"), {}, 2),
    ("pyproject-tool-resumeguard-list", pyproject("[tool]\nresumeguard = [1]\n"), {}, 2),
    ("pyproject-not-toml", pyproject("[tool.resumeguard\n"), {}, 2),
    ("timeout-inf", args("check", "--run-id", "faultrun", "--timeout", "inf"), {}, 2),
    ("timeout-nan", args("check", "--run-id", "faultrun", "--timeout", "nan"), {}, 2),
    ("timeout-zero", args("check", "--run-id", "faultrun", "--timeout", "0"), {}, 2),
    ("timeout-word", args("check", "--run-id", "faultrun", "--timeout", "soon"), {}, 2),
    (
        "env-timeout-nan",
        args("check", "--run-id", "e/p/faultrun"),
        {**ONLINE, "RESUMEGUARD_TIMEOUT": "nan"},
        2,
    ),
    (
        "env-timeout-inf",
        args("check", "--run-id", "e/p/faultrun"),
        {**ONLINE, "RESUMEGUARD_TIMEOUT": "inf"},
        2,
    ),
    (
        "env-timeout-negative",
        args("check", "--run-id", "e/p/faultrun"),
        {**ONLINE, "RESUMEGUARD_TIMEOUT": "-1"},
        2,
    ),
    ("diff-deep", fingerprints("[" * 100_000 + "]" * 100_000), {}, 2),
    ("diff-deep-object", fingerprints('{"a":' * 5000 + "1" + "}" * 5000), {}, 2),
    ("diff-not-utf8", fingerprints(b'{"schema": 1, "code": "\xff"}'), {}, 2),
    ("diff-fifo", fingerprints(None), {}, 2),
    ("diff-nan", fingerprints('{"schema": NaN, "code": {}, "deps": {}}'), {}, 2),
    ("diff-schema-huge", fingerprints('{"schema": 1e999, "code": {}, "deps": {}}'), {}, 2),
    ("diff-missing", args("diff", "a.json", "b.json"), {}, 2),
    ("digest-fifo", digest_of(_fifo_path), {}, 2),
    ("digest-dev-zero", args("digest", "/dev/zero"), {}, 2),
    ("digest-directory", digest_of(lambda case: str(case.root)), {}, 2),
    ("run-id-reserved-chars", args("check", "--run-id", "a;b"), {}, 2),
    ("run-id-empty", args("check", "--run-id", ""), {}, 2),
    (
        "restore-rank-negative",
        args("restore", "--run-id", "faultrun", "ckpt.pt", "--rank", "-1"),
        {},
        2,
    ),
    ("restore-unknown-name", args("restore", "--run-id", "faultrun", "nope.pt"), {}, 1),
]


@pytest.mark.parametrize(
    ("setup", "env", "code"), [pytest.param(s, e, c, id=n) for n, s, e, c in CASES]
)
def test_bad_input_is_one_line(case: Case, setup: Setup, env: dict[str, str], code: int) -> None:
    argv = setup(case)
    before = tree_digest(case.root)
    result = run_cli(case, *argv, timeout=90, **env)
    result.assert_refused(code)
    assert result.seconds < 60
    assert tree_digest(case.root) == before


def test_a_valid_policy_file_goes_ahead(case: Case) -> None:
    """The look-alike of the bad policies."""
    policy = case.root / "policy.toml"
    policy.write_text('[tool.resumeguard]\npreset = "lenient"\nignore = ["code.files.docs/**"]\n')
    assert run_cli(case, "check", "--run-id", "faultrun", "--policy", str(policy)).code == 0
