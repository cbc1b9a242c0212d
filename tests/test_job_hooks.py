"""The pre-resume hooks of examples/ for job schedulers, run for real.

Slurm: examples/slurm/train.sbatch runs under plain bash with the SLURM_* variables Slurm sets on
a first start and on a requeue, stand-ins for ``srun`` (records the call, then runs it) and
``scontrol`` (records), against a real git repository and real offline W&B runs that
examples/slurm/train.py records with resumeguard.init. Kubernetes: examples/kubernetes/job.yaml
is parsed; its init container's script runs under bash, and its exit codes go through the Job's
podFailurePolicy as the Job controller evaluates it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import git, make_repo, write

ROOT = Path(__file__).resolve().parent.parent
SBATCH = ROOT / "examples" / "slurm" / "train.sbatch"
TRAIN = ROOT / "examples" / "slurm" / "train.py"
JOB = ROOT / "examples" / "kubernetes" / "job.yaml"

pytestmark = pytest.mark.skipif(
    shutil.which("bash") is None or shutil.which("git") is None, reason="needs bash and git"
)

STANDIN_SRUN = """#!/bin/bash
# Stand-in for srun: record "PID ARGS", then run the command (SRUN_STANDIN=exec), only record
# it (record), or hold the step like a long training would (sleep).
printf '%s %s\\n' "$$" "$*" >> "$STANDIN_LOGS/srun"
while [[ $# -gt 0 && $1 == -* ]]; do shift; done
case ${SRUN_STANDIN:-exec} in
  record) exit 0 ;;
  sleep) exec sleep 60 ;;
  *) exec "$@" ;;
esac
"""
STANDIN_SCONTROL = """#!/bin/bash
printf '%s\\n' "$*" >> "$STANDIN_LOGS/scontrol"
"""
# The training container's python: records how training was started, in srun's log (for the
# tests both mean "training started").
STANDIN_TRAINER = """#!/bin/bash
printf '%s python %s\\n' "$$" "$*" >> "$STANDIN_LOGS/srun"
"""
# The real interpreter and the real CLI of the interpreter running the tests, whatever PATH says.
SHIM = """#!/bin/bash
exec {python} {args} "$@"
"""
# A stand-in resumeguard for exit codes a real check cannot be made to return on demand.
STANDIN_RESUMEGUARD = """#!/bin/bash
printf '%s\\n' "$*" >> "$STANDIN_LOGS/resumeguard"
exit "${STANDIN_EXIT:-0}"
"""


@dataclasses.dataclass
class Result:
    """One run of a job script: exit status, output, and what the stand-ins were asked to do."""

    code: int
    out: str
    err: str
    srun: list[str]
    scontrol: list[str]
    resumeguard: list[str]


@dataclasses.dataclass
class Cluster:
    """A submit directory (a git repo holding train.py), W&B offline, and stand-ins on PATH."""

    root: Path
    repo: Path
    wandb_dir: Path
    bin: Path
    runs: int = 0

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "SLURM_"))}
        env.update(
            PATH=f"{self.bin}{os.pathsep}{env.get('PATH', '')}",
            HOME=str(self.root / "home"),
            WANDB_MODE="offline",
            WANDB_SILENT="true",
            WANDB_DISABLE_GIT="true",
            WANDB_DIR=str(self.wandb_dir),
            WANDB_CONFIG_DIR=str(self.root / "home" / ".config" / "wandb"),
            PYTHONWARNINGS="ignore",
        )
        env.update(extra)
        return env

    def logs(self) -> Path:
        self.runs += 1
        logs = self.root / "logs" / str(self.runs)
        logs.mkdir(parents=True)
        return logs

    def slurm_env(self, job_id: str | None, restarts: str | None, **extra: str) -> dict[str, str]:
        """What Slurm sets for the batch script (SLURM_RESTART_COUNT is 0 on a first start)."""
        slurm = {"SLURM_SUBMIT_DIR": str(self.repo), "SLURM_JOB_NAME": "train"}
        if job_id is not None:
            slurm["SLURM_JOB_ID"] = job_id
        if restarts is not None:
            slurm["SLURM_RESTART_COUNT"] = restarts
        return self.env(**slurm, **extra)

    def sbatch(self, job_id: str | None, restarts: str | None, **extra: str) -> Result:
        """Run the real batch script the way slurmd does: bash, from another directory."""
        logs = self.logs()
        env = self.slurm_env(job_id, restarts, STANDIN_LOGS=str(logs), **extra)
        done = subprocess.run(
            ["bash", str(SBATCH)],
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        return self.result(done.returncode, done.stdout, done.stderr, logs)

    def result(self, code: int, out: str, err: str, logs: Path) -> Result:
        def lines(name: str) -> list[str]:
            path = logs / name
            return path.read_text().splitlines() if path.exists() else []

        srun = [line.split(" ", 1)[1] for line in lines("srun")]
        return Result(code, out, err, srun, lines("scontrol"), lines("resumeguard"))


def _executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Cluster:
    root = tmp_path_factory.mktemp("cluster")
    (root / "home").mkdir()
    with pytest.MonkeyPatch.context() as mp:  # module scope: conftest's HOME is not set yet
        mp.setenv("HOME", str(root / "home"))
        repo = make_repo(
            root / "submit",
            {"train.py": TRAIN.read_text(), ".gitignore": "*.pt\n__pycache__/\n"},
        )
    bin_dir = root / "bin"
    bin_dir.mkdir()
    _executable(bin_dir / "srun", STANDIN_SRUN)
    _executable(bin_dir / "scontrol", STANDIN_SCONTROL)
    _executable(bin_dir / "python", SHIM.format(python=sys.executable, args=""))
    _executable(bin_dir / "resumeguard", SHIM.format(python=sys.executable, args="-m resumeguard"))
    _executable(bin_dir / "standin-resumeguard", STANDIN_RESUMEGUARD)
    (root / "wb").mkdir()
    return Cluster(root=root, repo=repo, wandb_dir=root / "wb", bin=bin_dir)


@pytest.fixture(scope="module")
def first_start(cluster: Cluster) -> Result:
    """Job 1001 as submitted: trains 20 steps, recording run slurm-1001 and its checkpoint."""
    return cluster.sbatch("1001", "0")


@contextlib.contextmanager
def code_changed(cluster: Cluster) -> Iterator[None]:
    """Someone widens the model and commits it while the job waits in the queue."""
    train = cluster.repo / "train.py"
    write(cluster.repo, {"train.py": train.read_text().replace("HIDDEN = 16", "HIDDEN = 32")})
    # Their own change only: the job's files (the record beside its checkpoint) stay untracked,
    # so the revert below does not take them away.
    git(cluster.repo, "commit", "-qam", "wider hidden layer")
    try:
        yield
    finally:
        git(cluster.repo, "revert", "--no-edit", "HEAD")


def test_first_start_trains_and_records_without_a_check(
    cluster: Cluster, first_start: Result
) -> None:
    assert first_start.code == 0, first_start.err
    assert first_start.srun == ["python train.py"]
    assert "resumeguard check" not in first_start.out
    assert "trained to step 20" in first_start.out
    records = list(cluster.wandb_dir.glob("wandb/offline-run-*-slurm-1001/files/resumeguard.json"))
    assert records, "train.py recorded the run's fingerprint with resumeguard.init"


def test_requeue_with_unchanged_code_checks_then_resumes(
    cluster: Cluster, first_start: Result
) -> None:
    result = cluster.sbatch("1001", "1", SRUN_STANDIN="record")  # trains for real further down
    assert result.code == 0, result.out + result.err
    assert "$ resumeguard check --run-id slurm-1001" in result.out
    assert "safe to resume" in result.out
    assert result.srun == ["python train.py --resume"]


def test_requeue_after_a_code_change_is_blocked_and_ends_the_loop(
    cluster: Cluster, first_start: Result
) -> None:
    with code_changed(cluster):
        result = cluster.sbatch("1001", "2")
    assert result.code == 1, result.out + result.err
    assert result.srun == [], "a blocked resume must not train"
    assert result.scontrol == [], "a blocked resume must not requeue itself"
    assert "code.files.train.py" in result.out  # the report, in the job's output file
    assert "BLOCKED the resume of run slurm-1001" in result.err
    assert "WANDB_RUN_ID=slurm-1001 WANDB_RESUME=must sbatch train.sbatch" in result.err


def test_restart_of_a_run_never_recorded_stops_by_default(cluster: Cluster) -> None:
    result = cluster.sbatch("2002", "1")
    assert (result.code, result.srun) == (3, [])
    assert "slurm-2002" in result.err and "RESUMEGUARD_ON_UNVERIFIABLE=stop" in result.err


def test_unverifiable_can_be_set_to_proceed_as_a_fresh_start(cluster: Cluster) -> None:
    result = cluster.sbatch(
        "2003", "1", RESUMEGUARD_ON_UNVERIFIABLE="proceed", SRUN_STANDIN="record"
    )
    assert result.code == 0, result.err
    assert result.srun == ["python train.py"], "nothing verified, so nothing is restored"


def test_resubmitting_with_resume_must_checks_a_first_start(cluster: Cluster) -> None:
    """A new job (restart count 0) that continues run slurm-1001 after a blocked resume."""
    result = cluster.sbatch(
        "3003",
        "0",
        WANDB_RUN_ID="slurm-1001",
        WANDB_RESUME="must",
        RESUMEGUARD=str(cluster.bin / "standin-resumeguard"),
        SRUN_STANDIN="record",
    )
    assert result.code == 0, result.out + result.err
    # One training process per task: the job's world size is SLURM_NTASKS (unset here: 1).
    assert result.resumeguard == ["check --run-id slurm-1001 --world-size 1"]
    assert result.srun == ["python train.py --resume"]


@pytest.mark.parametrize(
    ("check_exit", "script_exit"), [(2, 2), (4, 4), (127, 4), (1, 1), (3, 3), (0, 0)]
)
def test_every_check_exit_code_is_mapped(
    cluster: Cluster, check_exit: int, script_exit: int
) -> None:
    result = cluster.sbatch(
        "4004",
        "1",
        RESUMEGUARD=str(cluster.bin / "standin-resumeguard"),
        STANDIN_EXIT=str(check_exit),
        RESUMEGUARD_CHECK_ARGS="--policy lenient --requirements requirements.txt",
        WANDB_PROJECT="proj",
        SRUN_STANDIN="record",
    )
    assert result.code == script_exit, result.err
    assert result.resumeguard == [
        "check --run-id slurm-4004 --project proj --world-size 1 --policy lenient "
        "--requirements requirements.txt"
    ]
    assert result.srun == (["python train.py --resume"] if check_exit == 0 else [])


@pytest.mark.parametrize(
    ("job_id", "restarts", "extra"),
    [
        ("5005", "1", {"RESUMEGUARD_ON_UNVERIFIABLE": "maybe"}),
        (None, "0", {}),
        ("5005", "once", {}),
    ],
)
def test_bad_settings_stop_before_anything_runs(
    cluster: Cluster, job_id: str | None, restarts: str, extra: dict[str, str]
) -> None:
    result = cluster.sbatch(job_id, restarts, SRUN_STANDIN="record", **extra)
    assert (result.code, result.srun, result.scontrol) == (2, [], [])


def _wait_for(predicate: Any, what: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_time_limit_signal_requeues_the_job(cluster: Cluster) -> None:
    logs = cluster.logs()
    env = cluster.slurm_env("6006", "0", STANDIN_LOGS=str(logs), SRUN_STANDIN="sleep")
    job = subprocess.Popen(
        ["bash", str(SBATCH)], cwd=cluster.root, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        srun_log = logs / "srun"
        _wait_for(lambda: srun_log.exists() and srun_log.read_text().endswith("\n"), "srun")
        job.send_signal(signal.SIGUSR1)  # --signal=B:USR1@180: the batch shell only
        _wait_for(lambda: (logs / "scontrol").exists(), "scontrol requeue")
        assert job.poll() is None, "the batch shell keeps waiting for its step"
        step_pid = int(srun_log.read_text().split()[0])
        os.kill(step_pid, signal.SIGTERM)  # what Slurm does to the step on requeue
        out, _ = job.communicate(timeout=30)
    finally:
        if job.poll() is None:
            job.kill()
    assert (logs / "scontrol").read_text().splitlines() == ["requeue 6006"]
    assert job.returncode == 128 + signal.SIGTERM
    assert "requeueing job 6006" in out


def test_requeued_training_resumes_and_a_preempted_step_can_restart_at_once(
    cluster: Cluster, first_start: Result
) -> None:
    """The requeued job trains for real from the verified checkpoint. Preempted (SIGTERM to the
    step), train.py saves and exits 143, which marks the run not live: the restart that comes
    next is checked against the record and not taken for a second copy of the run."""
    logs = cluster.logs()
    checkpoint = cluster.repo / "checkpoint.pt"
    before = checkpoint.stat().st_mtime_ns
    env = cluster.slurm_env("1001", "6", STANDIN_LOGS=str(logs), TRAIN_STEPS="100000000")
    job = subprocess.Popen(
        ["bash", str(SBATCH)],
        cwd=cluster.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(lambda: checkpoint.stat().st_mtime_ns != before, "a periodic checkpoint")
        [(pid, call)] = [line.split(" ", 1) for line in (logs / "srun").read_text().splitlines()]
        assert call == "python train.py --resume"
        os.kill(int(pid), signal.SIGTERM)  # Slurm stops the step of a preempted job
        out, err = job.communicate(timeout=60)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 128 + signal.SIGTERM, out + err
    assert "safe to resume" in out
    assert "restored checkpoint.pt at step 20, digest verified" in out
    assert "signal 15: saved checkpoint.pt" in out
    result = cluster.sbatch("1001", "7", SRUN_STANDIN="record")
    assert result.code == 0, result.out + result.err
    assert result.srun == ["python train.py --resume"]


# --- Kubernetes -----------------------------------------------------------------------------

CHECK = "resumeguard-check"


def job_spec() -> dict[str, Any]:
    return yaml.safe_load(JOB.read_text())


def containers(job: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    pod = job["spec"]["template"]["spec"]
    return {c["name"]: c for c in [*pod.get("initContainers", []), *pod["containers"]]}


def env_of(container: Mapping[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def kubernetes_expand(text: str, env: Mapping[str, str]) -> str:
    """What the kubelet does to command and args: $(NAME) of a defined env var is replaced,
    $$ becomes $, anything else stays (k8s third_party/forked/golang/expansion)."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "$" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = text.find(")", i + 2)
                if end != -1:
                    name = text[i + 2 : end]
                    out.append(env.get(name, f"$({name})"))
                    i = end + 1
                    continue
        out.append(text[i])
        i += 1
    return "".join(out)


def pod_failure_action(job: Mapping[str, Any], exit_codes: Mapping[str, int]) -> str:
    """The Job controller's decision for a failed pod whose containers exited with
    ``exit_codes``: the first matching podFailurePolicy rule, else Count."""
    for rule in job["spec"]["podFailurePolicy"]["rules"]:
        on = rule.get("onExitCodes")
        if on is None:
            continue  # pod-condition rules: the pod was not disrupted here
        codes = [
            code
            for name, code in exit_codes.items()
            if code != 0 and on.get("containerName") in (None, name)
        ]
        if on["operator"] == "In" and any(c in on["values"] for c in codes):
            return str(rule["action"])
        if on["operator"] == "NotIn" and any(c not in on["values"] for c in codes):
            return str(rule["action"])
    return "Count"


def test_kubernetes_job_checks_in_an_init_container_and_fails_fast() -> None:
    job = job_spec()
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never", "podFailurePolicy requires restartPolicy Never"
    assert spec["completionMode"] == "Indexed" and spec["backoffLimitPerIndex"] >= 1
    by_name = containers(job)
    init = by_name[CHECK]
    assert [c["name"] for c in pod["initContainers"]] == [CHECK]
    script = init["args"][0]
    assert init["command"] == ["bash", "-c"]
    assert 'resumeguard check --run-id "$WANDB_RUN_ID"' in script
    rules = spec["podFailurePolicy"]["rules"]
    assert rules[0] == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}
    for code in (1, 2, 3, 4):
        assert pod_failure_action(job, {CHECK: code}) == "FailJob", code
    assert pod_failure_action(job, {CHECK: 137}) == "Count", "an OOM-killed check is retried"
    assert pod_failure_action(job, {"train": 1}) == "Count", "a training crash is retried"
    train = by_name["train"]
    for container in (init, train):
        env = env_of(container)
        assert env["WANDB_RUN_ID"] == env_of(init)["WANDB_RUN_ID"], "one pinned run id"
        assert env["WANDB_API_KEY"] == {"secretKeyRef": {"name": "wandb", "key": "api-key"}}
        assert container["image"] == init["image"], "the check runs the training image"
        assert container["workingDir"] == init["workingDir"]
        for name in env:
            if any(word in name for word in ("KEY", "TOKEN", "SECRET", "PASSWORD")):
                assert not isinstance(env[name], str), f"{name} inline in the manifest"
        for text in [*container["command"], *container["args"]]:
            plain = {k: v for k, v in env.items() if isinstance(v, str)}
            assert kubernetes_expand(text, plain) == text, "the kubelet would rewrite the script"
    env = env_of(init)
    annotations = {
        name: env[name]["fieldRef"]["fieldPath"] for name in ("FAILED_ATTEMPTS", "IGNORED_ATTEMPTS")
    }
    assert annotations == {
        "FAILED_ATTEMPTS": "metadata.annotations['batch.kubernetes.io/job-index-failure-count']",
        "IGNORED_ATTEMPTS": (
            "metadata.annotations['batch.kubernetes.io/job-index-ignored-failure-count']"
        ),
    }


def run_pod(
    cluster: Cluster, tmp_path: Path, *, standin_check: bool = False, **attempt: str
) -> tuple[int, str, Result]:
    """Run the Job's init container script as the kubelet would (bash -c, the container's env,
    its workingDir), then, when it succeeds, the training container's script with a stand-in
    ``python`` that records how it was started. Returns the init container's exit status, its
    output (or the mode it handed over), and what the stand-ins recorded."""
    by_name = containers(job_spec())
    pod_bin = tmp_path / "pod-bin"
    pod_bin.mkdir(exist_ok=True)
    if standin_check:
        _executable(pod_bin / "resumeguard", STANDIN_RESUMEGUARD)
    handoff = tmp_path / "handoff"
    handoff.mkdir(exist_ok=True)
    logs = cluster.logs()

    def run(container: Mapping[str, Any], path: str, **extra: str) -> tuple[int, str, str]:
        env = {k: v for k, v in env_of(container).items() if isinstance(v, str)}
        env.update(HANDOFF_DIR=str(handoff), STANDIN_LOGS=str(logs), **extra)
        env = cluster.env(**env)
        env["PATH"] = f"{path}{os.pathsep}{env['PATH']}"
        done = subprocess.run(
            [*container["command"], *container["args"]],
            cwd=cluster.repo,  # the image's workingDir: the git checkout
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        return done.returncode, done.stdout, done.stderr

    code, out, err = run(by_name[CHECK], str(pod_bin), **attempt)
    if code != 0:
        return code, out + err, cluster.result(code, out, err, logs)
    trainer_bin = tmp_path / "trainer-bin"
    trainer_bin.mkdir(exist_ok=True)
    _executable(trainer_bin / "python", STANDIN_TRAINER)
    assert run(by_name["train"], str(trainer_bin))[0] == 0
    return 0, (handoff / "mode").read_text().strip(), cluster.result(0, out, err, logs)


@pytest.mark.parametrize(
    ("attempt", "check_exit", "pod", "trains"),
    [
        ({}, None, "fresh", ["python train.py"]),  # first pod: nothing to check
        ({"FAILED_ATTEMPTS": "1"}, 0, "resume", ["python train.py --resume"]),
        ({"IGNORED_ATTEMPTS": "2"}, 0, "resume", ["python train.py --resume"]),
        (
            {"FAILED_ATTEMPTS": "", "WANDB_RESUME": "must"},
            0,
            "resume",
            ["python train.py --resume"],
        ),
        ({"FAILED_ATTEMPTS": "1"}, 1, "FailJob", []),
        ({"FAILED_ATTEMPTS": "1"}, 2, "FailJob", []),
        ({"FAILED_ATTEMPTS": "1"}, 3, "FailJob", []),
        (
            {"FAILED_ATTEMPTS": "1", "RESUMEGUARD_ON_UNVERIFIABLE": "proceed"},
            3,
            "fresh",
            ["python train.py"],
        ),
        ({"FAILED_ATTEMPTS": "1"}, 4, "FailJob", []),
        ({"FAILED_ATTEMPTS": "1"}, 137, "Count", []),
    ],
)
def test_kubernetes_init_container_exit_codes_meet_the_policy(
    cluster: Cluster,
    tmp_path: Path,
    attempt: dict[str, str],
    check_exit: int | None,
    pod: str,
    trains: list[str],
) -> None:
    code, outcome, result = run_pod(
        cluster, tmp_path, standin_check=True, STANDIN_EXIT=str(check_exit or 0), **attempt
    )
    expected_check = "check --run-id train-run-0001 --project my-project"
    assert result.resumeguard == ([] if check_exit is None else [expected_check])
    decided = outcome if code == 0 else pod_failure_action(job_spec(), {CHECK: code})
    assert decided == pod, outcome
    assert result.srun == trains


def test_kubernetes_init_container_blocks_a_real_changed_resume(
    cluster: Cluster, first_start: Result, tmp_path: Path
) -> None:
    # The run job 1001 recorded: same repository, same offline W&B directory.
    rerun = {
        "WANDB_RUN_ID": "slurm-1001",
        "WANDB_PROJECT": "resumeguard-example",
        "FAILED_ATTEMPTS": "1",
    }
    with code_changed(cluster):
        code, output, _ = run_pod(cluster, tmp_path, **rerun)
    assert code == 1 and "code.files.train.py" in output
    assert pod_failure_action(job_spec(), {CHECK: code}) == "FailJob"
