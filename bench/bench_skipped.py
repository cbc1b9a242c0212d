"""Time the stamps of files left out of the code digest against hashing them into it.

    python bench/bench_skipped.py [--mib 8 64 256] [--repeat 5]

For each size, one untracked file over the code digest's limit is stamped as
``collect.skipped.stamp`` does (a full blake3 digest up to 64 MiB, size + time + first and last
MiB above) and, as the baseline in the same run, hashed the way git would store it
(``git hash-object``), interleaved medians and their ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:
    from resumeguard.collect.skipped import stamp
except ImportError:  # run from a checkout without installing it
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from resumeguard.collect.skipped import stamp


def medians(path: Path, repeat: int) -> tuple[float, float]:
    """Median seconds of the stamp and of ``git hash-object``, interleaved."""

    def hash_object() -> None:
        subprocess.run(["git", "hash-object", str(path)], check=True, capture_output=True)

    stamp(path)
    hash_object()  # warm the page cache for both
    stamps, hashes = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        stamp(path)
        stamps.append(time.perf_counter() - start)
        start = time.perf_counter()
        hash_object()
        hashes.append(time.perf_counter() - start)
    return statistics.median(stamps), statistics.median(hashes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, nargs="+", default=[8, 64, 256], help="file sizes")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of each")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-skipped-") as tmp:
        for mib in args.mib:
            path = Path(tmp) / f"table_{mib}.py"
            with open(path, "wb") as f:
                for _ in range(mib):
                    f.write(os.urandom(1 << 20))
            s, h = medians(path, args.repeat)
            print(
                f"{mib:5d} MiB: stamp median {s * 1e3:8.1f} ms, git hash-object median "
                f"{h * 1e3:8.1f} ms, ratio stamp / hash-object {s / h:.3f}x"
            )
            path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
