"""torchrun --nproc_per_node 2 with gloo: rank 0 checks, every rank stops or trains together."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Literal

from helpers import commit_all, make_repo, write

SCRIPT = Path(__file__).resolve().parent / "scripts" / "dist_train.py"
FAILING = SCRIPT.with_name("dist_fail.py")
JOB = SCRIPT.with_name("dist_job.py")
SHARDED = SCRIPT.with_name("dist_dcp.py")
TIMEOUT = 180
WAIT = "3"
"""RESUMEGUARD_COLLECTIVE_TIMEOUT for the cases where a rank does not arrive: seconds, not 6 min."""


def job_env(
    repo: Path, wandb_dir: Path, phase: str, resume: str | None, **extra: str
) -> dict[str, str]:
    """The environment of a 2-process job in ``repo`` with offline W&B runs in ``wandb_dir``."""
    env = {
        **os.environ,
        "REPO": str(repo),
        "PHASE": phase,
        "WANDB_DIR": str(wandb_dir),
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_RUN_ID": "ddp1",
        "OMP_NUM_THREADS": "1",
        **extra,
    }
    env.pop("WANDB_RESUME", None)
    if resume:
        env["WANDB_RESUME"] = resume
    return env


def torchrun(
    repo: Path,
    wandb_dir: Path,
    phase: str,
    resume: str | None,
    script: Path = SCRIPT,
    nproc: int = 2,
    **extra: str,
) -> tuple[int, float, str]:
    env = job_env(repo, wandb_dir, phase, resume, WANDB_RUN_ID="dist1", **extra)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", str(nproc), str(script)]
    started = time.monotonic()
    done = subprocess.run(
        command, cwd=repo, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    return done.returncode, time.monotonic() - started, done.stdout + done.stderr


def test_block_ends_every_rank_and_an_allowed_resume_trains_on(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "proj", {"hidden.txt": "8\n", ".gitignore": "trained-*\n*.pt\n"})
    wandb_dir = tmp_path / "wb"
    wandb_dir.mkdir()

    code, _, out = torchrun(repo, wandb_dir, "fresh", None)
    assert code == 0, out
    assert (repo / "trained-0-fresh").exists() and (repo / "trained-1-fresh").exists()
    record = json.loads(
        next(wandb_dir.glob("wandb/offline-run-*-dist1/files/resumeguard.json")).read_text()
    )
    shards = record["checkpoints"]["ckpt-{rank}.pt"]["shards"]
    assert [s["rank"] for s in shards] == [0, 1]
    assert shards[0]["digest"] != shards[1]["digest"]
    restored = tmp_path / "restored"
    for rank in (0, 1):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "resumeguard",
                "restore",
                "--run-id",
                "dist1",
                "--offline",
                "--wandb-dir",
                str(wandb_dir),
                "ckpt-{rank}.pt",
                "--rank",
                str(rank),
                "--dest",
                str(restored / str(rank)),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        restored_bytes = (restored / str(rank) / f"ckpt-{rank}.pt").read_bytes()
        assert restored_bytes == (repo / f"ckpt-{rank}.pt").read_bytes()

    write(repo, {"hidden.txt": "16\n"})
    commit_all(repo, "wider")
    code, seconds, out = torchrun(repo, wandb_dir, "blocked", "must")
    assert code != 0, out
    assert "code.files.hidden.txt" in out
    assert not list(repo.glob("trained-*-blocked")), "no rank trained"
    assert seconds < 90, f"both ranks ended in {seconds:.0f} s"  # far below any timeout

    write(repo, {"hidden.txt": "8\n"})
    commit_all(repo, "back")
    code, _, out = torchrun(repo, wandb_dir, "resumed", "must")
    assert code == 0, out
    assert (repo / "trained-0-resumed").read_text() == "6"
    assert (repo / "trained-1-resumed").read_text() == "6"


def test_any_failure_of_rank_0_while_deciding_reaches_every_rank(tmp_path: Path) -> None:
    """Not only resumeguard's own errors: a TypeError on rank 0 must not leave rank 1 waiting
    for a verdict until the store's timeout (600 s)."""
    repo = make_repo(tmp_path / "proj", {"hidden.txt": "8\n", ".gitignore": "trained-*\n"})
    wandb_dir = tmp_path / "wb"
    wandb_dir.mkdir()
    code, seconds, out = torchrun(repo, wandb_dir, "fail", None, script=FAILING)
    assert code != 0, out
    assert "TypeError" in out, "rank 0 shows its own error"
    assert "rank 0 failed while deciding" in out, "rank 1 says why it stops"
    assert not list(repo.glob("trained-*")), "no rank ran the body"
    assert seconds < 90, f"both ranks ended in {seconds:.0f} s"  # far below any timeout


def launch(
    repo: Path,
    wandb_dir: Path,
    phase: str,
    resume: str | None,
    launcher: Literal["torchrun", "spawn"],
    nproc: int = 2,
    **extra: str,
) -> tuple[int, float, str]:
    """Run dist_job.py on ``nproc`` processes: exit code, seconds, output. With FAULT="stop",
    rank 1 is continued (SIGCONT) once rank 0 has failed, so the launcher can end it at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = job_env(repo, wandb_dir, phase, resume, NPROC=str(nproc), MASTER_PORT=str(port), **extra)
    if launcher == "spawn":
        command = [sys.executable, str(JOB), "spawn"]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        command += ["--nproc_per_node", str(nproc), str(JOB)]
    log = repo.parent / f"{phase}.log"
    started = time.monotonic()
    with log.open("w") as out:
        job = subprocess.Popen(command, cwd=repo, env=env, stdout=out, stderr=subprocess.STDOUT)
        stopped = repo / "stopped-1"
        while job.poll() is None and time.monotonic() - started < TIMEOUT:
            if stopped.exists() and "did not reach" in log.read_text():
                os.kill(int(stopped.read_text()), signal.SIGCONT)
                stopped.unlink()
            time.sleep(0.2)
        if job.poll() is None:
            job.kill()
        job.wait()
    return job.returncode, time.monotonic() - started, log.read_text()


def offline_dirs(wandb_dir: Path) -> list[Path]:
    return sorted(wandb_dir.glob("wandb/offline-run-*-ddp1"))


def test_ddp_recipe_under_torchrun_every_rank_calls_init(tmp_path: Path) -> None:
    """torchrun, init on every rank, the checkpoint saved on rank 0 only: fresh, an unchanged
    resume verified on both ranks, a rank that skips restore_checkpoint, a code change (one
    report, every rank stops) and 2 -> 1 processes (the global batch changes)."""
    repo = make_repo(
        tmp_path / "proj",
        {"hidden.txt": "8\n", ".gitignore": "trained-*\nstopped-*\ngave-up-*\n*.pt\n"},
    )
    wandb_dir = tmp_path / "wb"
    wandb_dir.mkdir()

    code, _, out = launch(repo, wandb_dir, "fresh", None, "torchrun", INIT="every")
    assert code == 0, out
    assert len(offline_dirs(wandb_dir)) == 1, "rank 1 started no W&B run of its own"
    record = json.loads((offline_dirs(wandb_dir)[0] / "files" / "resumeguard.json").read_text())
    assert record["fingerprint"]["env"]["world_size"] == 2
    assert record["checkpoints"]["ckpt.pt"]["step"] == 3

    code, _, out = launch(repo, wandb_dir, "resumed", "must", "torchrun", INIT="every")
    assert code == 0, out
    assert (repo / "trained-0-resumed").read_text() == "6"
    assert (repo / "trained-1-resumed").read_text() == "6", "rank 1 restored the checkpoint"

    skip = {"INIT": "every", "FAULT": "skip", "RESUMEGUARD_COLLECTIVE_TIMEOUT": WAIT}
    code, seconds, out = launch(repo, wandb_dir, "skipped", "must", "torchrun", **skip)
    assert code != 0, out
    assert "rank 1 did not reach restore_checkpoint within 3 s" in out
    assert not (repo / "trained-0-skipped").exists()
    assert seconds < 90, f"every rank ended in {seconds:.0f} s"  # a hang would be minutes

    # Rank 1 arrives after rank 0 gave up (its values there, nobody waiting): it stops too.
    late = {"INIT": "every", "FAULT": "late", "RESUMEGUARD_COLLECTIVE_TIMEOUT": WAIT}
    code, seconds, out = launch(repo, wandb_dir, "late", "must", "torchrun", **late)
    assert code != 0, out
    assert "rank 1 did not reach" in (repo / "gave-up-0").read_text()
    assert "rank 1 reached restore_checkpoint after another rank stopped waiting for it" in out
    assert not list(repo.glob("trained-*-late")), "no rank trained"
    assert seconds < 50, f"every rank ended in {seconds:.0f} s"  # not rank 0's 60 s linger

    write(repo, {"hidden.txt": "16\n"})
    commit_all(repo, "wider")
    code, _, out = launch(repo, wandb_dir, "changed", "must", "torchrun", INIT="every")
    assert code == 1, out
    assert out.count("no longer the same experiment") == 1, "one report, from rank 0"
    assert "blocked: see rank 0's report" not in out, "exit_with prints rank 0's report only"
    assert not list(repo.glob("trained-*-changed")), "no rank trained"

    write(repo, {"hidden.txt": "8\n"})
    commit_all(repo, "back")
    code, _, out = launch(repo, wandb_dir, "alone", "must", "torchrun", nproc=1, INIT="every")
    assert code == 1, out
    assert "env.world_size" in out
    assert not list(repo.glob("trained-*-alone"))


def test_ddp_recipe_under_mp_spawn_rank_0_calls_init(tmp_path: Path) -> None:
    """mp.spawn (the recipe's --multiprocessing-distributed), init and the save on rank 0 only:
    fresh, an unchanged resume, a rank stopped with SIGSTOP before restore_checkpoint, a code
    change and 2 -> 1 processes."""
    repo = make_repo(
        tmp_path / "proj", {"hidden.txt": "8\n", ".gitignore": "trained-*\nstopped-*\n*.pt\n"}
    )
    wandb_dir = tmp_path / "wb"
    wandb_dir.mkdir()

    code, _, out = launch(repo, wandb_dir, "fresh", None, "spawn", INIT="rank0")
    assert code == 0, out
    assert len(offline_dirs(wandb_dir)) == 1

    code, _, out = launch(repo, wandb_dir, "resumed", "must", "spawn", INIT="rank0")
    assert code == 0, out
    assert (repo / "trained-1-resumed").read_text() == "6", "rank 1 restored the checkpoint"

    stop = {"INIT": "rank0", "FAULT": "stop", "RESUMEGUARD_COLLECTIVE_TIMEOUT": WAIT}
    code, seconds, out = launch(repo, wandb_dir, "stopped", "must", "spawn", **stop)
    assert code != 0, out
    assert "rank 1 did not reach restore_checkpoint within 3 s" in out
    assert "exit code 3" in out, "RankFailed: the resume cannot be decided"
    assert seconds < 90, f"every rank ended in {seconds:.0f} s"  # a hang would be minutes

    write(repo, {"hidden.txt": "16\n"})
    commit_all(repo, "wider")
    code, _, out = launch(repo, wandb_dir, "changed", "must", "spawn", INIT="rank0")
    assert code != 0, out
    assert out.count("no longer the same experiment") == 1, "one report, from rank 0"
    assert not list(repo.glob("trained-*-changed")), "no rank trained"

    write(repo, {"hidden.txt": "8\n"})
    commit_all(repo, "back")
    code, _, out = launch(repo, wandb_dir, "alone", "must", "spawn", nproc=1, INIT="rank0")
    assert code != 0, out
    assert "env.world_size" in out


def test_a_sharded_checkpoint_of_2_ranks_loads_verified_and_a_flipped_byte_stops_both(
    tmp_path: Path,
) -> None:
    """resumeguard.api.dcp under torchrun with FSDP2 (fully_shard): each rank digests the files it
    writes, rank 0 records the listing; a byte flipped in the shard rank 1 wrote is refused on
    every rank, by name; 1 process loads it resharded only where the policy lets the world
    size change (strict blocks: the global batch changes)."""
    repo = make_repo(tmp_path / "proj", {"hidden.txt": "8\n", ".gitignore": "*-*\n.ckpt*\n"})
    wandb_dir = tmp_path / "wb"
    wandb_dir.mkdir()
    code, _, out = torchrun(repo, wandb_dir, "save", None, script=SHARDED)
    assert code == 0, out
    record = json.loads(
        next(wandb_dir.glob("wandb/offline-run-*-dist1/files/resumeguard.json")).read_text()
    )
    files = {f["name"]: f["rank"] for f in record["checkpoints"]["ckpt-dcp"]["files"]}
    assert files == {".metadata": 0, "__0_0.distcp": 0, "__1_0.distcp": 1}

    code, _, out = torchrun(repo, wandb_dir, "load", "must", script=SHARDED)
    assert code == 0, out
    assert (repo / "loaded-0").read_text() == (repo / "saved-0").read_text()
    assert (repo / "loaded-1").read_text() == (repo / "saved-1").read_text()

    shard = repo / "ckpt-dcp" / "__1_0.distcp"
    kept = shard.read_bytes()
    data = bytearray(kept)
    data[len(data) // 2] ^= 1
    shard.write_bytes(bytes(data))
    for rank in (0, 1):
        (repo / f"loaded-{rank}").unlink()
    code, _, out = torchrun(repo, wandb_dir, "load", "must", script=SHARDED)
    assert code == 1, out
    assert "__1_0.distcp (written by rank 1) does not match its record" in out
    assert "(rank 0, 1)" in out, "refused on every rank"
    assert not list(repo.glob("loaded-*"))

    shard.write_bytes(kept)
    code, _, out = torchrun(repo, wandb_dir, "load", "must", script=SHARDED, nproc=1)
    assert code == 1, out
    assert "env.world_size" in out
    policy = tmp_path / "policy.toml"
    policy.write_text('[tool.resumeguard]\nwarn = ["env.world_size"]\n')
    code, _, out = torchrun(
        repo, wandb_dir, "load", "must", script=SHARDED, nproc=1, RESUMEGUARD_POLICY=str(policy)
    )
    assert code == 0, out
    assert (repo / "loaded-0").read_text() == (repo / "saved-0").read_text(), "resharded 2 -> 1"


def two_nodes(repo: Path, wandb_dir: Path, phase: str, resume: str | None) -> tuple[int, str]:
    """Two torchrun agents on this machine as two nodes of one process each (c10d rendezvous
    on 127.0.0.1), sharing ``repo`` as a shared filesystem: the worse exit code, both outputs."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = job_env(repo, wandb_dir, phase, resume, WANDB_RUN_ID="dist1")
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2"]
    command += ["--nproc_per_node", "1", "--rdzv_backend", "c10d"]
    command += ["--rdzv_endpoint", f"127.0.0.1:{port}", "--rdzv_id", phase, str(SHARDED)]
    agents = [
        subprocess.Popen(
            command, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for _ in range(2)
    ]
    try:
        outs = [agent.communicate(timeout=TIMEOUT)[0] for agent in agents]
    except subprocess.TimeoutExpired:
        for agent in agents:
            agent.kill()
        out = "\n".join(agent.communicate()[0] for agent in agents)
        raise AssertionError(f"two-node {phase} did not end within {TIMEOUT} s:\n{out}") from None
    return max(agent.returncode for agent in agents), "\n".join(outs)


def test_two_nodes_share_a_sharded_checkpoint_and_a_flipped_byte_of_node_1_stops_both(
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path / "proj", {"hidden.txt": "8\n", ".gitignore": "*-*\n.ckpt*\n"})
    wandb_dir = tmp_path / "wb"
    wandb_dir.mkdir()
    code, out = two_nodes(repo, wandb_dir, "save", None)
    assert code == 0, out
    code, out = two_nodes(repo, wandb_dir, "load", "must")
    assert code == 0, out
    assert (repo / "loaded-1").read_text() == (repo / "saved-1").read_text()

    shard = repo / "ckpt-dcp" / "__1_0.distcp"  # written by rank 1, the second node's
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 1
    shard.write_bytes(bytes(data))
    (repo / "loaded-0").unlink()
    (repo / "loaded-1").unlink()
    code, out = two_nodes(repo, wandb_dir, "load", "must")
    assert code == 1, out
    assert out.count("__1_0.distcp (written by rank 1) does not match its record") == 2, out
    assert "(rank 0, 1)" in out, "every rank of both nodes refused it"
    assert not list(repo.glob("loaded-*"))


def test_a_store_call_waits_at_most_its_bound_when_the_store_host_is_stopped() -> None:
    """The gathering's own store calls (its "gave up" marker) are bounded: a stopped rank that
    holds the store leaves the store's own 30-minute timeout unanswered, never waited out."""
    import datetime as dt

    import torch.distributed as tdist

    from resumeguard.decide.distributed import _within

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    host = subprocess.Popen(
        [sys.executable, "-c", "import sys, time, datetime as dt, torch.distributed as d; "
         f"s = d.TCPStore('127.0.0.1', {port}, None, True, dt.timedelta(seconds=60)); "
         "print('up', flush=True); time.sleep(120)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert host.stdout is not None and host.stdout.readline().strip() == "up"
        store = tdist.TCPStore("127.0.0.1", port, None, False, dt.timedelta(minutes=30))
        assert _within(5, store.check, ["absent"]) is False, "an answering store answers"
        store.set("present", "1")
        assert _within(5, store.check, ["present"]) is True
        os.kill(host.pid, signal.SIGSTOP)
        stat = Path(f"/proc/{host.pid}/stat")
        deadline = time.monotonic() + 30
        while stat.read_text().rsplit(")", 1)[1].split()[0] != "T":  # the signal is asynchronous
            assert time.monotonic() < deadline, "the store host did not stop"
            time.sleep(0.01)
        started = time.monotonic()
        assert _within(1, store.check, ["present"]) is None, "no answer: not 'not given up'"
        assert time.monotonic() - started < 5
    finally:
        os.kill(host.pid, signal.SIGCONT)
        host.kill()
        host.wait()
