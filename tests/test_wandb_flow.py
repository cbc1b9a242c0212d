"""The W&B flow on real offline runs: record at start, check before resume, verified checkpoints."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch
import wandb
from helpers import (
    assert_tampered_copy_not_loaded,
    cli,
    cli_json,
    commit_all,
    model_and_opt,
    offline_project,
    write,
)

import resumeguard
from resumeguard.io.hashing import digest_file
from resumeguard.stores.layout import CONFIG_KEY, LOCAL_COPIES, RECORD_FILE
from resumeguard.verdict.findings import Severity
from resumeguard.verdict.policy import Rule, preset

FILES = {
    "train.py": "HIDDEN = 8\n",
    "requirements.txt": "torch>=2.1\nrich==13.7.0\n",
    ".gitignore": "*.pt\n",
}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return offline_project(tmp_path, monkeypatch, FILES)


def train_steps(model, opt, n: int = 2) -> None:
    for _ in range(n):
        loss = model(torch.randn(8, 4)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def start(run_id: str, project: Path, **kw):
    kw.setdefault("config", {"lr": 1e-3, "batch_size": 32})
    return resumeguard.init(project="p", id=run_id, repo=project, **kw)


def run_dirs(run_id: str) -> list[Path]:
    return sorted(Path(os.environ["WANDB_DIR"]).glob(f"wandb/offline-run-*-{run_id}*"))


def digest_tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        # W&B's service flushes logs/ and its .wandb log on its own schedule; all else stays put.
        if p.is_file()
        and ".git/" not in str(p)
        and "logs" not in p.relative_to(root).parts
        and p.suffix != ".wandb"
    }


def check(capsys, run_id: str, project: Path) -> tuple[int, dict]:
    return cli_json(capsys, "check", "--run-id", run_id, "--repo", str(project))


def test_fresh_init_records_without_touching_user_config(project: Path) -> None:
    run = start("fresh1", project, config={"lr": 1e-3, "nested": {"a": 1}})
    compact = dict(run.config[CONFIG_KEY])
    assert compact["record_digest"].startswith("blake3:")
    assert compact["commit"] and compact["torch"] == torch.__version__
    assert run.config["lr"] == 1e-3 and run.config["nested"] == {"a": 1}
    assert len(compact) < 30, "the config key stays compact"
    record = json.loads((Path(run.dir) / RECORD_FILE).read_text())
    assert record["fingerprint"]["config"] == {"lr": 1e-3, "nested": {"a": 1}}
    assert "installed" in record["fingerprint"]["deps"]
    run.finish()


def test_check_passes_on_unchanged_repo_and_blocks_on_changes(capsys, project: Path) -> None:
    start("chk1", project).finish()
    code, report = check(capsys, "chk1", project)
    assert (code, report["verdict"], report["findings"]) == (0, "ok", []), report.get("reason")

    write(project, {"train.py": "HIDDEN = 16\n"})  # dirty edit
    code, report = check(capsys, "chk1", project)
    assert code == 1 and [f["path"] for f in report["findings"]] == ["code.files.train.py"]

    commit_all(project, "wider")  # the same change, committed
    code, report = check(capsys, "chk1", project)
    assert code == 1
    assert {f["path"]: f["severity"] for f in report["findings"]} == {
        "code.files.train.py": "block",
        "code.commit": "info",
    }


def test_requirement_bump_blocks(capsys, project: Path) -> None:
    start("req1", project).finish()
    write(project, {"requirements.txt": "torch>=2.1\nrich==14.0.0\n"})
    code, report = check(capsys, "req1", project)
    assert code == 1
    paths = {f["path"] for f in report["findings"]}
    assert "deps.requirements.rich" in paths


def test_blocked_resume_raises_before_wandb_init_and_leaves_run_untouched(project: Path) -> None:
    start("blk1", project).finish()
    before = {d: digest_tree(d) for d in run_dirs("blk1")}
    write(project, {"train.py": "HIDDEN = 16\n"})
    with pytest.raises(resumeguard.ResumeBlocked) as info:
        start("blk1", project, resume="must")
    assert [f.path for f in info.value.report.blocking] == ["code.files.train.py"]
    assert wandb.run is None
    after = {d: digest_tree(d) for d in run_dirs("blk1")}
    assert list(after) == list(before), "no new run directory"
    for d, files in after.items():
        changed = {f for f in files.keys() | before[d].keys() if files.get(f) != before[d].get(f)}
        assert not changed, changed


def test_optimizer_rebuilt_for_changed_layer_blocks(project: Path) -> None:
    model, opt = model_and_opt(hidden=8)
    start("opt1", project, optimizer=opt, model=model).finish()
    model, opt = model_and_opt(hidden=16)
    with pytest.raises(resumeguard.ResumeBlocked) as info:
        start("opt1", project, resume="must", optimizer=opt, model=model)
    paths = {f.path for f in info.value.report.blocking}
    assert "optimizer.params.0.shape" in paths


def test_allowed_resume_appends_audit_trail(capsys, project: Path) -> None:
    (project / "pyproject.toml").write_text('[tool.resumeguard]\nwarn = ["config.batch_size"]\n')
    commit_all(project, "policy")
    start("aud1", project).finish()
    run = start("aud1", project, resume="must", config={"lr": 1e-3, "batch_size": 64})
    run.finish()
    code, shown = cli_json(capsys, "show", "--run-id", "aud1")
    assert code == 0
    [entry] = shown["resumes"]
    assert entry["verdict"] == "warn" and entry["allowed"] == ["config.batch_size"]


def test_nothing_recorded_exits_3_with_advice(capsys, project: Path) -> None:
    wandb.init(project="p", id="plain1", config={"lr": 1}).finish()
    code, _, err = cli(capsys, "check", "--run-id", "plain1", "--repo", str(project))
    assert code == 3 and "resumeguard record" in err
    code, _, err = cli(capsys, "check", "--run-id", "nosuchrun", "--repo", str(project))
    assert code == 3 and "nosuchrun" in err
    code, out, _ = cli(capsys, "check", "--run-id", "nosuchrun", "--allow-new")
    assert code == 0 and "new run" in out
    code, _, _ = cli(capsys, "check", "--run-id", "plain1", "--allow-new")
    assert code == 3, "an existing run with nothing recorded stays unverifiable"
    with pytest.raises(resumeguard.Unverifiable):
        start("plain1", project, resume="must")


def test_record_adopts_an_old_run_without_touching_user_keys(capsys, project: Path) -> None:
    run = wandb.init(project="p", id="adopt1", config={"lr": 1})
    config_yaml = Path(run.dir) / "config.yaml"
    run.finish()
    before = config_yaml.read_bytes() if config_yaml.exists() else None
    code, out, _ = cli(capsys, "record", "--run-id", "adopt1", "--repo", str(project))
    assert code == 0 and "recorded run adopt1" in out
    assert (config_yaml.read_bytes() if config_yaml.exists() else None) == before
    code, report = check(capsys, "adopt1", project)
    assert (code, report["verdict"]) == (0, "ok")
    code, _, err = cli(capsys, "record", "--run-id", "adopt1", "--repo", str(project))
    assert code == 2 and "--force" in err


@pytest.fixture
def saved(project: Path):
    model, opt = model_and_opt()
    run = start("ckpt1", project)
    train_steps(model, opt)
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": 2}
    record = resumeguard.save_checkpoint(run, state, "checkpoint.pt", storage="latest")
    return run, record, model, opt


def test_save_records_digest_and_keeps_the_saved_bytes(saved, project: Path) -> None:
    run, record, model, opt = saved
    assert record.step == 2 and record.size == (project / "checkpoint.pt").stat().st_size
    assert record.optimizer.cls == "torch.optim.adamw.AdamW"
    assert record.local, "not uploaded: kept beside the run's files"
    run_copy = Path(run.dir).parent / LOCAL_COPIES / record.file
    original = run_copy.read_bytes()
    # The user's next save replaces their file; the run's copy still holds the recorded bytes.
    resumeguard.save_checkpoint(run, {"step": 3}, "other.pt")
    torch.save({"step": 99}, project / "checkpoint.pt.tmp")
    os.replace(project / "checkpoint.pt.tmp", project / "checkpoint.pt")
    assert run_copy.read_bytes() == original
    fresh_model, fresh_opt = model_and_opt()
    state = resumeguard.restore_checkpoint(
        run, "checkpoint.pt", model=fresh_model, optimizer=fresh_opt
    )
    assert state["step"] == 2
    assert torch.equal(fresh_model[0].weight, model[0].weight)
    assert fresh_opt.state_dict()["state"][0]["exp_avg"].equal(
        opt.state_dict()["state"][0]["exp_avg"]
    )
    run.finish()


def test_flipped_byte_and_truncation_are_refused(capsys, saved, project: Path) -> None:
    run, record, _, _ = saved
    run.finish()
    run_copy = next(
        d / LOCAL_COPIES / record.file
        for d in run_dirs("ckpt1")
        if (d / LOCAL_COPIES / record.file).exists()
    )
    data = bytearray(run_copy.read_bytes())
    data[len(data) // 2] ^= 0x01
    run_copy.write_bytes(bytes(data))
    (project / "checkpoint.pt").write_bytes(bytes(data))  # the user's file is no way out either
    # Same size: the check (a stat per checkpoint) lets it through; the restore reads the bytes.
    assert_tampered_copy_not_loaded(start("ckpt1", project, resume="must"))
    code, _, err = cli(
        capsys, "restore", "--run-id", "ckpt1", "checkpoint.pt", "--dest", str(project / "restored")
    )
    assert code == 1 and "does not match its record" in err
    assert not (project / "restored" / "checkpoint.pt").exists()

    run_copy.write_bytes(bytes(data[: len(data) // 3]))
    # Truncated: the check sees it (and the flipped byte in the user's file, which it reads
    # too), and the resume is blocked at the checkpoint's path.
    code, report = check(capsys, "ckpt1", project)
    assert code == 1
    assert [(f["path"], f["current"]) for f in report["findings"]] == [
        ("checkpoint.checkpoint.pt.digest", digest_file(project / "checkpoint.pt")[0]),
        ("checkpoint.checkpoint.pt.size", len(data) // 3),
    ]
    with pytest.raises(resumeguard.ResumeBlocked):
        start("ckpt1", project, resume="must")
    # Told to only warn about checkpoints, the run resumes, and the restore itself refuses.
    warn = preset("strict").with_rules([Rule("checkpoint.*", Severity.WARN, "test")])
    resumed = start("ckpt1", project, resume="must", policy=warn)
    model, opt = model_and_opt()
    with pytest.raises(resumeguard.CheckpointError, match="truncated"):
        resumeguard.restore_checkpoint(resumed, "checkpoint.pt", model=model, optimizer=opt)
    resumed.finish()
    code, _, err = cli(
        capsys, "restore", "--run-id", "ckpt1", "checkpoint.pt", "--dest", str(project / "restored")
    )
    assert code == 1 and "truncated" in err


def test_missing_checkpoint_copy_blocks_the_check(capsys, saved, project: Path) -> None:
    run, record, _, _ = saved
    run.finish()
    for d in run_dirs("ckpt1"):
        (d / LOCAL_COPIES / record.file).unlink(missing_ok=True)
    code, report = check(capsys, "ckpt1", project)
    assert code == 1
    assert [f["path"] for f in report["findings"]] == ["checkpoint.checkpoint.pt.missing"]
    assert (project / "checkpoint.pt").exists(), "the user's own file is untouched"


def test_cli_restore_writes_a_verified_copy_and_never_overwrites(
    capsys, saved, project: Path
) -> None:
    run, record, _, _ = saved
    run.finish()
    dest = project / "restored"
    code, out, _ = cli(capsys, "restore", "--run-id", "ckpt1", "checkpoint.pt", "--dest", str(dest))
    assert code == 0 and "digest verified" in out
    assert (dest / "checkpoint.pt").read_bytes() == (project / "checkpoint.pt").read_bytes()
    code, out, _ = cli(capsys, "restore", "--run-id", "ckpt1", "checkpoint.pt", "--dest", str(dest))
    assert code == 0 and "nothing written" in out
    code, out, _ = cli(capsys, "digest", str(dest / "checkpoint.pt"))
    assert code == 0 and out.startswith(record.digest)


class Arbitrary:
    """Not a tensor or plain container: weights_only loading must refuse it."""

    def __init__(self) -> None:
        self.payload = "anything"


def test_pickled_arbitrary_object_is_refused(project: Path) -> None:
    run = start("pkl1", project)
    resumeguard.save_checkpoint(run, {"step": 1, "extra": Arbitrary()}, "evil.pt")
    with pytest.raises(resumeguard.CheckpointError, match="refusing to load"):
        resumeguard.restore_checkpoint(run, "evil.pt")
    run.finish()


def test_state_that_does_not_fit_is_refused_before_load_state_dict(saved) -> None:
    run, _, _, _ = saved
    model, opt = model_and_opt(hidden=16)
    opt_state_before = opt.state_dict()
    weight_before = model[0].weight.detach().clone()
    with pytest.raises(resumeguard.CheckpointError, match="does not fit"):
        resumeguard.restore_checkpoint(run, "checkpoint.pt", model=model, optimizer=opt)
    assert torch.equal(model[0].weight, weight_before)
    assert opt.state_dict() == opt_state_before
    run.finish()


def test_hyperparameter_override_is_warned(saved, caplog) -> None:
    run, _, _, _ = saved
    model, opt = model_and_opt(lr=5e-4)
    with caplog.at_level("WARNING", logger="resumeguard"):
        resumeguard.restore_checkpoint(run, "checkpoint.pt", model=model, optimizer=opt)
    assert any("lr" in r.getMessage() and "0.0005" in r.getMessage() for r in caplog.records)
    run.finish()


def test_step_regression_warns_under_strict_and_blocks_by_rule(
    saved, project: Path, caplog
) -> None:
    run, _, model, opt = saved
    for step in range(3, 10):
        run.log({"loss": 1.0}, step=step)
    resumeguard.save_checkpoint(
        run, {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": 9}, "late.pt"
    )
    run.finish()
    # A rule given at init holds for the restore too: here the gap blocks.
    no_gap = preset("strict").with_rules([Rule("run.step", Severity.BLOCK, "test")])
    resumed = start("ckpt1", project, resume="must", policy=no_gap)
    with pytest.raises(resumeguard.ResumeBlocked) as info:
        resumeguard.restore_checkpoint(resumed, "checkpoint.pt")
    [finding] = info.value.report.blocking
    assert finding.path == "run.step" and "late.pt" in finding.hint
    resumed.finish()
    # strict, as docs/policy.md promises, warns about the gap and restores.
    resumed = start("ckpt1", project, resume="must")
    with caplog.at_level("WARNING", logger="resumeguard"):
        state = resumeguard.restore_checkpoint(resumed, "checkpoint.pt")
    assert state["step"] == 2
    assert any("W&B drops every log call" in r.getMessage() for r in caplog.records)
    resumed.finish()


def test_user_files_unchanged_by_commands(capsys, project: Path) -> None:
    start("keep1", project, config={"lr": 1e-3}).finish()
    tree_before = digest_tree(project)
    wandb_before = {
        str(p): p.read_bytes() for d in run_dirs("keep1") for p in (d / "files").glob("config.yaml")
    }
    for args in (
        ["check", "--run-id", "keep1", "--repo", str(project)],
        ["show", "--run-id", "keep1"],
        ["fingerprint", "--repo", str(project)],
    ):
        cli(capsys, *args)
    assert digest_tree(project) == tree_before
    assert {
        str(p): p.read_bytes() for d in run_dirs("keep1") for p in (d / "files").glob("config.yaml")
    } == wandb_before


def test_config_key_collision_is_bad_input(project: Path) -> None:
    with pytest.raises(resumeguard.BadInput, match="rename it"):
        start("coll1", project, config={"resumeguard": 1})


def test_a_live_copy_blocks_the_check_until_it_finishes(capsys, project: Path) -> None:
    run = start("live1", project)
    code, report = check(capsys, "live1", project)
    assert code == 1
    assert [f["path"] for f in report["findings"]] == ["run.live"]
    code, _, err = cli(capsys, "record", "--run-id", "live1", "--force")
    assert code == 2 and "is running" in err, "a live run is not adopted under it"
    run.finish()
    code, report = check(capsys, "live1", project)
    assert (code, report["findings"]) == (0, [])


def test_bad_timeout_setting_is_one_line(capsys, project: Path, monkeypatch) -> None:
    monkeypatch.setenv("RESUMEGUARD_TIMEOUT", "soon")
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    code, out, err = cli(capsys, "check", "--run-id", "e/p/any")
    assert (code, out) == (2, "")
    assert err.strip() == "resumeguard: RESUMEGUARD_TIMEOUT must be a number of seconds, not 'soon'"


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), {"clip": float("-inf")}])
def test_a_config_no_record_can_hold_is_refused_before_the_run_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bad: object
) -> None:
    """NaN and infinities: one line (exit 2) before wandb.init, nothing created; the same
    value as a string goes ahead and resumes."""
    from helpers import offline_project

    repo = offline_project(tmp_path, monkeypatch, {"train.py": "X = 1\n"})
    with pytest.raises(resumeguard.BadInput, match="'max_grad_norm' holds NaN or an infinity"):
        resumeguard.init(project="p", id="nan1", repo=repo, config={"max_grad_norm": bad})
    assert not list((tmp_path / "wb").rglob("offline-run-*"))
    run = resumeguard.init(project="p", id="nan1", repo=repo, config={"max_grad_norm": "nan"})
    run.finish()
    again = resumeguard.init(
        project="p", id="nan1", repo=repo, config={"max_grad_norm": "nan"}, resume="must"
    )
    again.finish()
