"""collect_deps: requirement files (pip-requirements-parser), installed distributions, torch."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from resumeguard.collect.deps import canonical_name, collect_deps, installed_distributions
from resumeguard.errors import BadInput

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "requirements"


def test_requirements_keep_markers_extras_hashes_and_vcs_lines(tmp_path: Path) -> None:
    for f in FIXTURES.glob("*.txt"):
        shutil.copy(f, tmp_path / f.name)
    deps = collect_deps(tmp_path, [tmp_path / "requirements.txt"])
    reqs = deps.requirements
    assert reqs["numpy"] == "numpy>=1.26", "followed the -r include"
    assert reqs["torch"] == 'torch==2.13.0; python_version >= "3.10"'
    assert reqs["requests"].startswith("requests[socks]==2.32.3 --hash=sha256:70761cfe")
    assert reqs["tool"] == "--editable git+https://github.com/example/tool.git@v1.2#egg=tool"
    assert set(deps.requirement_files) == {"requirements.txt", "base.txt"}


def test_default_is_requirements_star_at_the_root(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("rich==13.7.0\n")
    (tmp_path / "requirements-dev.txt").write_text("pytest>=8\n")
    (tmp_path / "other.txt").write_text("flask\n")
    assert set(collect_deps(tmp_path).requirements) == {"rich", "pytest"}


def test_an_unparseable_line_is_recorded_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("rich==13.7.0\nthis is not a requirement !!\n")
    reqs = collect_deps(tmp_path).requirements
    assert reqs["invalid:requirements.txt:2"] == "this is not a requirement !!"


def test_a_named_file_that_does_not_exist_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="requirements file not found"):
        collect_deps(tmp_path, [tmp_path / "nope.txt"])


def test_installed_and_torch_versions_without_running_pip() -> None:
    installed = installed_distributions()
    assert installed["torch"] == torch.__version__.split("+")[0] or installed["torch"] == (
        torch.__version__
    )
    deps = collect_deps(None)
    assert deps.torch == torch.__version__
    assert deps.cuda == torch.version.cuda
    assert canonical_name("Pip_Requirements.Parser") == "pip-requirements-parser"
