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


def test_two_lines_of_one_distribution_are_two_entries(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text(
        "torch==2.13.0; sys_platform == 'linux'\n"
        "torch==2.12.0; sys_platform == 'darwin'\n"
        "Rich_Text==1.0\n"
    )
    reqs = collect_deps(tmp_path).requirements
    assert reqs == {
        'torch;sys_platform == "darwin"': 'torch==2.12.0; sys_platform == "darwin"',
        'torch;sys_platform == "linux"': 'torch==2.13.0; sys_platform == "linux"',
        "rich-text": "Rich_Text==1.0",
    }


def test_one_distribution_in_two_files_is_two_entries(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("numpy==2.0\n-r requirements-extra.txt\n")
    (tmp_path / "requirements-extra.txt").write_text("numpy<3\n")
    reqs = collect_deps(tmp_path).requirements
    # Also included by the other file: each line is counted once, where it is.
    assert reqs == {
        "numpy@requirements-extra.txt": "numpy<3",
        "numpy@requirements.txt": "numpy==2.0",
    }


@pytest.mark.parametrize(
    ("before", "after", "changed"),
    [
        # The second line of a name changes: a finding at its own entry.
        (
            "torch==2.13.0; sys_platform == 'linux'\ntorch==2.12.0; sys_platform == 'darwin'\n",
            "torch==2.13.0; sys_platform == 'linux'\ntorch==2.11.0; sys_platform == 'darwin'\n",
            ['deps.requirements.torch;sys_platform == "darwin"'],
        ),
        # The first line changes.
        (
            "torch==2.13.0; sys_platform == 'linux'\ntorch==2.12.0; sys_platform == 'darwin'\n",
            "torch==2.14.0; sys_platform == 'linux'\ntorch==2.12.0; sys_platform == 'darwin'\n",
            ['deps.requirements.torch;sys_platform == "linux"'],
        ),
        # Only a comment and the order of lines moved: nothing to report.
        (
            "torch==2.13.0; sys_platform == 'linux'\ntorch==2.12.0; sys_platform == 'darwin'\n",
            "# pins\ntorch==2.12.0; sys_platform == 'darwin'\n"
            "torch==2.13.0; sys_platform == 'linux'\n",
            [],
        ),
    ],
)
def test_changing_either_line_is_a_finding(
    tmp_path: Path, before: str, after: str, changed: list[str]
) -> None:
    from resumeguard.records.fingerprint import take
    from resumeguard.verdict.compare import compare

    (tmp_path / "requirements.txt").write_text(before)
    recorded = take(repo=None, requirements=[tmp_path / "requirements.txt"])
    (tmp_path / "requirements.txt").write_text(after)
    current = take(repo=None, requirements=[tmp_path / "requirements.txt"])
    found = [f.path for f in compare(recorded, current) if f.path.startswith("deps.requirements")]
    assert found == changed


LINES = [
    "torch>=2.1",
    "Foo_Bar[extra1,extra2] >= 1.0, <2 ; python_version < '3.12'",
    "foo===1.0",  # arbitrary equality (PEP 440): kept verbatim
    "pkg==1.0 --hash=sha256:" + "a" * 64 + " --hash=sha256:" + "b" * 64,
    "other==2.0 --hash=sha256:" + "c" * 64,  # its own hash only, not the line above's too
    "git+https://example.com/repo.git@v1#egg=repo",
    "-e ./local",
    "baz>=1 ; os_name ==",  # unparsable marker: recorded as invalid, never fatal
]


def test_the_reused_line_parser_reads_every_line_as_the_parser_does(tmp_path: Path) -> None:
    """Reusing the option parser across lines changes nothing (append options included)."""
    import pip_requirements_parser

    from resumeguard.collect import deps

    (tmp_path / "requirements.txt").write_text("\n".join(LINES) + "\n")
    (tmp_path / "local").mkdir()
    fast = collect_deps(tmp_path, [tmp_path / "requirements.txt"]).requirements
    pip_requirements_parser.build_parser = deps._BUILD_PARSER[0]  # the parser's own, per line
    try:
        slow = collect_deps(tmp_path, [tmp_path / "requirements.txt"]).requirements
    finally:
        pip_requirements_parser.build_parser = deps._reused_line_parser
    assert fast == slow
    assert fast["foo"] == "foo===1.0" and "b" * 64 not in fast["other"]
    assert any(k.startswith("invalid:") for k in fast)


def test_ten_thousand_requirement_lines_build_the_option_parser_once(tmp_path: Path) -> None:
    """The parser's own path builds an optparse parser per line (about 1 ms each, seconds for a
    big file); ours builds it once per thread, however many lines. The speed itself is measured
    by ``bench/bench_requirements.py``, not by a timed test."""
    import threading

    import pip_requirements_parser

    from resumeguard.collect import deps

    lines = [f"pkg{i}=={i % 7}.{i % 13}.0" for i in range(10_000)]
    (tmp_path / "requirements.txt").write_text("\n".join(lines) + "\n")
    collect_deps(tmp_path, [tmp_path / "requirements.txt"])  # installs the reused parser
    builds = 0
    own = deps._BUILD_PARSER[0]

    def counted() -> object:
        nonlocal builds
        builds += 1
        return own()

    deps._BUILD_PARSER[0] = counted
    try:
        found: list[dict[str, str]] = []
        worker = threading.Thread(  # a fresh thread: its parser is not built yet
            target=lambda: found.append(
                collect_deps(tmp_path, [tmp_path / "requirements.txt"]).requirements
            )
        )
        worker.start()
        worker.join()
    finally:
        deps._BUILD_PARSER[0] = own
    assert pip_requirements_parser.build_parser is deps._reused_line_parser
    assert len(found[0]) == 10_000 and found[0]["pkg9999"] == "pkg9999==3.2.0"
    assert builds == 1
