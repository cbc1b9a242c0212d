"""What ``resumeguard run`` adds before a training script's first line runs: the time from
starting the command to the script's first statement, ``python script.py`` against
``resumeguard run -- python script.py``, interleaved, medians and the difference.

    python bench/bench_launcher.py [--repeat 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FIRST_LINE = "import time, sys; sys.stdout.write(repr(time.time()))\n"


def until_first_line(command: list[str]) -> float:
    """Seconds from starting ``command`` to the moment its script's first line ran."""
    start = time.time()
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1]) - start


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "train.py"
        script.write_text(FIRST_LINE)
        plain = [sys.executable, str(script)]
        guarded = [sys.executable, "-m", "resumeguard", "run", "--", *plain]
        ours, base = [], []
        for _ in range(args.repeat):
            base.append(until_first_line(plain))
            ours.append(until_first_line(guarded))
    med = statistics.median
    print(
        f"until the script's first line: plain {med(base) * 1e3:.0f} ms, under resumeguard run "
        f"{med(ours) * 1e3:.0f} ms (+{(med(ours) - med(base)) * 1e3:.0f} ms)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
