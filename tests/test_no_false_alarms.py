"""The resumes people actually do go ahead under the default preset; each harmful look-alike still
blocks. Real git repositories, real W&B offline runs, real torch optimizers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import cli, cli_json, commit_all, git, make_repo, offline_project, write

import resumeguard
from resumeguard.collect.sourcechange import Change, python_change
from resumeguard.options import Options
from resumeguard.verdict.runcontrol import (
    INTERVALS,
    KEYS,
    LENGTH,
    OUTPUTS,
    RESUME,
    RUN_CONTROL_KEYS,
    SECTIONS,
    RunControlKey,
    run_control_family,
    run_control_key,
)

TRAIN = '''\
"""Train a tiny model."""
import torch

LR = 1e-3  # the peak learning rate


def step(x):
    """One step."""
    return x * 2
'''
FILES = {"train.py": TRAIN, ".gitignore": "*.pt\n", "requirements.txt": "torch>=2.1\n"}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return offline_project(tmp_path, monkeypatch, FILES)


def start(run_id: str, repo: Path, **kw):
    return resumeguard.init(project="p", id=run_id, repo=repo, **kw)


def record_run(run_id: str, repo: Path, **kw) -> None:
    start(run_id, repo, **kw).finish()


def check(capsys, run_id: str, repo: Path) -> tuple[int, dict[str, dict]]:
    code, report = cli_json(capsys, "check", "--run-id", run_id, "--repo", str(repo))
    return code, {f["path"]: f for f in report["findings"]}


# --- 1. Run-control config keys ------------------------------------------------------------------

NANOGPT = {
    "learning_rate": 6e-4,
    "batch_size": 12,
    "max_iters": 5000,
    "eval_interval": 250,
    "log_interval": 10,
    "out_dir": "out-shakespeare",
    "init_from": "scratch",
    "always_save_checkpoint": False,
}


def test_extending_the_run_goes_ahead(project: Path) -> None:
    record_run("rc1", project, config=NANOGPT)
    longer = {**NANOGPT, "max_iters": 10000, "init_from": "resume", "eval_interval": 500}
    run = start("rc1", project, config=longer, resume="must")
    assert run.config["max_iters"] == 10000
    run.finish()


def test_run_control_keys_are_info_and_the_lr_still_blocks(project: Path) -> None:
    from resumeguard.decide.intent import ResumeIntent
    from resumeguard.decide.pipeline import decide

    record_run("rc2", project, config=NANOGPT)
    longer = {**NANOGPT, "max_iters": 10000, "init_from": "resume", "out_dir": "out-2"}
    report = decide(ResumeIntent("rc2", "must"), Options(repo=project), config=longer).report
    assert report.verdict.value == "ok"
    judged = {j.finding.path: j for j in report.findings}
    assert set(judged) == {"config.max_iters", "config.init_from", "config.out_dir"}
    assert {j.severity.value for j in judged.values()} == {"info"}
    assert judged["config.max_iters"].rule.startswith("run-control config key")
    # The harmful look-alike: the learning rate is not run control.
    with pytest.raises(resumeguard.ResumeBlocked) as blocked:
        start("rc2", project, config={**longer, "learning_rate": 1e-3}, resume="must")
    assert [f.path for f in blocked.value.report.blocking] == ["config.learning_rate"]


def test_nested_run_control_keys_are_info_and_nested_computation_blocks(project: Path) -> None:
    from resumeguard.decide.intent import ResumeIntent
    from resumeguard.decide.pipeline import decide

    cfg = {"trainer": {"max_epochs": 3, "log_every_n_steps": 10}, "optim": {"lr": 1e-3}}
    record_run("rc4", project, config=cfg)
    longer = {**cfg, "trainer": {"max_epochs": 6, "log_every_n_steps": 50}}
    report = decide(
        ResumeIntent("rc4", "must"), Options(repo=project), config=longer, claim=False
    ).report
    assert [(j.finding.path, j.severity.value) for j in report.findings] == [
        ("config.trainer", "info")
    ]
    mixed = {**longer, "trainer": {**longer["trainer"], "gradient_clip_val": 1.0}}
    report = decide(
        ResumeIntent("rc4", "must"), Options(repo=project), config=mixed, claim=False
    ).report
    assert [f.path for f in report.blocking] == ["config.trainer"]


def test_a_rule_overrides_the_run_control_list(project: Path) -> None:
    from resumeguard.decide.intent import ResumeIntent
    from resumeguard.decide.pipeline import decide

    (project / "pyproject.toml").write_text('[tool.resumeguard]\nblock = ["config.max_iters"]\n')
    commit_all(project, "policy")
    record_run("rc3", project, config=NANOGPT)
    longer = {**NANOGPT, "max_iters": 10000}
    report = decide(ResumeIntent("rc3", "must"), Options(repo=project), config=longer).report
    assert [f.path for f in report.blocking] == ["config.max_iters"]


def test_run_control_names_from_the_frameworks() -> None:
    import dataclasses
    import inspect

    import lightning
    from transformers import TrainingArguments

    hf = {f.name for f in dataclasses.fields(TrainingArguments)}
    lightning_args = set(inspect.signature(lightning.Trainer.__init__).parameters)
    for name in ("num_train_epochs", "max_steps", "output_dir", "logging_steps", "save_steps"):
        assert name in hf and name in RUN_CONTROL_KEYS
    for name in ("max_epochs", "val_check_interval", "log_every_n_steps", "default_root_dir"):
        assert name in lightning_args and name in RUN_CONTROL_KEYS
    # Computation stays out of the list.
    for name in ("learning_rate", "lr", "warmup_steps", "batch_size", "seed", "weight_decay"):
        assert run_control_family(name) is None
    # Matched exactly, as the frameworks name them.
    assert run_control_family("max_iters") == "how long the run lasts"
    assert run_control_family("Max-Iters") is None


@pytest.mark.parametrize("row", KEYS, ids=lambda r: r.name)
def test_each_run_control_key_is_one_row_with_its_reason(row: RunControlKey) -> None:
    """The registry is data: one row per key, each saying what it steers and who names it."""
    assert run_control_key((row.name,)) is row
    assert run_control_family(row.name) == row.family
    assert run_control_family(f"trainer/{row.name}") == (
        row.family if row.origin == SECTIONS["trainer"] else None
    )
    assert row.family in {LENGTH, RESUME, INTERVALS, OUTPUTS} and row.origin
    in_section = run_control_key(("trainer", row.name))
    assert (in_section is row) == (row.origin == SECTIONS["trainer"])
    assert run_control_key(("trainer/" + row.name,)) is in_section
    assert run_control_key(("trainer/" + row.name, "more")) is None
    for parent in ("scheduler", "warmup", "lr_schedule", "data", "optim"):
        assert run_control_key((parent, row.name)) is None, "never by the last name"


def test_keys_that_change_the_data_or_the_schedule_are_not_run_control() -> None:
    for name in ("ignore_data_skip", "data_seed", "seed", "warmup_steps", "total_steps"):
        assert run_control_key((name,)) is None
        assert run_control_family(name) is None
    assert len({r.name for r in KEYS}) == len(KEYS), "one row per key"


@pytest.mark.parametrize(
    ("recorded", "current"),
    [
        ({"scheduler": {"epochs": 10}}, {"scheduler": {"epochs": 20}}),
        ({"warmup": {"max_steps": 100}}, {"warmup": {"max_steps": 200}}),
        ({"lr_schedule": {"total_steps": 1000}}, {"lr_schedule": {"total_steps": 2000}}),
        ({"model": {"trainer": {"max_epochs": 3}}}, {"model": {"trainer": {"max_epochs": 6}}}),
        ({"ignore_data_skip": False}, {"ignore_data_skip": True}),
        ({"data_seed": 1}, {"data_seed": 2}),
    ],
)
def test_a_schedule_or_data_key_blocks_where_run_control_goes_ahead(
    recorded: dict, current: dict
) -> None:
    """The harmful change blocks; the run-control look-alike beside it goes ahead."""
    from resumeguard.verdict.hints import explain
    from resumeguard.verdict.judge import judge
    from resumeguard.verdict.policy import preset
    from resumeguard.verdict.runcontrol import mark_run_control

    key = next(iter(recorded))
    found = mark_run_control([explain(f"config.{key}", recorded[key], current[key])], current)
    assert judge(None, found, preset("strict")).verdict.value == "block"
    harmless = mark_run_control([explain("config.trainer", {"max_epochs": 3}, {"max_epochs": 6})])
    assert judge(None, harmless, preset("strict")).verdict.value == "ok"


def build_report(findings: list) -> Any:
    from resumeguard.verdict.judge import judge
    from resumeguard.verdict.policy import preset

    return judge(None, findings, preset("strict"))


def test_a_transformers_run_length_with_a_decaying_schedule_is_a_warning_naming_it() -> None:
    """Transformers derives its scheduler from max_steps / num_train_epochs: with a decaying
    schedule a longer run stretches it (warn, named); with a constant one it is run control."""
    from resumeguard.verdict.hints import explain
    from resumeguard.verdict.judge import judge
    from resumeguard.verdict.policy import preset
    from resumeguard.verdict.runcontrol import mark_run_control

    for key in ("max_steps", "num_train_epochs"):
        change = explain(f"config.{key}", 100, 200)
        decaying = {key: 200, "lr_scheduler_type": "cosine"}
        [judged] = judge(None, mark_run_control([change], decaying), preset("strict")).findings
        assert judged.severity.value == "warn"
        assert "cosine (lr_scheduler_type) learning-rate schedule" in judged.finding.message
        assert judged.finding.hint == (
            "go ahead if the stretched schedule is what you want; to keep the recorded one, "
            "resume with the recorded length (or set a constant schedule)"
        )
        constant = {key: 200, "lr_scheduler_type": "constant"}
        [judged] = judge(None, mark_run_control([change], constant), preset("strict")).findings
        assert judged.severity.value == "info"
    # An interval key of the same framework does not set the schedule's length.
    found = mark_run_control([explain("config.save_steps", 1, 2)], {"lr_scheduler_type": "cosine"})
    assert build_report(found).findings[0].severity.value == "info"
    # nanoGPT's max_iters is not a Transformers key: the scheduler type does not apply to it.
    found = mark_run_control([explain("config.max_iters", 1, 2)], {"lr_scheduler_type": "linear"})
    assert judge(None, found, preset("strict")).findings[0].severity.value == "info"


# --- 2. Comment-only edits -----------------------------------------------------------------------


def snapshot(capsys, repo: Path, name: str) -> Path:
    code, out, _ = cli(capsys, "fingerprint", "--repo", str(repo), "--json")
    assert code == 0
    path = repo.parent / f"{name}.json"
    path.write_text(out)
    return path


def diff(capsys, repo: Path, a: Path, b: Path) -> tuple[int, dict[str, dict]]:
    code, report = cli_json(capsys, "diff", str(a), str(b), "--repo", str(repo))
    return code, {f["path"]: f for f in report["findings"]}


COMMENT_ONLY = TRAIN.replace("# the peak learning rate", "# peak LR, see the paper\n\n").replace(
    "    return x * 2", "    return x*2   # doubled"
)


@pytest.mark.parametrize("commit", [True, False], ids=["committed", "dirty"])
def test_comment_only_edit_is_info_and_a_token_change_blocks(
    capsys, project: Path, commit: bool
) -> None:
    a = snapshot(capsys, project, "a")
    write(project, {"train.py": COMMENT_ONLY})
    if commit:
        commit_all(project, "comments")
    code, found = diff(capsys, project, a, snapshot(capsys, project, "b"))
    assert code == 0
    edit = found["code.files.train.py"]
    assert edit["severity"] == "info" and "comments/whitespace only" in edit["message"]
    assert edit["message"] == "train.py: comments/whitespace only (the same Python tokens)"
    assert edit["hint"] == "nothing to do: Python runs the same code"
    assert edit["rule"].startswith("comments/whitespace only: comments/whitespace only: the same")
    # The harmful look-alike: one token differs.
    write(project, {"train.py": COMMENT_ONLY.replace("LR = 1e-3", "LR = 1e-4")})
    code, found = diff(capsys, project, a, snapshot(capsys, project, "c"))
    assert code == 1 and found["code.files.train.py"]["severity"] == "block"


def test_a_changed_interpreter_line_blocks_and_a_first_line_comment_does_not(
    capsys, project: Path
) -> None:
    write(project, {"train.py": "#!/usr/bin/env python3\n" + TRAIN})
    commit_all(project, "executable")
    a = snapshot(capsys, project, "a")
    write(project, {"train.py": "#!/usr/bin/env python3\n# the trainer\n" + TRAIN})
    code, found = diff(capsys, project, a, snapshot(capsys, project, "b"))
    assert code == 0 and found["code.files.train.py"]["severity"] == "info"
    write(project, {"train.py": "#!/usr/bin/env python2\n" + TRAIN})
    code, found = diff(capsys, project, a, snapshot(capsys, project, "c"))
    assert code == 1 and found["code.files.train.py"]["severity"] == "block"
    assert "comments" not in found["code.files.train.py"]["message"]


def test_comment_edit_on_a_run_recorded_dirty(capsys, project: Path) -> None:
    write(project, {"train.py": TRAIN.replace("LR = 1e-3", "LR = 3e-4")})
    a = snapshot(capsys, project, "a")  # recorded with an uncommitted edit
    write(project, {"train.py": TRAIN.replace("LR = 1e-3", "LR = 3e-4  # tuned")})
    code, found = diff(capsys, project, a, snapshot(capsys, project, "b"))
    assert code == 0 and found["code.files.train.py"]["severity"] == "info"
    git(project, "checkout", "train.py")  # back to the committed LR: a real change
    code, found = diff(capsys, project, a, snapshot(capsys, project, "c"))
    assert code == 1 and found["code.files.train.py"]["severity"] == "block"


def test_docstring_edit_blocks_and_says_so(capsys, project: Path) -> None:
    a = snapshot(capsys, project, "a")
    write(project, {"train.py": TRAIN.replace('"""One step."""', '"""Double the input."""')})
    code, found = diff(capsys, project, a, snapshot(capsys, project, "b"))
    assert code == 1
    edit = found["code.files.train.py"]
    assert edit["message"] == (
        "train.py: docstrings only; a docstring is a value the program can read (__doc__, "
        "argparse or docopt help), so it counts as code"
    )
    assert edit["hint"] == (
        "restore the docstrings of train.py, or accept this once with a rule "
        '(info = ["code.files.train.py"]) if nothing reads them'
    )


def test_python_change_kinds() -> None:
    src = TRAIN.encode()
    assert python_change(src, COMMENT_ONLY.encode()) is Change.LAYOUT
    assert python_change(src, src.replace(b"\n", b"\r\n")) is Change.LAYOUT
    assert python_change(src, src.replace(b"    ", b"  ")) is Change.LAYOUT
    assert python_change(src, src.replace(b"    return", b"        return")) is Change.CODE
    assert python_change(src, src.replace(b"x * 2", b"(x * 2)")) is Change.CODE
    assert python_change(src, src.replace(b'"""One step."""\n', b"")) is Change.DOCSTRINGS
    assert python_change(src, b"# -*- coding: latin-1 -*-\n" + src) is Change.CODE
    assert python_change(src, src + b"(") is Change.CODE


@pytest.mark.parametrize(
    ("old", "new", "kind"),
    [
        # The interpreter line picks the Python that runs the file: code.
        (b"#!/usr/bin/env python3\n", b"#!/usr/bin/env python3.8\n", Change.CODE),
        (b"#!/usr/bin/env python3\n", b"", Change.CODE),
        (b"", b"#!/opt/conda/bin/python\n", Change.CODE),
        # The encoding declaration changes how the file decodes: code, on line 1 or 2.
        (b"# -*- coding: utf-8 -*-\n", b"# -*- coding: latin-1 -*-\n", Change.CODE),
        (b"#!/bin/python\n# coding: utf-8\n", b"#!/bin/python\n# coding: cp1252\n", Change.CODE),
        (b"# coding: utf-8\n", b"# vim: set fileencoding=latin-1 :\n", Change.CODE),
        # The same codec spelled otherwise: the declaration still changed.
        (b"# -*- coding: utf-8 -*-\n", b"# vim: set fileencoding=utf-8 :\n", Change.CODE),
        (b"#!/bin/python\n# coding: utf-8\n", b"#!/bin/python\n# coding: utf8\n", Change.CODE),
        # Dropping a declaration of the default codec (line 2) still changes the declaration.
        (b"#!/bin/python\n# coding: utf-8\n", b"#!/bin/python\n", Change.CODE),
        # Their look-alikes are comments: a first-line comment, "#!" further down, a line 3
        # that mentions a coding (Python reads declarations on lines 1-2 only).
        (b"# train the model\n", b"# train the model, faster\n", Change.LAYOUT),
        (b"\n\n#!/usr/bin/env python3\n", b"\n\n#!/usr/bin/env python2\n", Change.LAYOUT),
        (b"\n\n# coding: utf-8\n", b"\n\n# coding: latin-1\n", Change.LAYOUT),
        (b"#!/usr/bin/env python3\n", b"#!/usr/bin/env python3\n# note\n", Change.LAYOUT),
    ],
)
def test_the_interpreter_line_and_encoding_declaration_are_code(
    old: bytes, new: bytes, kind: Change
) -> None:
    body = TRAIN.encode()
    assert python_change(old + body, new + body) is kind


# --- 3. Files the run writes ---------------------------------------------------------------------

RUN_OUTPUT = {
    "out/config.json": "{}\n",
    "out/training_args.bin": "\0",
    "out/model.safetensors": "\0",
    "out/checkpoint-500/trainer_state.json": "{}\n",
    "out/checkpoint-500/optimizer.pt": "\0",
    "lightning_logs/version_0/hparams.yaml": "lr: 0.001\n",
    "lightning_logs/version_0/metrics.csv": "step,loss\n",
    "outputs/2024-01-01/12-00-00/.hydra/config.yaml": "lr: 0.001\n",
    "runs/Jan01/events.out.tfevents.1.host": "\0",
    "results/metrics.csv": "step,loss\n",  # the run's own output_dir (config: results_dir)
}


def test_files_the_run_writes_do_not_block_but_new_source_does(capsys, project: Path) -> None:
    """What appears after the run was recorded inside a folder the run writes is reported at
    info with the reason; new source, or a new file elsewhere, is code."""
    config = {"results_dir": "results"}
    a = with_config(snapshot(capsys, project, "a"), config)
    write(project, RUN_OUTPUT)
    code, found = diff(capsys, project, a, with_config(snapshot(capsys, project, "b"), config))
    shown = {f"code.untracked.{p}" for p in RUN_OUTPUT if not p.endswith(".pt")}  # ignored
    assert code == 0 and set(found) == shown
    assert {f["severity"] for f in found.values()} == {"info"}
    assert "appeared since the run was recorded" in found["code.untracked.out/config.json"]["rule"]
    for path, text in (
        ("src/augment.py", "FLIP = 1\n"),
        ("conf/extra.yaml", "lr: 1\n"),
        ("outputs/patch.py", "X = 1\n"),  # source, even in an output folder
        ("train.log", "step 1\n"),  # beside nothing the run wrote: not left out
    ):
        write(project, {path: text})
        code, found = diff(capsys, project, a, with_config(snapshot(capsys, project, "c"), config))
        assert code == 1 and found[f"code.untracked.{path}"]["severity"] == "block"
        (project / path).unlink()


def with_config(snapshot_path: Path, config: dict) -> Path:
    """The fingerprint file with ``config`` as the run's recorded config."""
    data = json.loads(snapshot_path.read_text())
    data["config"] = config
    snapshot_path.write_text(json.dumps(data))
    return snapshot_path


RECORDED_FILES = {
    "runs/config.yaml": "lr: 0.1\n",
    "outputs/conf/train.yaml": "lr: 0.1\n",
    "multirun/sweep.yaml": "lr: 0.1\n",
    "mlruns/0/params.json": "{}\n",
    "exp/config.yaml": "lr: 0.1\n",  # a .pt lands beside it later
    "launch.sh": "python train.py\n",
    "job.sbatch": "#SBATCH -N 1\n",
    "job.slurm": "#SBATCH -N 1\n",
    "Makefile": "train:\n\tpython train.py\n",
    "Dockerfile": "FROM python:3.11\n",
    "rules.mk": "LR := 0.1\n",
    "TRAINCONF": "lr=0.1\n",
    "params.weird": "lr=0.1\n",
    "notes.txt": "lr=0.1\n",
}


@pytest.mark.parametrize("path", RECORDED_FILES)
def test_a_file_present_when_recorded_is_code_wherever_it_sits(
    capsys, project: Path, path: str
) -> None:
    """The classification is the record's: a file that existed then and is not ignored blocks
    when it changes, whatever its folder, suffix or neighbours today; unchanged, it goes ahead
    even with run output appearing beside it."""
    write(project, RECORDED_FILES)
    a = snapshot(capsys, project, "a")
    write(project, {"exp/model.pt": "\0", "runs/new.csv": "x\n"})  # the run's output, beside it
    code, found = diff(capsys, project, a, snapshot(capsys, project, "b"))
    assert code == 0 and {f["severity"] for f in found.values()} == {"info"}
    write(project, {path: "changed\n" + RECORDED_FILES[path]})
    code, found = diff(capsys, project, a, snapshot(capsys, project, "c"))
    assert code == 1 and found[f"code.untracked.{path}"]["severity"] == "block"


@pytest.mark.parametrize("log", ["slurm-1234.out", "nohup.out", "logs/train.log"])
def test_a_log_that_only_grew_is_info_and_a_rewritten_one_blocks(
    capsys, project: Path, log: str
) -> None:
    write(project, {log: "attempt 1: step 1\n"})
    a = snapshot(capsys, project, "a")
    with open(project / log, "a") as f:
        f.write("attempt 2: step 2\n")  # what a requeued job appends
    code, found = diff(capsys, project, a, snapshot(capsys, project, "b"))
    assert code == 0
    grown = found[f"code.untracked.{log}"]
    assert grown["severity"] == "info" and "only grew" in grown["rule"]
    write(project, {log: "attempt 1: step 9\nattempt 2: step 2\n"})  # its first bytes changed
    code, found = diff(capsys, project, a, snapshot(capsys, project, "c"))
    assert code == 1 and found[f"code.untracked.{log}"]["severity"] == "block"


def test_a_config_appended_to_is_code(capsys, project: Path) -> None:
    """Only logs may grow: a YAML whose later key wins changes the run."""
    write(project, {"extra.yaml": "lr: 0.1\n"})
    a = snapshot(capsys, project, "a")
    with open(project / "extra.yaml", "a") as f:
        f.write("lr: 0.5\n")
    code, found = diff(capsys, project, a, snapshot(capsys, project, "b"))
    assert code == 1 and found["code.untracked.extra.yaml"]["severity"] == "block"


def test_a_record_of_schema_2_is_judged_by_the_names_as_then(capsys, project: Path) -> None:
    """An older record sorted untracked files by their names: what it left out (a log, run
    output) has nothing recorded to compare with, and stays out."""
    write(project, {"runs/config.yaml": "lr: 0.1\n", "train.log": "step 1\n"})
    a = snapshot(capsys, project, "a")
    data = json.loads(a.read_text())
    data["schema"] = 2
    del data["code"]["logs"]
    data["code"]["untracked"] = {}
    data["code"]["skipped"] = {
        "runs/config.yaml": "configuration written into the run output folder runs/",
        "train.log": "not source or configuration (run output such as a log)",
    }
    a.write_text(json.dumps(data))
    write(project, {"runs/config.yaml": "lr: 0.5\n", "train.log": "rewritten\n"})
    code, found = diff(capsys, project, a, snapshot(capsys, project, "b"))
    assert (code, found) == (0, {})
    write(project, {"src/new.py": "X = 1\n"})
    code, found = diff(capsys, project, a, snapshot(capsys, project, "c"))
    assert code == 1 and found["code.untracked.src/new.py"]["severity"] == "block"


def test_following_the_gitignore_hint_never_blocks(capsys, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "p", {"train.py": TRAIN})  # no .gitignore yet
    write(repo, {"notes.py": "X = 1\n"})
    a = snapshot(capsys, repo, "a")
    # A new .gitignore (untracked), then a committed one, then an edit of it: never a block.
    write(repo, {".gitignore": "train.log\nout/\n"})
    code, found = diff(capsys, repo, a, snapshot(capsys, repo, "b"))
    assert code == 0 and found[".".join(["code.untracked", ".gitignore"])]["severity"] == "info"
    git(repo, "add", ".gitignore")
    git(repo, "commit", "-qm", "ignore")
    code, found = diff(capsys, repo, a, snapshot(capsys, repo, "c"))
    assert code == 0 and found[".".join(["code.files", ".gitignore"])]["severity"] == "info"
    write(repo, {".gitignore": "train.log\nout/\n*.tmp\n"})
    code, found = diff(capsys, repo, a, snapshot(capsys, repo, "d"))
    assert code == 0
    # The untracked source file recorded at the start still counts.
    (repo / "notes.py").unlink()
    code, found = diff(capsys, repo, a, snapshot(capsys, repo, "e"))
    assert code == 1 and found["code.untracked.notes.py"]["severity"] == "block"


# --- 5. A class change is one finding ------------------------------------------------------------


def test_class_change_is_one_finding(project: Path) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 1))
    adamw = torch.optim.AdamW(model.parameters(), lr=1e-3)
    record_run("cls1", project, config={"lr": 1e-3}, optimizer=adamw, model=model)
    sgd = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    with pytest.raises(resumeguard.ResumeBlocked) as blocked:
        start("cls1", project, config={"lr": 1e-3}, optimizer=sgd, model=model, resume="must")
    paths = [j.finding.path for j in blocked.value.report.findings]
    assert paths == ["optimizer.class"]
    # The harmless look-alike: the same class goes ahead.
    again = torch.optim.AdamW(model.parameters(), lr=1e-3)
    start("cls1", project, config={"lr": 1e-3}, optimizer=again, model=model, resume="must")


# --- 4. Scheduled learning rates -----------------------------------------------------------------


def _build(lr: float = 1e-3, scheduled: bool = True):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 1))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 10))
    return model, opt, sched if scheduled else None


def _train(model, opt, sched, steps: int = 5, manual_lr: float | None = None) -> None:
    for it in range(steps):
        if manual_lr is not None:  # nanoGPT sets the lr itself at every iteration
            for group in opt.param_groups:
                group["lr"] = manual_lr * (it + 1) / 10
        loss = model(torch.randn(8, 4)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()


def _save(run, model, opt, sched, **kw) -> None:
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": 5}
    if sched is not None:
        state["scheduler"] = sched.state_dict()
    resumeguard.save_checkpoint(run, state, "ckpt.pt", **kw)


def _resume_warnings(run_id, repo, model, opt, caplog) -> list[str]:
    run = start(run_id, repo, config={"lr": 1e-3}, resume="must")
    caplog.clear()
    with caplog.at_level("WARNING", logger="resumeguard"):
        resumeguard.restore_checkpoint(run, "ckpt.pt", model=model, optimizer=opt)
    run.finish()
    return [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]


def _changed_lr_warning(
    run_id: str,
    repo: Path,
    caplog,
    new_lr: float,
    scheduled: bool = True,
    optimizer_at: str | None = None,
) -> str:
    """Record run ``run_id`` at lr 1e-3 and save its checkpoint: the lr driven by a scheduler, or
    (``scheduled`` false) set by hand at every step; the optimizer given at the "start", at the
    "save" or (None) neither. A resume at the same lr warns of nothing; one at ``new_lr`` gives
    exactly one warning, returned."""
    model, opt, sched = _build(scheduled=scheduled)
    given = {"optimizer": opt}
    run = start(run_id, repo, config={"lr": 1e-3}, **(given if optimizer_at == "start" else {}))
    _train(model, opt, sched, manual_lr=None if scheduled else 1e-3)
    _save(run, model, opt, sched, **(given if optimizer_at == "save" else {}))
    run.finish()
    model, opt, _ = _build(scheduled=scheduled)
    assert _resume_warnings(run_id, repo, model, opt, caplog) == []
    model, opt, _ = _build(lr=new_lr, scheduled=scheduled)
    [warning] = _resume_warnings(run_id, repo, model, opt, caplog)
    return warning


def test_a_torch_scheduler_does_not_warn_and_a_changed_lr_does(project: Path, caplog) -> None:
    # The state dict only: the scheduler's initial_lr tells.
    warning = _changed_lr_warning("lr1", project, caplog, 5e-4)
    assert "lr is configured as 0.0005 now, 0.001 when the checkpoint was saved" in warning
    assert "0.0005" in warning and "is in force" in warning
    assert "initial_lr" in warning and "base_lrs" in warning  # how to apply the new one


def test_code_that_sets_the_lr_each_step_does_not_warn(project: Path, caplog) -> None:
    # The optimizer given at the save: its construction is recorded.
    warning = _changed_lr_warning(
        "lr2", project, caplog, 3e-3, scheduled=False, optimizer_at="save"
    )
    assert "0.003 now, 0.001 when the checkpoint was saved" in warning
    assert "0.0005" in warning  # the checkpoint's scheduled lr, in force after loading


def test_lr_configured_at_start_counts_for_state_dict_checkpoints(project: Path, caplog) -> None:
    # A state dict only is saved: the start's configuration is used.
    warning = _changed_lr_warning(
        "lr3", project, caplog, 2e-3, scheduled=False, optimizer_at="start"
    )
    assert "0.002 now, 0.001 when" in warning


def test_state_dict_only_checkpoints_record_the_stepping_optimizer(project: Path, caplog) -> None:
    # Nothing but the state dict is given.
    warning = _changed_lr_warning("lr4", project, caplog, 4e-3, scheduled=False)
    assert "0.004 now, 0.001 when" in warning
