"""Fingerprint the dependencies: requirement files, installed distributions, Python, torch, CUDA.

Installed distributions come from ``importlib.metadata`` (never by running pip). torch's own
versions are read from its ``version.py`` without importing torch, which takes seconds.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.metadata
import importlib.util
import platform
import re
import sys
from collections.abc import Sequence
from pathlib import Path

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
    """cuDNN version torch reports (only when torch is already imported), else None."""
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
    torch = sys.modules.get("torch")
    if torch is not None:
        cudnn = None
        try:
            v = torch.backends.cudnn.version()
            cudnn = str(v) if v else None
        except Exception:  # cuDNN probing can fail on odd builds; it is optional information
            cudnn = None
        return str(torch.__version__), torch.version.cuda, cudnn
    try:
        version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None, None, None
    return version, _torch_cuda_from_source(), None


def _torch_cuda_from_source() -> str | None:
    """Read ``cuda = '12.1'`` from torch/version.py without importing torch."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / "version.py"
        if path.is_file():
            for node in ast.parse(path.read_text()).body:
                if (
                    isinstance(node, (ast.Assign, ast.AnnAssign))
                    and isinstance(node.value, ast.Constant)
                    and any(
                        isinstance(t, ast.Name) and t.id == "cuda"
                        for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
                    )
                ):
                    value = node.value.value
                    return str(value) if value else None
    return None
