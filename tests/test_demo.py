"""`resumeguard demo` runs to the end: record, check, a blocked resume, an allowed one."""

from __future__ import annotations

import subprocess
import sys


def test_demo_runs_to_the_end(tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "resumeguard", "demo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "code.files.train.py" in out and "restored checkpoint.pt at step 20" in out
    assert "Done: the changed-code resume was blocked" in out
    # What the allowed resume verified, shown by default (the check's and the script's line).
    assert out.count("resumeguard: resume of run") >= 2 and "checkpoint checkpoint.pt" in out
    assert not list(tmp_path.iterdir()), "the demo cleans up after itself"
