"""Fingerprint the dependencies: requirement files, installed distributions, Python, torch, CUDA.

Installed distributions come from ``importlib.metadata`` (never by running pip).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import platform
import re
from collections.abc import Sequence
from pathlib import Path

from resumeguard.collect import torch_or_none
from resumeguard.errors import BadInput
from resumeguard.hashing import digest_file
from resumeguard.record import Record

DEFAULT_GLOB = "requirements*.txt"


@dataclasses.dataclass(frozen=True)
class DepsRecord(Record):
    """Interpreter, platform, torch stack, declared requirements and installed distributions."""

    kind = "deps"

    python: str
    """Interpreter version, e.g. "3.11.7"."""
    implementation: str
    """e.g. "CPython"."""
    platform: str
    """OS and machine, e.g. "Linux-x86_64" (not the kernel build: that is not drift)."""
    torch: str | None = None
    """Installed torch version (e.g. "2.13.0+cpu"), None when torch is not installed."""
    cuda: str | None = None
    """The CUDA version torch was built with, None for a CPU build."""
    cudnn: str | None = None
    """cuDNN version torch loads, None for builds without it."""
    requirements: dict[str, str] = dataclasses.field(default_factory=dict)
    """Canonical name (or "url:<link>" for unnamed lines) -> the requirement as one line."""
    requirement_files: dict[str, str] = dataclasses.field(default_factory=dict)
    """Requirement file (relative to the repo root where possible) -> its digest."""
    installed: dict[str, str] = dataclasses.field(default_factory=dict)
    """Canonical distribution name -> installed version."""


def canonical_name(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def collect_deps(
    root: str | Path | None = None, requirements: Sequence[str | Path] = ()
) -> DepsRecord:
    """Fingerprint the dependencies; ``requirements`` defaults to requirements*.txt in ``root``."""
    files = _requirement_files(root, requirements)
    reqs, digests = _parse_requirements(files, root)
    torch_version, cuda, cudnn = _torch_versions()
    return DepsRecord(
        python=platform.python_version(),
        implementation=platform.python_implementation(),
        platform=f"{platform.system()}-{platform.machine()}",
        torch=torch_version,
        cuda=cuda,
        cudnn=cudnn,
        requirements=reqs,
        requirement_files=digests,
        installed=installed_distributions(),
    )


def installed_distributions() -> dict[str, str]:
    """Every installed distribution on ``sys.path``; the first one found wins, as for imports."""
    found: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"] if dist.metadata else None
        if name:
            found.setdefault(canonical_name(name), dist.version)
    return dict(sorted(found.items()))


def _requirement_files(root: str | Path | None, named: Sequence[str | Path]) -> list[Path]:
    if named:
        paths = [Path(p) for p in named]
        for p in paths:
            if not p.is_file():
                raise BadInput(f"requirements file not found: {p} (check the --requirements path)")
        return paths
    if root is None:
        return []
    return sorted(Path(root).glob(DEFAULT_GLOB))


def _parse_requirements(
    files: list[Path], root: str | Path | None
) -> tuple[dict[str, str], dict[str, str]]:
    from pip_requirements_parser import RequirementsFile

    reqs: dict[str, str] = {}
    digests: dict[str, str] = {}
    for path in files:
        try:
            parsed = RequirementsFile.from_file(str(path), include_nested=True)
        except Exception as e:  # the parser raises bare exceptions for unreadable includes
            raise BadInput(f"cannot parse requirements file {path}: {e}") from e
        seen_files = {str(path)}
        for req in parsed.requirements:
            seen_files.add(req.filename or str(path))
            key = canonical_name(req.name) if req.name else f"url:{req.link or req.line}"
            # One canonical line keeps markers, extras, hashes and editable/VCS forms as they are.
            reqs[key] = " ".join(req.dumps().replace("\\\n", " ").split())
        for bad in parsed.invalid_lines:
            line = bad.requirement_line
            reqs[f"invalid:{_rel(line.filename, root)}:{line.line_number}"] = line.line.strip()
        for option in parsed.options:
            seen_files.add(option.requirement_line.filename)
        for name in sorted(seen_files):
            if Path(name).is_file():
                digests[_rel(name, root)] = digest_file(name)[0]
    return dict(sorted(reqs.items())), digests


def _rel(name: str, root: str | Path | None) -> str:
    p = Path(name).resolve()
    if root is not None:
        try:
            return p.relative_to(Path(root).resolve()).as_posix()
        except ValueError:
            pass
    return p.as_posix()


def _torch_versions() -> tuple[str | None, str | None, str | None]:
    """torch's version, the CUDA it was built with and the cuDNN it loads (None when absent)."""
    torch = torch_or_none()
    if torch is None:
        return None, None, None
    try:
        cudnn = torch.backends.cudnn.version()
    except Exception:  # cuDNN probing fails on some builds; the version is optional information
        cudnn = None
    return str(torch.__version__), torch.version.cuda, str(cudnn) if cudnn else None
