"""Which untracked files count as code: source, or configuration the program could read as code.

Everything else a training run writes below the repository — logs, metrics, framework output
folders, checkpoints — is run output: listed in the fingerprint's ``skipped`` files, never compared.
"""

from __future__ import annotations

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


def run_output_reason(path: str, root: Path) -> str | None:
    """Why the untracked file ``path`` (relative to ``root``) is run output, or None when it is
    source or configuration and counts as code."""
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
