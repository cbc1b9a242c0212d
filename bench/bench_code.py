"""Time collect_code against a plain `git status --porcelain` on a realistically sized repository.

    python bench/bench_code.py [--repo PATH] [--files 5000] [--repeat 25]

Without --repo it builds a temporary repository (nested directories, a few dirty edits, staged
changes and untracked files), so both timings see the same working tree and warm caches.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

try:
    from resumeguard.collect.code import CodeRecord, collect_code
except ImportError:  # run from a checkout without installing it
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from resumeguard.collect.code import CodeRecord, collect_code

GIT_ENV = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
}


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, env={**os.environ, **GIT_ENV})


def build_repo(root: Path, n_files: int) -> None:
    """``n_files`` Python files, 20 per directory, three levels deep; then some edits."""
    git(root, "init", "-q")
    for i in range(n_files):
        d = root / f"pkg{i // 1000}" / f"sub{i // 100 % 10}" / f"mod{i // 20 % 5}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"file{i}.py").write_text(f"# module {i}\n" + "x = 1\n" * (i % 50 + 1))
    (root / ".gitignore").write_text("*.log\nwandb/\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    for i in range(0, n_files, n_files // 5):  # five unstaged edits
        path = next(root.glob(f"pkg*/sub*/mod*/file{i}.py"))
        path.write_text(path.read_text() + "y = 2\n")
    staged = next(root.glob("pkg*/sub*/mod*/file1.py"))
    staged.write_text("staged = True\n")
    git(root, "add", str(staged))
    next(root.glob("pkg*/sub*/mod*/file2.py")).unlink()
    for i in range(10):
        (root / "pkg0" / f"new{i}.py").write_text(f"new = {i}\n")
    (root / "train.log").write_text("ignored\n" * 100)
    (root / "wandb" / "run-1").mkdir(parents=True)
    (root / "wandb" / "run-1" / "output.log").write_text("ignored\n")


def medians(fns: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Median wall time of each function; runs interleaved so load drift hits all alike."""
    for fn in fns.values():
        fn()  # warm the page cache and git's index stat data
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def run(repo: Path, repeat: int) -> None:
    record = collect_code(repo)
    if not isinstance(record, CodeRecord):
        sys.exit(f"collect_code: {record.reason}")

    def status() -> None:
        subprocess.run(["git", "status", "--porcelain"], cwd=repo, check=True, capture_output=True)

    t = medians({"collect": lambda: collect_code(repo), "status": status}, repeat)
    files = (
        len(
            subprocess.run(["git", "ls-files", "-z"], cwd=repo, capture_output=True).stdout.split(
                b"\0"
            )
        )
        - 1
    )
    print(
        f"repo: {repo} ({files} tracked files; {len(record.changed)} changed, "
        f"{len(record.untracked)} untracked recorded)"
    )
    print(f"collect_code           median {t['collect'] * 1e3:7.1f} ms  ({repeat} runs)")
    print(f"git status --porcelain median {t['status'] * 1e3:7.1f} ms  ({repeat} runs)")
    print(f"ratio collect_code / git status: {t['collect'] / t['status']:.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, help="an existing repository (default: build one)")
    parser.add_argument("--files", type=int, default=5000, help="files in the built repository")
    parser.add_argument("--repeat", type=int, default=25, help="timed runs of each command")
    args = parser.parse_args(argv)
    if args.repo:
        run(args.repo, args.repeat)
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-code-") as tmp:
        build_repo(Path(tmp), args.files)
        run(Path(tmp), args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
