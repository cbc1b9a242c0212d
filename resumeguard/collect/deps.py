"""Fingerprint the dependencies: requirement files, installed distributions, Python, torch, CUDA.

Installed distributions come from ``importlib.metadata`` (never by running pip).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import importlib.util
import platform
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from resumeguard.collect.record import Record
from resumeguard.errors import BadInput
from resumeguard.io.hashing import digest_bytes
from resumeguard.redact import comparable_text, redact_text

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
    """One entry per requirement line: canonical name (or "url:<link>" for unnamed lines) -> the
    line, credentials in its URLs redacted. A name on several lines (other markers, other files)
    gets one entry per line, the key qualified as ``<name>@<file>`` and/or ``<name>;<marker>``
    (see :func:`line_keys`)."""
    requirement_files: dict[str, str] = dataclasses.field(default_factory=dict)
    """Requirement file (relative to the repo root where possible) -> the digest of its text with
    the user info of its URLs left out (a rotated token is no change, and no token is hashed)."""
    installed: dict[str, str] = dataclasses.field(default_factory=dict)
    """Canonical distribution name -> installed version."""


def canonical_name(name: str) -> str:
    """PEP 503 normalised project name."""
    return str(canonicalize_name(name))


@dataclasses.dataclass(frozen=True)
class RequirementLine:
    """One requirement line as read, before it gets its key in the record."""

    name: str
    """Canonical name, or "url:<link>" for a line without one."""
    file: str
    """The file it is in (relative to the repository root where possible)."""
    marker: str
    """Its environment marker, "" when none."""
    text: str
    """The requirement as one normalised line."""


def line_keys(lines: Sequence[RequirementLine]) -> dict[str, str]:
    """Record keys for requirement lines: the name alone where it is on one line; else qualified
    by file (when the lines are in several files) and marker (when their markers differ), so
    that two lines of one distribution stay two entries and a change to either is a finding."""
    by_name: dict[str, list[RequirementLine]] = {}
    for line in lines:
        by_name.setdefault(line.name, []).append(line)
    keys: dict[str, str] = {}
    for name, group in by_name.items():
        several_files = len({g.file for g in group}) > 1
        several_markers = len({g.marker for g in group}) > 1
        named: dict[str, list[RequirementLine]] = {}
        for line in group:
            key = name
            if len(group) > 1 and several_files:
                key += f"@{line.file}"
            if len(group) > 1 and several_markers and line.marker:
                key += f";{line.marker}"
            named.setdefault(key, []).append(line)
        for key, same in named.items():
            for n, line in enumerate(same, start=1):
                keys[key if len(same) == 1 else f"{key}#{n}"] = line.text
    return dict(sorted(keys.items()))


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
        meta = dist.metadata  # parsed on every access: read it once per distribution
        name = meta["Name"] if meta else None
        if name:
            found.setdefault(canonical_name(name), meta["Version"])
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


_PARSERS = threading.local()


def _reused_line_parser() -> Any:
    """The requirement-line option parser, built once per thread: the parser builds a new
    optparse parser for every line (22 options each, about 1 ms), which made a 10,000-line file
    take seconds. Reusing it is safe with fresh defaults per line: its append options default
    to lists (of strings), so each line gets copies of them."""
    import optparse

    import pip_requirements_parser as parser_module

    parser = getattr(_PARSERS, "parser", None)
    if parser is None:
        parser = _BUILD_PARSER[0]()
        defaults = dict(vars(parser.get_default_values()))

        def fresh() -> optparse.Values:
            return optparse.Values({k: v[:] if type(v) is list else v for k, v in defaults.items()})

        parser.get_default_values = fresh
        _PARSERS.parser = parser
    assert parser_module  # imported: the module whose build_parser this replaces
    return parser


_BUILD_PARSER: list[Any] = []


def _use_reused_line_parser() -> None:
    """Install :func:`_reused_line_parser` as the requirements parser's ``build_parser``."""
    import pip_requirements_parser as parser_module

    if not _BUILD_PARSER:
        _BUILD_PARSER.append(parser_module.build_parser)
        parser_module.build_parser = _reused_line_parser


def _parse_requirements(
    files: list[Path], root: str | Path | None
) -> tuple[dict[str, str], dict[str, str]]:
    from pip_requirements_parser import RequirementsFile

    _use_reused_line_parser()
    rel_of = functools.cache(lambda name: _rel(name, root))  # once per file, not per line

    lines: dict[tuple[str, int | None], RequirementLine] = {}
    invalid: dict[str, str] = {}
    digests: dict[str, str] = {}
    for path in files:
        try:
            parsed = RequirementsFile.from_file(str(path), include_nested=True)
        except Exception as e:  # the parser raises bare exceptions for unreadable includes
            raise BadInput(f"cannot parse requirements file {path}: {e}") from e
        seen_files = {str(path)}
        for req in parsed.requirements:
            filename = req.filename or str(path)
            seen_files.add(filename)
            rel = rel_of(filename)
            # Keyed by place: a file included twice (or also named) still counts its lines once.
            lines[(rel, req.line_number)] = RequirementLine(
                name=canonical_name(req.name)
                if req.name
                else redact_text(f"url:{req.link or req.line}"),
                file=rel,
                marker=str(req.marker) if req.marker else "",
                # One canonical line keeps markers, extras, hashes and editable/VCS forms.
                text=redact_text(" ".join(req.dumps().replace("\\\n", " ").split())),
            )
        for bad in parsed.invalid_lines:
            line = bad.requirement_line
            where = f"invalid:{_rel(line.filename, root)}:{line.line_number}"
            invalid[where] = redact_text(line.line.strip())
        for option in parsed.options:
            seen_files.add(option.requirement_line.filename)
        for name in sorted(seen_files):
            if Path(name).is_file():
                digests[_rel(name, root)] = _digest_without_credentials(Path(name))
    return dict(sorted({**line_keys(list(lines.values())), **invalid}.items())), digests


def _digest_without_credentials(path: Path) -> str:
    """The digest of a requirement file's text with its URLs' user info left out; the same as
    the file's own digest when it holds none (as recorded before credentials were left out)."""
    data = path.read_bytes()
    text = data.decode("utf-8", "surrogateescape")
    clean = comparable_text(text)
    return digest_bytes(data if clean == text else clean.encode("utf-8", "surrogateescape"))


def _rel(name: str, root: str | Path | None) -> str:
    p = Path(name).resolve()
    if root is not None:
        try:
            return p.relative_to(Path(root).resolve()).as_posix()
        except ValueError:
            pass
    return p.as_posix()


def _torch_versions() -> tuple[str | None, str | None, str | None]:
    """torch's version and the CUDA it was built with, from torch's own ``version.py`` (what
    ``torch.__version__`` and ``torch.version.cuda`` are read from), and the cuDNN version
    of its ``nvidia-cudnn`` package in torch's number format; None when absent. torch itself
    is not imported (seconds), so a check outside training and the process that recorded the
    run read the same values from the same place."""
    spec = importlib.util.find_spec("torch")  # finds the package without running it
    if spec is None or not spec.submodule_search_locations:
        return None, None, None
    path = Path(next(iter(spec.submodule_search_locations))) / "version.py"
    loader_spec = importlib.util.spec_from_file_location("_resumeguard_torch_version", path)
    if loader_spec is None or loader_spec.loader is None:
        return None, None, None
    module = importlib.util.module_from_spec(loader_spec)
    try:
        loader_spec.loader.exec_module(module)
    except (OSError, SyntaxError, ImportError):
        return None, None, None
    version = getattr(module, "__version__", None)
    cuda = getattr(module, "cuda", None)
    return (
        str(version) if version else None,
        str(cuda) if cuda else None,
        _cudnn_version() if cuda else None,
    )


def _cudnn_version() -> str | None:
    """The cuDNN of the ``nvidia-cudnn-cu*`` wheel torch loads, as ``torch.backends.cudnn
    .version()`` numbers it (9.10.2 -> "91002", 8.9.2 -> "8902")."""
    for dist in importlib.metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"] or "")
        if not name.startswith("nvidia-cudnn-cu"):
            continue
        parts = [int(p) for p in dist.version.split(".")[:3] if p.isdigit()]
        if len(parts) < 3:
            return None
        major, minor, patch = parts
        return str(major * (10000 if major >= 9 else 1000) + minor * 100 + patch)
    return None
