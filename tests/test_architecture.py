"""The layout stays readable: stages import one way, no module imports itself back through
others, few modules sit at the top, and every package says what it is and what it may import."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "resumeguard"


def _lint_imports(cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, importlinter.cli as c; sys.exit(c.lint_imports(no_cache=True))",
        ],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_each_stage_imports_only_the_stages_below_it() -> None:
    done = _lint_imports(ROOT, ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_lower_stage_importing_a_higher_one_breaks_the_contract(tmp_path: Path) -> None:
    shutil.copytree(PACKAGE, tmp_path / "resumeguard", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    hashing = tmp_path / "resumeguard" / "io" / "hashing.py"
    hashing.write_text(
        hashing.read_text()
        + "\n\ndef _late() -> None:\n    from resumeguard.decide import pipeline\n"
    )
    done = _lint_imports(tmp_path, tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "resumeguard.io.hashing -> resumeguard.decide.pipeline" in done.stdout


def _cycles() -> list[list[str]]:
    """Groups of modules that import each other, also from inside functions (type hints aside)."""
    graph = grimp.build_graph("resumeguard", exclude_type_checking_imports=True)
    edges = {
        m: set(graph.find_modules_directly_imported_by(m)) - {"resumeguard"} for m in graph.modules
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:  # Tarjan's strongly connected components
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in edges[module]:
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            group = []
            while True:
                top = stack.pop()
                group.append(top)
                if top == module:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for module in sorted(edges):
        if module not in index:
            visit(module)
    return found


def test_no_module_imports_itself_back() -> None:
    assert _cycles() == []


def test_at_most_six_modules_at_the_top() -> None:
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 6, top


@pytest.mark.parametrize(
    "package", sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py")), ids=str
)
def test_every_package_says_what_it_does_and_may_import(package: str) -> None:
    doc = ast.get_docstring(ast.parse((PACKAGE / package / "__init__.py").read_text()))
    assert doc, f"resumeguard/{package}/__init__.py has no docstring"
    assert "May import:" in doc, (
        f"resumeguard.{package}'s docstring does not say what it may import"
    )


def test_a_front_door_loads_only_what_it_uses() -> None:
    """``resumeguard.init`` (the check before a resume) does not load the checkpoint API, and
    ``import resumeguard`` loads neither."""
    code = (
        "import sys, resumeguard; assert 'resumeguard.api.entry' not in sys.modules;"
        "resumeguard.init;"
        "loaded = {m for m in sys.modules if m.startswith('resumeguard.api.')};"
        "assert loaded == {'resumeguard.api.entry'}, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=60)
