"""One resume decision for every front door, on real W&B runs: a store that cannot answer is
never a new run, a run with a record is checked however it is started (never re-recorded), the
CLI check predicts the resume, the step is W&B's own, and the run's state tells the truth."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
import torch
import wandb
from helpers import (
    assert_older_checkpoint_refused,
    cli,
    cli_json,
    make_repo,
    offline_project,
    start,
    write,
)
from wandb_server import ENTITY, Fault, WandbServer

import resumeguard
from resumeguard.options import Options
from resumeguard.stores.interface import RunRef
from resumeguard.stores.layout import CONFIG_KEY, LOCAL_COPIES, RECORD_FILE, STATE_FILE
from resumeguard.stores.offline import OfflineStore
from resumeguard.verdict.findings import Severity
from resumeguard.verdict.policy import Rule, preset

FILES = {"train.py": "HIDDEN = 8\n", ".gitignore": "*.pt\n"}
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return offline_project(tmp_path, monkeypatch, FILES)


def stored_record(run_id: str) -> dict:
    return OfflineStore().fetch(RunRef(run_id)).record or {}


def model_and_opt():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    return model, torch.optim.AdamW(model.parameters(), lr=1e-3)


def log_and_save(run, steps: int, name: str = "checkpoint.pt", at: int | None = None):
    """Log steps 0..steps-1 and save a checkpoint at step ``at`` (default: the last logged)."""
    model, opt = model_and_opt()
    for step in range(steps):
        run.log({"loss": 1.0 / (step + 1)}, step=step)
    at = steps - 1 if at is None else at
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": at}
    return resumeguard.save_checkpoint(run, state, name, storage="latest")


def run_copy(run_id: str, record) -> Path:
    """The run's own copy of a recorded checkpoint (``storage="latest"`` keeps one)."""
    for directory in OfflineStore().fetch(RunRef(run_id)).directories:
        path = Path(directory) / LOCAL_COPIES / record.file
        if path.is_file():
            return path
    raise AssertionError(f"no copy of {record.file} in run {run_id}")


def flip_a_byte(path: Path, at: int | None = None) -> None:
    """Change one byte of ``path`` in place of a new file (a link elsewhere keeps its bytes)."""
    data = bytearray(path.read_bytes())
    path.unlink()
    data[len(data) // 2 if at is None else at] ^= 0x01
    path.write_bytes(bytes(data))


# --- 1. unreachable is not "new" ----------------------------------------------------------------


@pytest.fixture
def online_project(online: WandbServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    repo = make_repo(tmp_path / "proj", FILES)
    monkeypatch.chdir(repo)
    monkeypatch.setenv("RESUMEGUARD_TIMEOUT", "1")
    return repo


@pytest.mark.parametrize(
    "fault",
    [Fault(status=503), Fault(status=429), Fault(hang=True), Fault(malformed=True)],
    ids=["5xx", "429", "timeout", "malformed"],
)
def test_a_store_that_cannot_answer_is_never_a_new_run(
    capsys, online: WandbServer, online_project: Path, fault: Fault
) -> None:
    run_id = f"gone-{uuid.uuid4().hex[:8]}"
    online.fail_always("Run", fault)
    code, report = cli_json(capsys, "check", "--run-id", f"{ENTITY}/p/{run_id}", "--allow-new")
    assert (code, report["verdict"]) == (3, "unverified"), report
    for resume in ("allow", "auto"):
        with pytest.raises(resumeguard.StoreError):
            start(run_id, online_project, resume=resume)
    assert "UpsertBucket" not in online.operations(), "no run was started on the server"
    online.heal()
    # The look-alike: the store answers "no such run", which is a fresh start.
    code, report = cli_json(capsys, "check", "--run-id", f"{ENTITY}/p/{run_id}", "--allow-new")
    assert (code, report["verdict"]) == (0, "ok"), report


def test_a_refused_key_is_never_a_new_run(
    capsys, online: WandbServer, online_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "b" * 40)
    code, _, err = cli(capsys, "check", "--run-id", f"{ENTITY}/p/nokey", "--allow-new")
    assert code == 3 and "credentials" in err
    with pytest.raises(resumeguard.StoreError):
        start("nokey", online_project, resume="allow")


# --- 2. a record is never replaced --------------------------------------------------------------


def test_an_existing_id_without_a_resume_mode_is_checked(project: Path) -> None:
    start("reuse1", project).finish()
    before = stored_record("reuse1")["fingerprint"]
    write(project, {"train.py": "HIDDEN = 16\n"})
    with pytest.raises(resumeguard.ResumeBlocked):
        start("reuse1", project)  # no resume=: offline this would start over in a new directory
    write(project, {"train.py": "HIDDEN = 8\n"})
    run = start("reuse1", project)  # the same code: goes ahead, checked
    run.finish()
    after = stored_record("reuse1")
    assert after["fingerprint"] == before, "the baseline is the first one, never a new one"
    assert [r["verdict"] for r in after["resumes"]] == ["ok"]


def test_wandb_run_id_without_wandb_resume_is_checked_by_the_decorator(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    start("envid1", project).finish()
    write(project, {"train.py": "HIDDEN = 16\n"})
    monkeypatch.setenv("WANDB_RUN_ID", "envid1")  # as Transformers' W&B reporting leaves it
    ran: list[bool] = []

    @resumeguard.guard(repo=project)
    def main() -> None:
        ran.append(True)

    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 1 and ran == []
    assert "code.files.train.py" in capsys.readouterr().err


def test_plain_wandb_init_then_save_checkpoint_is_checked_not_rerecorded(project: Path) -> None:
    run = start("plain1", project)
    log_and_save(run, 2)
    run.finish()
    before = stored_record("plain1")
    write(project, {"train.py": "HIDDEN = 16\n"})
    run = wandb.init(project="p", id="plain1", resume="allow")
    model, opt = model_and_opt()
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": 3}
    with pytest.raises(resumeguard.ResumeBlocked):
        resumeguard.save_checkpoint(run, state, "later.pt")
    run.finish()
    assert stored_record("plain1") == before, "nothing published over the record"
    write(project, {"train.py": "HIDDEN = 8\n"})
    run = wandb.init(project="p", id="plain1", resume="allow")
    resumeguard.save_checkpoint(run, state, "later.pt")
    run.finish()
    after = stored_record("plain1")
    assert after["fingerprint"] == before["fingerprint"]
    assert set(after["checkpoints"]) == {"checkpoint.pt", "later.pt"}, "records only grow"
    assert [r["outcome"] for r in after["resumes"]] == ["resumed"]


def test_auto_resume_without_an_id_finds_the_run_wandb_will_resume(
    project: Path, tmp_path: Path
) -> None:
    """resume="auto" with no id: wandb takes the id of the last unfinished run in its folder."""
    script = f"""
        import os, signal, resumeguard
        run = resumeguard.init(
            project="p", resume="auto", repo={str(project)!r}, config={{"lr": 1e-3}}
        )
        print(run.id, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # preempted: wandb keeps the id for "auto"
    """
    done = run_python(script, project)
    run_id = done.stdout.split()[0]
    write(project, {"train.py": "HIDDEN = 16\n"})
    with pytest.raises(resumeguard.ResumeBlocked) as info:
        start(None, project, resume="auto")
    assert info.value.report.run is not None and run_id in info.value.report.run
    write(project, {"train.py": "HIDDEN = 8\n"})
    run = start(None, project, resume="auto")
    assert run.id == run_id
    run.finish()


def test_resume_never_of_an_existing_run_is_refused(project: Path) -> None:
    start("never1", project).finish()
    with pytest.raises(resumeguard.BadInput, match="already exists"):
        start("never1", project, resume="never")


# --- 4. the CLI check predicts the resume --------------------------------------------------------


def test_check_reads_every_checkpoint_byte_unless_quick(capsys, project: Path) -> None:
    run = start("bytes1", project)
    record = log_and_save(run, 2)
    run.finish()
    code, report = cli_json(capsys, "check", "--run-id", "bytes1")
    assert (code, report["findings"]) == (0, [])
    assert any("optimizer" in note for note in report["unchecked"]), "says what it cannot see"
    flip_a_byte(run_copy("bytes1", record))
    code, out, err = cli(capsys, "check", "--run-id", "bytes1", "--json")
    assert code == 1, err
    report = json.loads(out)
    assert [f["path"] for f in report["findings"]] == ["checkpoint.checkpoint.pt.digest"]
    code, report = cli_json(capsys, "check", "--run-id", "bytes1", "--quick")
    assert (code, report["findings"]) == (0, []), "--quick compares sizes only"
    assert any("--quick" in note for note in report["unchecked"])
    code, out, _ = cli(capsys, "check", "--run-id", "bytes1")
    assert "not checked from here" in out or "checkpoint.pt" in out


def test_check_reports_a_newest_checkpoint_older_than_the_last_logged_step(
    capsys, project: Path
) -> None:
    run = start("gap1", project)
    log_and_save(run, 3)  # logs 0..2, checkpoint at 2: no gap
    run.finish()
    code, report = cli_json(capsys, "check", "--run-id", "gap1")
    assert (code, report["findings"]) == (0, []), "a checkpoint at the last logged step is fine"
    run = start("gap1", project, resume="must")
    for step in range(3, 6):
        run.log({"loss": 0.1}, step=step)
    run.finish()
    policy = project.parent / "policy.toml"  # outside the tree: a new file there is code
    policy.write_text('block = ["run.step"]\n')
    code, report = cli_json(capsys, "check", "--run-id", "gap1", "--policy", str(policy))
    assert code == 1
    [finding] = report["findings"]
    assert finding["path"] == "run.step" and (finding["recorded"], finding["current"]) == (5, 2)
    assert 'resume_from="gap1?_step=2"' in finding["hint"]


def test_check_compares_a_flat_scripts_checkpoint_with_w_and_bs_step(capsys, project: Path) -> None:
    """A flat script's save_checkpoint counts W&B's step unless told otherwise (here: none
    given, none in the state, so the run's own): its gap is still ``run.step``."""
    run = start("flat1", project)
    for _ in range(3):
        run.log({"loss": 1.0})  # W&B steps 0..2
    saved = resumeguard.save_checkpoint(run, {"w": 1}, "checkpoint.pt", storage="latest")
    for _ in range(3):
        run.log({"loss": 0.5})  # 3..5: logged after the checkpoint, lost by a resume from it
    run.finish()
    assert (saved.step, saved.step_counter) == (3, "_step")
    policy = project.parent / "no-gap.toml"
    policy.write_text('block = ["run.step"]\n')
    code, report = cli_json(capsys, "check", "--run-id", "flat1", "--policy", str(policy))
    [finding] = report["findings"]
    assert (code, finding["path"], finding["recorded"], finding["current"]) == (1, "run.step", 5, 3)


def test_a_flat_scripts_own_step_counter_is_not_compared_with_w_and_bs(
    capsys, project: Path
) -> None:
    """A script that logs more often than it steps says its step is its own counter: the CLI
    and the restore leave it alone, and a checkpoint of W&B's step saved later is compared."""
    run = start("flat2", project)
    for _ in range(2):
        run.log({"loss": 1.0})
        run.log({"grad_norm": 1.0})  # two W&B steps per optimizer step
    state = {"step": 2}
    resumeguard.save_checkpoint(run, state, "own.pt", step_counter="opt_step", storage="latest")
    run.finish()
    policy = project.parent / "no-gap.toml"
    policy.write_text('block = ["run.step"]\n')
    check = ["check", "--run-id", "flat2", "--policy", str(policy)]
    assert cli_json(capsys, *check)[1]["findings"] == []
    resumed = start("flat2", project, resume="must", policy=str(policy))
    assert resumeguard.restore_checkpoint(resumed, "own.pt")["step"] == 2
    resumeguard.save_checkpoint(resumed, {"step": 4}, "wandb.pt", storage="latest")
    resumed.log({"loss": 0.5}, step=5)
    resumed.finish()
    [finding] = cli_json(capsys, *check)[1]["findings"]
    assert (finding["path"], finding["current"]) == ("run.step", 4)


@pytest.mark.parametrize("counter", ["", "  ", 5])
def test_a_bad_step_counter_is_bad_input_and_writes_nothing(project: Path, counter: object) -> None:
    with pytest.raises(resumeguard.BadInput, match=r"^bad step_counter .*leave it out"):
        resumeguard.save_checkpoint(None, {"step": 1}, "c.pt", step_counter=counter)  # type: ignore[arg-type]
    assert not list(project.glob("*c.pt*"))


def test_a_checkpoint_recorded_before_step_counters_counts_w_and_bs_step() -> None:
    """Records made before the counter was kept load as W&B's step and are compared as then;
    an empty counter is no record's."""
    from resumeguard.records.run import CheckpointRecord
    from resumeguard.verdict.step import step_finding

    old = CheckpointRecord.from_json({"file": "", "digest": "blake3:0", "size": 1, "step": 2})
    assert old.step_counter == "_step"
    finding = step_finding(old, 5, run_id="old1")
    assert finding is not None and (finding.recorded, finding.current) == (5, 2)
    with pytest.raises(ValueError, match="step_counter"):
        CheckpointRecord.from_json({**old.to_json(), "step_counter": ""})


# --- 5. the step is exact ------------------------------------------------------------------------


def run_python(script: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_last_step_survives_kill_9(project: Path) -> None:
    script = f"""
        import os, signal, time, resumeguard
        run = resumeguard.init(project="p", id="kill1", repo={str(project)!r})
        for step in range(7):
            run.log({{"loss": 1.0}}, step=step)
        time.sleep(3)  # past wandb's flush interval (set to 1 s below)
        os.kill(os.getpid(), signal.SIGKILL)
    """
    done = run_python(script, project, WANDB_X_TRANSACTION_LOG_FLUSH_INTERVAL="1")
    assert done.returncode == -signal.SIGKILL, done.stderr
    stored = OfflineStore().fetch(RunRef("kill1"))
    # W&B commits a step's row when the next step starts (or at finish): the row of step 6 was
    # still open in memory, so W&B itself, and `wandb sync`, know the run up to step 5.
    assert stored.last_step == 5, "W&B's own log holds the step a SIGKILL left"
    assert stored.state != "finished"


def test_checkpoint_at_the_last_logged_step_resumes_and_an_older_one_is_run_step(
    project: Path,
) -> None:
    run = start("exact1", project)
    log_and_save(run, 3)  # steps 0, 1, 2; checkpoint at 2
    run.finish()
    assert OfflineStore().fetch(RunRef("exact1")).last_step == 2
    no_gap = preset("strict").with_rules([Rule("run.step", Severity.BLOCK, "test")])
    resumed = start("exact1", project, resume="must", policy=no_gap)
    assert resumeguard.restore_checkpoint(resumed, "checkpoint.pt")["step"] == 2
    for step in range(3, 5):
        resumed.log({"loss": 0.5}, step=step)
    resumed.finish()
    # The newest checkpoint (2) is older than the last logged step (4): init predicts it.
    with pytest.raises(resumeguard.ResumeBlocked) as info:
        start("exact1", project, resume="must", policy=no_gap)
    [finding] = info.value.report.blocking
    assert finding.path == "run.step" and 'resume_from="exact1?_step=2"' in finding.hint
    # A newer checkpoint at the last logged step: the resume goes ahead; restoring the old
    # one is refused at the restore, which names the newer one.
    resumed = start("exact1", project, resume="must", policy=preset("lenient"))
    resumeguard.save_checkpoint(resumed, {"step": 4}, "late.pt")
    resumed.finish()
    assert_older_checkpoint_refused(start("exact1", project, resume="must", policy=no_gap), 4)


def transaction_log(run_id: str) -> Path:
    [log] = Path(os.environ["WANDB_DIR"]).rglob(f"run-{run_id}.wandb")
    return log


def test_a_log_damaged_before_its_tail_makes_the_step_unverifiable(capsys, project: Path) -> None:
    """A bad record with more after it hides the steps logged later: the run's last step is
    unknown, so run.step is unverifiable (exit 3; Unverifiable in process), never "no step"."""
    run = start("dmg1", project)
    log_and_save(run, 3)
    run.finish()
    log = transaction_log("dmg1")
    data = bytearray(log.read_bytes())
    data[20] ^= 0xFF  # inside the first record: every later record is still there
    log.write_bytes(bytes(data))
    code, report = cli_json(capsys, "check", "--run-id", "dmg1")
    assert (code, report["verdict"]) == (3, "unverified"), report
    [finding] = report["findings"]
    assert finding["path"] == "run.step" and "damaged" in report["reason"]
    with pytest.raises(resumeguard.Unverifiable, match="damaged"):
        start("dmg1", project, resume="must")
    # The explicit way on: a policy that does not compare run.step.
    code, report = cli_json(capsys, "check", "--run-id", "dmg1", "--policy", str(NO_STEP(project)))
    assert (code, report["findings"]) == (0, [])


def NO_STEP(project: Path) -> Path:
    policy = project.parent / "no-step.toml"
    policy.write_text('ignore = ["run.step"]\n')
    return policy


def test_a_torn_last_record_is_read_up_to_it(capsys, project: Path) -> None:
    """What a kill leaves, a record cut short at the end, is normal: the steps before count."""
    run = start("torn1", project)
    log_and_save(run, 3)
    run.finish()
    log = transaction_log("torn1")
    log.write_bytes(log.read_bytes()[:-3])
    stored = OfflineStore().fetch(RunRef("torn1"))
    assert (stored.last_step, stored.step_unknown) == (2, "")
    code, report = cli_json(capsys, "check", "--run-id", "torn1")
    assert (code, report["findings"]) == (0, []), report


def test_a_silent_restart_over_an_unreadable_log_is_unverifiable(project: Path) -> None:
    """The callbacks' restart check: with the log damaged, whether anything was logged before
    cannot be told, so a start at step 0 is unverifiable; a start past 0 is a resume."""
    from resumeguard.decide.intent import ResumeIntent
    from resumeguard.decide.pipeline import decide
    from resumeguard.integrations.training import restart

    start("dmg2", project).finish()  # nothing logged, nothing saved
    check = decide(
        ResumeIntent("dmg2", "must"), Options(repo=project), include_step=False, claim=False
    )
    restart(check, 0)  # the log is intact and holds no step: starting at 0 is the resume
    log = transaction_log("dmg2")
    data = bytearray(log.read_bytes())
    data[20] ^= 0xFF
    log.write_bytes(bytes(data))
    check = decide(
        ResumeIntent("dmg2", "must"), Options(repo=project), include_step=False, claim=False
    )
    assert check.report.verdict.value == "ok" and check.step_unknown
    with pytest.raises(resumeguard.Unverifiable, match="damaged"):
        restart(check, 0)
    restart(check, 3)


def test_rewind_is_offered_only_where_w_and_b_can_do_it(project: Path) -> None:
    run = start("rew1", project)
    log_and_save(run, 2)
    for step in range(2, 4):
        run.log({"loss": 0.5}, step=step)
    run.finish()
    no_gap = preset("strict").with_rules([Rule("run.step", Severity.BLOCK, "test")])
    with pytest.raises(resumeguard.ResumeBlocked):
        start("rew1", project, resume="must", policy=no_gap)
    with pytest.raises(resumeguard.BadInput, match="needs W&B online"):
        start("rew1", project, resume="must", policy=no_gap, rewind=True)


# --- 6. the run's state tells the truth ----------------------------------------------------------


def test_a_clean_exit_without_finish_marks_the_run_finished(project: Path) -> None:
    """Lightning, Transformers and plain scripts leave the finish to wandb's exit hook."""
    script = f"""
        import wandb, resumeguard

        @resumeguard.guard(repo={str(project)!r})
        def main():
            run = wandb.init(project="p", id="exit1")
            run.log({{"loss": 1.0}})

        main()
    """
    done = run_python(script, project)
    assert done.returncode == 0, done.stderr
    [directory] = OfflineStore().fetch(RunRef("exit1")).directories
    state = json.loads((Path(directory) / "files" / STATE_FILE).read_text())
    assert state["state"] == "finished"
    assert OfflineStore().fetch(RunRef("exit1")).state == "finished"


def test_no_heartbeat_lands_after_the_final_state(project: Path) -> None:
    from resumeguard.decide import runfiles

    run = start("beat1", project)
    runfiles.stop_heartbeat(run, state="finished")
    runfiles.write_state(run)  # a heartbeat that was already on its way
    state = json.loads((Path(run.dir) / STATE_FILE).read_text())
    assert state["state"] == "finished"
    run.finish()


def test_a_resume_refused_at_the_restore_is_recorded_as_refused(project: Path) -> None:
    run = start("audit1", project)
    record = log_and_save(run, 2)
    run.finish()
    flip_a_byte(run_copy("audit1", record), at=10)
    flip_a_byte(project / "checkpoint.pt", at=10)  # the user's own file is no way out either
    resumed = start("audit1", project, resume="must")
    with pytest.raises(resumeguard.CheckpointError):
        resumeguard.restore_checkpoint(resumed, "checkpoint.pt")
    resumed.finish()
    [entry] = stored_record("audit1")["resumes"]
    assert entry["outcome"] == "refused" and "does not match" in entry["reason"]
    assert json.loads((Path(resumed.dir) / RECORD_FILE).read_text())["resumes"] == [entry]
    assert resumed.config[CONFIG_KEY]["resumes"] == 1


# --- the check from outside stays light ---------------------------------------------------------


def test_check_imports_neither_torch_nor_wandb(project: Path) -> None:
    start("light1", project).finish()
    script = """
        import sys
        from resumeguard.cli.main import main
        code = main(["check", "--run-id", "light1"])
        heavy = sorted(m for m in ("torch", "wandb") if m in sys.modules)
        print(code, heavy)
    """
    done = run_python(script, project)
    assert done.stdout.split("\n")[-2] == "0 []", done.stdout + done.stderr


def test_torch_versions_without_importing_torch_are_torchs_own() -> None:
    from resumeguard.collect.deps import _torch_versions

    cudnn = torch.backends.cudnn.version()
    expected = (torch.__version__, torch.version.cuda, str(cudnn) if cudnn else None)
    assert _torch_versions() == expected


def test_visible_gpus_follow_cuda_visible_devices() -> None:
    from resumeguard.collect.env import visible_gpus

    gpus = [("NVIDIA H200", "GPU-aaa"), ("NVIDIA H100", "GPU-bbb")]
    assert visible_gpus(gpus, None) == gpus
    assert visible_gpus(gpus, "1,0") == gpus[::-1]
    assert visible_gpus(gpus, "GPU-b") == [gpus[1]]
    assert visible_gpus(gpus, "") == [] and visible_gpus(gpus, "-1") == []
    assert visible_gpus(gpus, "0,7,1") == [gpus[0]], "CUDA stops at the first invalid entry"


# --- 3. a checkpoint resume without a run id is still checked ------------------------------------


def test_restore_without_a_run_checks_the_run_that_saved_the_checkpoint(project: Path) -> None:
    run = start("orig1", project)
    log_and_save(run, 2)
    run.finish()
    write(project, {"train.py": "HIDDEN = 16\n"})
    with pytest.raises(resumeguard.ResumeBlocked) as info:
        resumeguard.restore_checkpoint(None, "checkpoint.pt")
    assert [f.path for f in info.value.report.blocking] == ["code.files.train.py"]
    write(project, {"train.py": "HIDDEN = 8\n"})
    assert resumeguard.restore_checkpoint(None, "checkpoint.pt")["step"] == 1
    fresh = start("orig-new", project)  # a new run resuming from another run's checkpoint
    write(project, {"train.py": "HIDDEN = 16\n"})
    with pytest.raises(resumeguard.ResumeBlocked):
        resumeguard.restore_checkpoint(fresh, "checkpoint.pt")
    fresh.finish()
    torch.save({"step": 3}, project / "stray.pt")
    with pytest.raises(resumeguard.CheckpointError, match="no resumeguard record beside it"):
        resumeguard.restore_checkpoint(None, "stray.pt")


def test_a_new_run_restoring_another_runs_checkpoint_says_so_and_trains_on(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = start("lost1", project)
    log_and_save(run, 2)
    run.finish()
    # The run id was lost: resume="allow" with a new id starts a new run.
    fresh = start("lost2", project, resume="allow")
    with caplog.at_level(logging.WARNING, logger="resumeguard"):
        state = resumeguard.restore_checkpoint(fresh, "checkpoint.pt")
    fresh.finish()
    assert state["step"] == 1
    [said] = [r.getMessage() for r in caplog.records if "saved in run" in r.getMessage()]
    assert "saved in run lost1" in said and "new run lost2" in said, said
    assert 'id="lost1"' in said and "continues in a new run" in said
