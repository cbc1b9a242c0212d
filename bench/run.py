"""Run every benchmark: ``python bench/run.py`` (each prints its baseline from the same run)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = (
    "bench_digest.py",
    "bench_file_digest.py",
    "bench_code.py",
    "bench_skipped.py",
    "bench_requirements.py",
    "bench_check.py",
    "bench_online_costs.py",
    "bench_checkpoint.py",
    "bench_first_step.py",
    "bench_dcp.py",
    "bench_launcher.py",
)


def main() -> int:
    """Run each benchmark in its own process; the worst exit status wins."""
    worst = 0
    for name in BENCHMARKS:
        print(f"\n== {name}", flush=True)
        worst = max(
            worst, subprocess.run([sys.executable, str(HERE / name)], check=False).returncode
        )
    return worst


if __name__ == "__main__":
    sys.exit(main())
