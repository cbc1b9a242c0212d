"""Benchmark: the whole-file digest resumeguard records and verifies, against blake3's own
file hashing (``update_mmap`` on every core) and ``b2sum``, on the same file.

resumeguard reads with ``pread`` into two large buffers, one thread reading the next while
blake3 hashes the last on every core: no memory map, so a file truncated while it is read
cannot kill the process with SIGBUS, as it would under ``update_mmap``. The file is read
once before timing (warm: straight from the page cache, where the digest is all CPU).

    python bench/bench_file_digest.py            # a 1 GiB file
    python bench/bench_file_digest.py --gib 0.25 --repeat 5
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import blake3

try:
    from resumeguard.io.hashing import digest_file
except ImportError:  # run from a checkout without installing it
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from resumeguard.io.hashing import digest_file

MIB = 1 << 20


def blake3_own(path: Path) -> str:
    """blake3's own file hashing: a memory map, hashed on every core."""
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    hasher.update_mmap(str(path))
    return "blake3:" + hasher.hexdigest()


def _b2sum(program: str, path: Path) -> None:
    subprocess.run([program, str(path)], check=True, capture_output=True)


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--dir", type=Path, default=None, help="where to write the file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "checkpoint.bin"
        size = int(args.gib * 1024) * MIB
        with open(path, "wb") as f:
            for _ in range(size // (64 * MIB) or 1):
                f.write(os.urandom(min(size, 64 * MIB)))
        assert digest_file(path)[0] == blake3_own(path), "the same digest"
        b2sum = shutil.which("b2sum")
        runs: dict[str, list[float]] = {"resumeguard": [], "blake3 update_mmap": []}
        if b2sum:
            runs["b2sum"] = []
        for _ in range(args.repeat):  # interleaved, so drift hits each alike
            runs["resumeguard"].append(timed(lambda: digest_file(path)))
            runs["blake3 update_mmap"].append(timed(lambda: blake3_own(path)))
            if b2sum:
                runs["b2sum"].append(timed(lambda: _b2sum(b2sum, path)))
    gib = path.stat().st_size / (1 << 30) if path.exists() else size / (1 << 30)
    medians = {name: statistics.median(times) for name, times in runs.items()}
    print(f"file {gib:.2f} GiB, {os.cpu_count()} CPUs, medians of {args.repeat} (warm)")
    for name, seconds in medians.items():
        print(f"  {name:<20} {seconds:7.3f} s  {gib / seconds:6.2f} GiB/s")
    ratio = medians["resumeguard"] / medians["blake3 update_mmap"]
    print(f"  ratio resumeguard / blake3's own file hashing: {ratio:.2f}")
    if b2sum:
        print(f"  ratio resumeguard / b2sum: {medians['resumeguard'] / medians['b2sum']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
