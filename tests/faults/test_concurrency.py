"""One resume at a time, and savers that never crash each other."""

from __future__ import annotations

import subprocess
import sys
import time

from faultkit import HERE, Case, base_env, run_cli, run_python, tree_digest


def _resumers(case: Case, count: int, hold: float) -> list[subprocess.Popen[str]]:
    start_at = time.time() + 8  # past both interpreters' start-up (torch, wandb)
    return [
        subprocess.Popen(
            [sys.executable, str(HERE / "resume.py"), str(start_at), str(hold)],
            cwd=case.repo,
            env=base_env(case),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]


def test_two_resumes_in_the_same_second_one_goes_ahead(case: Case) -> None:
    procs = _resumers(case, 2, hold=3)
    results = [(p.wait(timeout=180), *p.communicate()) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 1], results
    refused = next(err for code, _, err in results if code == 1)
    assert "run.live" in refused and "Traceback" not in refused
    # The refused one left no trace: one new offline directory, of the one that went ahead.
    dirs = list((case.wandb_dir / "wandb").glob("offline-run-*-faultrun*"))
    assert len(dirs) == 2


def test_check_from_outside_sees_a_held_claim_and_leaves_it(case: Case) -> None:
    [proc] = _resumers(case, 1, hold=25)
    try:
        deadline = time.time() + 60
        while (case.run_dir / "resumeguard.lock").exists() is False and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(9)  # the resume has been decided and holds the run
        before = tree_digest(case.root, skip=[case.wandb_dir])
        result = run_cli(case, "check", "--run-id", "faultrun")
        assert result.code == 1 and "run.live" in result.out, result
        assert tree_digest(case.root, skip=[case.wandb_dir]) == before
    finally:
        assert proc.wait(timeout=120) == 0, proc.communicate()
    # Once it finished, the claim is free again.
    assert run_cli(case, "check", "--run-id", "faultrun").code == 0


SAVERS = """
import threading, torch, resumeguard

run = resumeguard.init(project="faults", id="savers", config={})
errors = []

def save(who):
    model = torch.nn.Linear(4, 4)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for i in range(8):
        state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": i}
        try:
            resumeguard.save_checkpoint(run, state, f"{who}.pt", step=i)
            resumeguard.save_checkpoint(run, state, "shared.pt", step=i)
        except BaseException as e:
            errors.append(repr(e))

threads = [threading.Thread(target=save, args=(w,)) for w in ("a", "b")]
for t in threads:
    t.start()
for t in threads:
    t.join()
run.finish()
assert not errors, errors
"""


def test_two_savers_in_one_run_directory_never_crash_each_other(case: Case) -> None:
    proc = run_python(case, SAVERS, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Each saver's own checkpoint is in the record and restores: no save lost another's.
    for name in ("a.pt", "b.pt"):
        result = run_cli(case, "restore", "--run-id", "savers", name, "--dest", f"out-{name}")
        assert result.code == 0, result
    # One name saved by both at once: the last save wins, or the copy is refused as not the
    # recorded one; never a wrong file restored as verified.
    result = run_cli(case, "restore", "--run-id", "savers", "shared.pt", "--dest", "out-shared")
    assert result.code in (0, 1) and "Traceback" not in result.err, result
