"""Time reading a large requirements file against the requirements parser's own path.

    python bench/bench_requirements.py [--lines 10000] [--repeat 5]

A requirements file of ``--lines`` pinned lines is read by ``collect.deps.collect_deps``
(pip-requirements-parser with its option parser built once per thread) and, as the baseline in
the same run, by the parser's own path (an option parser built for every line), interleaved
medians, milliseconds per 10,000 lines and their ratio. Both include the same fixed
costs (the installed distributions are listed each time).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

try:
    from resumeguard.collect import deps
except ImportError:  # run from a checkout without installing it
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from resumeguard.collect import deps


def read(root: Path, reuse: bool) -> float:
    """Seconds to read ``root/requirements.txt``, reusing the option parser or not."""
    import pip_requirements_parser

    deps._use_reused_line_parser()
    if not reuse:
        pip_requirements_parser.build_parser = deps._BUILD_PARSER[0]
    try:
        start = time.perf_counter()
        deps.collect_deps(root, [root / "requirements.txt"])
        return time.perf_counter() - start
    finally:
        pip_requirements_parser.build_parser = deps._reused_line_parser


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=10_000, help="requirement lines")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of each")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-requirements-") as tmp:
        root = Path(tmp)
        lines = [f"pkg{i}=={i % 7}.{i % 13}.0" for i in range(args.lines)]
        (root / "requirements.txt").write_text("\n".join(lines) + "\n")
        read(root, True)  # warm: imports, installed distributions
        ours, theirs = [], []
        for _ in range(args.repeat):
            ours.append(read(root, True))
            theirs.append(read(root, False))
    per = 10_000 / args.lines * 1000
    o, t = statistics.median(ours), statistics.median(theirs)
    print(f"requirements file of {args.lines:,} lines, medians of {args.repeat}:")
    print(f"  collect_deps (option parser reused) {o * per:8.0f} ms per 10,000 lines")
    print(f"  the parser's own path (per line)    {t * per:8.0f} ms per 10,000 lines")
    print(f"  ratio ours/theirs: {o / t:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
