"""Which untracked files the run wrote, and so may be left out of a resume's comparison.

Since schema 3, every untracked, not ignored file present when a run is recorded counts as code
(its digest is in the record), wherever it sits and whatever its ending. What may be left out:
a file that appeared after the run was recorded inside a folder the run writes
(:func:`new_file_reason`), and a log (:data:`LOG_SUFFIXES`) that only grew by appending. Records
of schema 1-2 sorted untracked files into code and run output by their names when they were
taken; they are judged so (:func:`run_output_reason`).
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from pathlib import Path, PurePosixPath

SOURCE_SUFFIXES = frozenset(
    {
        ".py", ".pyw", ".pyi", ".pyx", ".pxd", ".ipynb",  # Python
        ".so", ".pyd", ".dylib", ".dll",  # native extension modules
        ".c", ".cc", ".cpp", ".cxx", ".h", ".hh", ".hpp", ".cu", ".cuh",  # built extensions
        ".sh", ".bash", ".zsh",  # launch scripts
    }
)  # fmt: skip
"""Untracked files with these endings are source code: they always count."""

CONFIG_SUFFIXES = frozenset(
    {".yaml", ".yml", ".toml", ".json", ".jsonnet", ".cfg", ".ini", ".conf", ".env"}
)
"""Configuration the program may load (Hydra, DeepSpeed, a ``config.json``): counts, except in a
folder the run itself writes (see :func:`run_output_reason`)."""

WEIGHTS_SUFFIXES = frozenset({".pt", ".pth", ".ckpt", ".safetensors", ".bin"})
"""Checkpoint and weights files: run output, and they mark their folder as run output."""

OUTPUT_FOLDERS = frozenset({"lightning_logs", ".hydra", "outputs", "multirun", "runs", "mlruns"})
"""Folders frameworks write by default (Lightning, Hydra, TensorBoard/Transformers, MLflow)."""

LOG_SUFFIXES = frozenset({".log", ".out", ".err"})
"""Logs a requeued job appends to (``slurm-%j.out``, ``nohup.out``, ``train.log``): one whose
recorded bytes are still its first bytes only grew, and is left out (reported at info)."""


def is_log(path: str) -> bool:
    """True for a file a job appends its output to (see :data:`LOG_SUFFIXES`)."""
    return PurePosixPath(path).suffix.lower() in LOG_SUFFIXES


def new_file_reason(
    path: str, root: Path, output_dirs: Iterable[str], known: Container[str]
) -> str | None:
    """Why the untracked file ``path``, which appeared after the run was recorded, lies in a
    folder the run writes; None when it does not (then it counts as code). ``output_dirs`` are
    the run's output folders from its config, relative to ``root``; ``known`` the paths the
    record holds (a weights file among them marks nothing)."""
    rel = PurePosixPath(path)
    if rel.suffix.lower() in SOURCE_SUFFIXES:
        return None  # new source is code wherever it appears
    folder = next((p for p in rel.parts[:-1] if p in OUTPUT_FOLDERS), None)
    if folder is not None:
        return f"appeared since the run was recorded, in {folder}/, a folder frameworks write"
    for out in output_dirs:
        if path.startswith(out.rstrip("/") + "/"):
            return f"appeared since the run was recorded, in the run's output folder {out}/"
    if rel.suffix.lower() in WEIGHTS_SUFFIXES:
        return "a checkpoint or weights file that appeared since the run was recorded"
    # A folder where a checkpoint appeared since is one the run writes (a Trainer's output_dir
    # holds config.json beside model.safetensors); never the repository's top level.
    if rel.parent.parts and _new_weights_in(root, rel.parent, known):
        return "appeared since the run was recorded, beside a checkpoint the run wrote"
    return None


def _new_weights_in(root: Path, folder: PurePosixPath, known: Container[str]) -> bool:
    """True when ``folder`` holds a checkpoint or weights file the record does not know."""
    try:
        entries = [e for e in (root / folder).iterdir() if e.is_file()]
    except OSError:
        return False
    return any(
        e.suffix.lower() in WEIGHTS_SUFFIXES and (folder / e.name).as_posix() not in known
        for e in entries
    )


def run_output_reason(path: str, root: Path) -> str | None:
    """Why the untracked file ``path`` (relative to ``root``) was run output under the rules of
    schema 1-2 records, or None when it is source or configuration and counts as code."""
    rel = PurePosixPath(path)
    suffix = rel.suffix.lower()
    if suffix in SOURCE_SUFFIXES:
        return None
    if suffix in WEIGHTS_SUFFIXES:
        return "checkpoint or weights file (run output, not code)"
    if rel.name == ".env" or suffix in CONFIG_SUFFIXES:
        folder = next((p for p in rel.parts[:-1] if p in OUTPUT_FOLDERS), None)
        if folder is not None:
            return f"configuration written into the run output folder {folder}/"
        if _beside_weights(root / rel.parent):
            return "configuration saved beside a checkpoint (run output, not code)"
        return None
    if not suffix and _has_shebang(root / rel):
        return None  # an executable script without an ending
    return "not source or configuration (run output such as a log)"


def _beside_weights(folder: Path) -> bool:
    """True when ``folder`` holds a checkpoint or weights file (as a Transformers output_dir
    holds config.json beside model.safetensors), ignored by git or not."""
    try:
        entries = [e for e in folder.iterdir() if e.is_file()]
        return any(e.suffix.lower() in WEIGHTS_SUFFIXES for e in entries)
    except OSError:
        return False


def _has_shebang(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(2) == b"#!"
    except OSError:
        return False
