"""compare(): pure recorded + current -> findings, at stable paths with messages and hints."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from helpers import git, make_repo

from resumeguard.collect.code import CodeRecord, collect_code, open_history
from resumeguard.collect.deps import DepsRecord
from resumeguard.collect.env import EnvRecord
from resumeguard.collect.optimizer import ModelRecord, OptimizerRecord, ParamRecord
from resumeguard.collect.record import Unavailable
from resumeguard.records.fingerprint import Fingerprint, from_json
from resumeguard.verdict.compare import compare
from resumeguard.verdict.findings import Severity
from resumeguard.verdict.judge import judge
from resumeguard.verdict.policy import Rule, preset

SHA = "a" * 40


def base() -> Fingerprint:
    return Fingerprint(
        code=CodeRecord(root="/src/proj", commit=SHA, branch="main"),
        deps=DepsRecord(
            python="3.11.7",
            implementation="CPython",
            platform="Linux-x86_64",
            torch="2.13.0",
            requirements={"torch": "torch==2.13.0"},
            installed={"torch": "2.13.0", "numpy": "2.0.0"},
        ),
        env=EnvRecord(device_type="cuda", device_count=8, world_size=8),
        optimizer=OptimizerRecord(
            cls="torch.optim.adamw.AdamW",
            groups=[{"lr": 0.001, "betas": [0.9, 0.999], "params": 2}],
            params=[ParamRecord((4, 2), "float32"), ParamRecord((4,), "float32")],
            state_digest="blake3:x",
        ),
        model=ModelRecord(
            params={"fc.weight": {"shape": [4, 2], "dtype": "float32"}}, digest="blake3:m"
        ),
        config={"lr": 0.001, "batch_size": 32},
    )


def paths(recorded: Fingerprint, current: Fingerprint) -> list[str]:
    return [f.path for f in compare(recorded, current)]


def test_identical_fingerprints_have_no_findings() -> None:
    assert compare(base(), base()) == []
    assert judge("r", [], preset("strict")).verdict.value == "ok"


def test_json_round_trip_is_lossless() -> None:
    fp = base()
    again = from_json(fp.to_json())
    assert again == fp
    assert compare(fp, again) == []


def test_requirement_pin_change() -> None:
    current = dataclasses.replace(
        base(),
        deps=dataclasses.replace(base().deps, requirements={"torch": "torch==2.14.0"}),  # type: ignore[arg-type]
    )
    [f] = compare(base(), current)
    assert f.path == "deps.requirements.torch"
    assert (f.recorded, f.current) == ("torch==2.13.0", "torch==2.14.0")
    assert "pin torch==2.13.0 again" in f.hint


def test_installed_version_change_and_new_package() -> None:
    deps = base().deps
    assert isinstance(deps, DepsRecord)
    current = dataclasses.replace(
        base(),
        deps=dataclasses.replace(
            deps, installed={"torch": "2.13.0", "numpy": "2.1.0", "rich": "1"}
        ),
    )
    findings = {f.path: f for f in compare(base(), current)}
    assert set(findings) == {"deps.installed.numpy", "deps.installed.rich"}
    assert findings["deps.installed.rich"].recorded is None
    assert "pip install 'numpy==2.0.0'" in findings["deps.installed.numpy"].hint


def test_changed_lr_layer_shape_and_class() -> None:
    opt = base().optimizer
    assert isinstance(opt, OptimizerRecord)
    current = dataclasses.replace(
        base(),
        optimizer=dataclasses.replace(
            opt,
            cls="torch.optim.sgd.SGD",
            groups=[{"lr": 0.0005, "betas": [0.9, 0.999], "params": 2}],
            params=[ParamRecord((2, 4), "float32"), ParamRecord((4,), "float32")],
        ),
    )
    # The other class's hyperparameters follow from the class: one finding, not one per key.
    assert paths(base(), current) == ["optimizer.class", "optimizer.params.0.shape"]
    same_class = dataclasses.replace(
        current, optimizer=dataclasses.replace(current.optimizer, cls=opt.cls)
    )
    assert "optimizer.groups.0.lr" in paths(base(), same_class)


def test_state_digest_is_not_compared_at_setup() -> None:
    opt = base().optimizer
    assert isinstance(opt, OptimizerRecord)
    current = dataclasses.replace(base(), optimizer=dataclasses.replace(opt, state_digest="y"))
    assert compare(base(), current) == []


def test_optimizer_not_given_now_is_not_a_divergence() -> None:
    current = dataclasses.replace(base(), optimizer=Unavailable("not given"))
    assert compare(base(), current) == []


def test_env_and_config_changes() -> None:
    current = dataclasses.replace(
        base(),
        env=EnvRecord(device_type="cuda", device_count=4, world_size=4),
        config={"lr": 0.001, "batch_size": 64, "seed": 1},
    )
    assert paths(base(), current) == [
        "env.device_count",
        "env.world_size",
        "config.batch_size",
        "config.seed",
    ]


def test_code_unavailable_now_is_reported() -> None:
    current = dataclasses.replace(base(), code=Unavailable("not a git repository: /x"))
    [f] = compare(base(), current)
    assert f.path == "code.repo"


def test_dirty_edit_at_same_commit_is_per_file() -> None:
    code = base().code
    assert isinstance(code, CodeRecord)
    current = dataclasses.replace(
        base(),
        code=dataclasses.replace(
            code, changed={"train.py": "b" * 40}, untracked={"new.py": "c" * 40}, diff_digest="d"
        ),
    )
    findings = {f.path: f for f in compare(base(), current)}
    assert set(findings) == {"code.files.train.py", "code.untracked.new.py"}
    assert findings["code.untracked.new.py"].recorded is None
    assert "modified" in findings["code.files.train.py"].message


def test_new_commit_without_history_reports_the_commit_whole() -> None:
    code = base().code
    assert isinstance(code, CodeRecord)
    current = dataclasses.replace(base(), code=dataclasses.replace(code, commit="b" * 40))
    [f] = compare(base(), current)
    assert f.path == "code.commit" and not f.context


def test_a_mostly_changed_mapping_is_one_finding_per_key() -> None:
    # Most keys renamed: deepdiff's default would report the whole config as one change.
    recorded = dataclasses.replace(base(), config={"lr": 0.1, "a": 1, "b": 2, "c": 3})
    current = dataclasses.replace(base(), config={"lr": 0.2, "d": 1, "e": 2, "f": 3})
    assert sorted(paths(recorded, current)) == sorted(f"config.{k}" for k in ["lr", *"abcdef"])
    warn_lr = preset("strict").with_rules([Rule("config.lr", Severity.WARN, "test")])
    judged = {
        j.finding.path: j.severity for j in judge("r", compare(recorded, current), warn_lr).findings
    }
    assert judged["config.lr"] is Severity.WARN
    assert judged["config.d"] is Severity.BLOCK


def test_a_mostly_changed_record_mapping_is_one_finding_per_key() -> None:
    deps = base().deps
    assert isinstance(deps, DepsRecord)
    recorded = dataclasses.replace(
        base(), deps=dataclasses.replace(deps, installed={"torch": "2.13.0", "a": "1", "b": "1"})
    )
    current = dataclasses.replace(
        base(), deps=dataclasses.replace(deps, installed={"torch": "2.14.0", "c": "1", "d": "1"})
    )
    assert sorted(paths(recorded, current)) == [
        f"deps.installed.{k}" for k in ["a", "b", "c", "d", "torch"]
    ]


def with_params(*params: ParamRecord, groups: list | None = None) -> Fingerprint:
    opt = base().optimizer
    assert isinstance(opt, OptimizerRecord)
    return dataclasses.replace(
        base(),
        optimizer=dataclasses.replace(
            opt, params=list(params) or opt.params, groups=groups or opt.groups
        ),
    )


def test_per_param_state_and_slot_names_count_only_where_both_sides_can_tell() -> None:
    """A fresh optimizer has no per-param state yet (the restore compares it), and a record
    without slot names cannot tell which parameter sits where: neither is a change. Names on
    both sides that differ are one."""
    w, b = ParamRecord((4, 2), "float32"), ParamRecord((4,), "float32")
    moments = {"exp_avg": {"shape": [4, 2], "dtype": "float32"}}
    stepped = with_params(dataclasses.replace(w, state=moments), b)
    assert compare(stepped, with_params(w, b)) == []
    named = with_params(
        dataclasses.replace(w, name="fc.weight"), dataclasses.replace(b, name="fc.bias")
    )
    assert compare(named, with_params(w, b)) == []
    swapped = with_params(
        dataclasses.replace(w, name="fc.bias"), dataclasses.replace(b, name="fc.weight")
    )
    assert {f.path for f in compare(named, swapped)} == {
        "optimizer.params.0.name",
        "optimizer.params.1.name",
    }


def test_an_added_param_group_is_absent_on_the_recorded_side() -> None:
    group = {"lr": 0.001, "betas": [0.9, 0.999], "params": 2}
    two = with_params(groups=[group, {**group, "lr": 0.01}])
    [added] = compare(base(), two)
    assert (added.path, added.recorded, added.current) == (
        "optimizer.groups.1",
        None,
        {**group, "lr": 0.01},
    )
    [changed] = compare(base(), with_params(groups=[{**group, "lr": 0.1}]))
    assert (changed.path, changed.recorded, changed.current) == (
        "optimizer.groups.0.lr",
        0.001,
        0.1,
    )


def test_a_file_deleted_in_the_working_tree_is_absent_now() -> None:
    code = base().code
    assert isinstance(code, CodeRecord)
    current = dataclasses.replace(
        base(), code=dataclasses.replace(code, changed={"train.py": "deleted"}, diff_digest="d")
    )
    [gone] = compare(base(), current)
    assert (gone.path, gone.recorded, gone.current) == (
        "code.files.train.py",
        f"committed@{SHA}",
        None,
    )


def test_without_the_recorded_commit_a_dirty_tree_is_reported_whole() -> None:
    """The recorded commit missing locally: files cannot be attributed, so a working-tree diff
    that changed is code.diff (it blocks); the same diff at another commit adds nothing."""
    code = base().code
    assert isinstance(code, CodeRecord)
    moved = dataclasses.replace(code, commit="b" * 40)
    dirty = dataclasses.replace(base(), code=dataclasses.replace(moved, diff_digest="blake3:d"))
    assert paths(base(), dirty) == ["code.commit", "code.diff"]
    assert judge(None, compare(base(), dirty), preset("strict")).verdict.value == "block"
    assert paths(base(), dataclasses.replace(base(), code=moved)) == ["code.commit"]


def code_of(root: Path, **kw: int) -> CodeRecord:
    found = collect_code(root, **kw)
    assert isinstance(found, CodeRecord)
    return found


def with_code(code: CodeRecord, config: dict | None = None) -> Fingerprint:
    return dataclasses.replace(base(), code=code, config=config or {})


def code_findings(recorded: CodeRecord, current: CodeRecord, root: Path) -> dict[str, Any]:
    found = compare(with_code(recorded), with_code(current), open_history(root))
    return {f.path: f for f in found}


def test_an_oversize_untracked_file_is_compared_by_its_stamp(tmp_path: Path) -> None:
    """A file too large to hash is left out of the digest but not of the comparison: one that
    appears, changes, or moves between hashed and left out is code.skipped (it blocks); the
    same stamp again is nothing."""
    repo = make_repo(tmp_path / "repo", {"train.py": "x = 1\n"})
    (repo / "small.dat").write_bytes(b"a" * 10)
    before = code_of(repo, max_untracked_bytes=100)
    (repo / "big.dat").write_bytes(b"b" * 200)
    appeared = code_of(repo, max_untracked_bytes=100)
    found = code_findings(before, appeared, repo)
    assert set(found) == {"code.skipped.big.dat"}
    assert (found["code.skipped.big.dat"].recorded, found["code.skipped.big.dat"].current) == (
        None,
        appeared.stamps["big.dat"],
    )
    assert code_findings(appeared, code_of(repo, max_untracked_bytes=100), repo) == {}
    (repo / "small.dat").write_bytes(b"c" * 200)  # now too large to hash
    grown = code_of(repo, max_untracked_bytes=100)
    moved = code_findings(appeared, grown, repo)["code.skipped.small.dat"]
    assert (moved.recorded, moved.current) == (
        appeared.untracked["small.dat"],
        grown.stamps["small.dat"],
    )
    assert "code.untracked.small.dat" not in code_findings(appeared, grown, repo)
    verdict = judge(None, compare(with_code(before), with_code(appeared)), preset("strict"))
    assert verdict.verdict.value == "block"
    # A record of schema 1-2 left such a file out without a stamp: nothing to compare with.
    old = dataclasses.replace(appeared, stamps={}, skipped={"big.dat": "too large"})
    assert "code.skipped.big.dat" not in code_findings(old, appeared, repo)


def test_committing_what_was_dirty_is_no_change_and_an_added_file_is_a_file(
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path / "repo", {"train.py": "x = 1\n", "conf.yaml": "lr: 1\n"})
    (repo / "conf.yaml").write_text("lr: 2\n")
    (repo / "extra.yaml").write_text("a: 1\n")
    dirty = code_of(repo)
    git(repo, "add", "conf.yaml", "extra.yaml")
    added = code_of(repo)
    assert set(code_findings(dirty, added, repo)) == set(), "staging changes no bytes"
    git(repo, "commit", "-qm", "config")
    committed = code_of(repo)
    assert set(code_findings(dirty, committed, repo)) == {"code.commit"}
    (repo / "extra.yaml").write_text("a: 2\n")
    assert set(code_findings(dirty, code_of(repo), repo)) == {
        "code.commit",
        "code.files.extra.yaml",
    }


def test_the_runs_output_folder_is_found_from_an_absolute_path_in_its_config(
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path / "repo", {"train.py": "x = 1\n"})
    before = code_of(repo)
    (repo / "out").mkdir()
    (repo / "out" / "metrics.csv").write_text("1\n")
    after = code_of(repo)
    config = {"output_dir": str(repo / "out")}
    found = compare(with_code(before, config), with_code(after, config), open_history(repo))
    [written] = [f for f in found if f.path == "code.untracked.out/metrics.csv"]
    assert written.downgrade == "run-output"
    # The look-alike: without the run's folder in its config the new file counts.
    [counted] = compare(with_code(before), with_code(after), open_history(repo))
    assert counted.downgrade == ""
    # Nothing recorded of the code: nothing to compare it with.
    unrecorded = dataclasses.replace(with_code(after), code=Unavailable("no git"))
    assert compare(unrecorded, with_code(after)) == []


def test_env_and_deps_compare_by_their_fields_and_a_part_gone_now_is_named() -> None:
    """The process's rank is not the job's shape (no finding); a device list is one finding;
    a part recorded then and unavailable now is ``<part>.unavailable`` with the reason; a
    rotated token in a requirement's URL is no change, another host is."""
    env = base().env
    deps = base().deps
    assert isinstance(env, EnvRecord) and isinstance(deps, DepsRecord)
    ranked = dataclasses.replace(base(), env=dataclasses.replace(env, rank=3))
    assert compare(base(), ranked) == []
    named = dataclasses.replace(base(), env=dataclasses.replace(env, device_names=("H100",)))
    [names] = compare(base(), named)
    assert (names.path, names.recorded, names.current) == ("env.device_names", [], ["H100"])
    gone = dataclasses.replace(base(), deps=Unavailable("pip cannot be run"))
    [unavailable] = compare(base(), gone)
    assert (unavailable.path, unavailable.recorded, unavailable.current) == (
        "deps.unavailable",
        "deps",
        "pip cannot be run",
    )

    def pinned(url: str) -> Fingerprint:
        return dataclasses.replace(
            base(), deps=dataclasses.replace(deps, requirements={"pkg": f"pkg @ {url}"})
        )

    old = pinned("https://user:token1@git.example.com/pkg.git")
    assert compare(old, pinned("https://user:token2@git.example.com/pkg.git")) == []
    assert paths(old, pinned("https://user:token1@other.example.com/pkg.git")) == [
        "deps.requirements.pkg"
    ]


def code_changed(**changes: Any) -> Fingerprint:
    code = base().code
    assert isinstance(code, CodeRecord)
    return dataclasses.replace(base(), code=dataclasses.replace(code, **changes))


def test_branch_remote_root_and_submodules_each_compare_on_their_own() -> None:
    """Each repository fact is its own finding, recorded and current values kept; the same
    remote with other credentials is no change, another host or a remote gone is."""
    for field, value in [("branch", "dev"), ("root", "/src/other"), ("remote", "https://h/r")]:
        [found] = compare(base(), code_changed(**{field: value}))
        assert (found.path, found.current) == (f"code.{field}", value)
    [detached] = compare(base(), code_changed(branch=None))
    assert (detached.path, detached.recorded, detached.current) == ("code.branch", "main", None)
    remote = code_changed(remote="https://user:one@git.example.com/r.git")
    assert compare(remote, code_changed(remote="https://user:two@git.example.com/r.git")) == []
    assert paths(remote, code_changed(remote="https://user:one@other.example.com/r.git")) == [
        "code.remote"
    ]
    assert paths(remote, code_changed(remote=None)) == ["code.remote"]
    assert paths(code_changed(remote=None), remote) == ["code.remote"]
    subs = code_changed(submodules={"vendor/lib": "1" * 40, "vendor/two": "2" * 40})
    assert compare(subs, subs) == []
    moved = code_changed(submodules={"vendor/lib": "3" * 40, "vendor/two": "2" * 40})
    [sub] = compare(subs, moved)
    assert (sub.path, sub.recorded, sub.current) == (
        "code.submodules.vendor/lib",
        "1" * 40,
        "3" * 40,
    )
    assert paths(subs, code_changed()) == [
        "code.submodules.vendor/lib",
        "code.submodules.vendor/two",
    ]


def test_a_shallow_clone_now_is_said_and_one_recorded_shallow_is_not() -> None:
    [shallow] = compare(base(), code_changed(shallow=True))
    assert (shallow.path, shallow.recorded, shallow.current, shallow.context) == (
        "code.shallow",
        False,
        True,
        True,
    )
    assert compare(code_changed(shallow=True), base()) == []
    assert paths(code_changed(shallow=True), code_changed(shallow=True)) == ["code.shallow"]


def test_a_new_commit_with_both_commits_here_is_compared_per_file(tmp_path: Path) -> None:
    """Both commits present: code.commit is resolved (context) and each file that differs is its
    own finding, the diff digest is not compared; one commit missing: unresolved, and a changed
    working-tree diff is code.diff."""
    repo = make_repo(tmp_path / "repo", {"train.py": "x = 1\n", "notes.md": "a\n"})
    before = code_of(repo)
    (repo / "train.py").write_text("x = 2\n")
    git(repo, "commit", "-qam", "two")
    after = code_of(repo)
    found = code_findings(before, after, repo)
    assert set(found) == {"code.commit", "code.files.train.py"}
    assert found["code.commit"].context is True
    assert found["code.files.train.py"].recorded != found["code.files.train.py"].current
    missing = dataclasses.replace(before, commit="f" * 40, diff_digest="blake3:then")
    unresolved = code_findings(missing, dataclasses.replace(after, diff_digest="blake3:now"), repo)
    assert set(unresolved) == {"code.commit", "code.diff"}
    assert unresolved["code.commit"].context is False
    assert (unresolved["code.diff"].recorded, unresolved["code.diff"].current) == (
        "blake3:then",
        "blake3:now",
    )
    same_diff = dataclasses.replace(after, diff_digest="blake3:then")
    assert set(code_findings(missing, same_diff, repo)) == {"code.commit"}


def model_of(*names: str) -> ModelRecord:
    return ModelRecord(
        params={n: {"shape": [4, 4], "dtype": "float32"} for n in names}, digest="blake3:m"
    )


def named_optimizer(*names: str | None) -> OptimizerRecord:
    optimizer = base().optimizer
    assert isinstance(optimizer, OptimizerRecord)
    params = [ParamRecord((4, 4), "float32", name=n) for n in names]
    return dataclasses.replace(optimizer, params=params)


def test_parameters_registered_in_another_order_name_the_moved_ones() -> None:
    """Two equal-shaped layers swapped: model.order names the moved parameters on both sides;
    added or removed parameters are their own findings, never an order change; the context says
    whether both optimizers name every slot (then the names decide, not the order)."""
    recorded = dataclasses.replace(base(), model=model_of("a", "b", "c"))
    swapped = dataclasses.replace(base(), model=model_of("a", "c", "b"))
    [order] = compare(recorded, swapped)
    assert (order.path, order.recorded, order.current) == ("model.order", ["b", "c"], ["c", "b"])
    assert order.context is False
    assert compare(recorded, recorded) == []
    grown = dataclasses.replace(base(), model=model_of("a", "b", "x", "c"))
    assert paths(recorded, grown) == ["model.params.x"]
    shrunk = dataclasses.replace(base(), model=model_of("a", "c"))
    assert paths(recorded, shrunk) == ["model.params.b"]

    def with_optimizer(fp: Fingerprint, *names: str | None) -> Fingerprint:
        return dataclasses.replace(fp, optimizer=named_optimizer(*names))

    named = compare(with_optimizer(recorded, "a", "b", "c"), with_optimizer(swapped, "a", "c", "b"))
    assert [f.context for f in named if f.path == "model.order"] == [True]
    half = compare(with_optimizer(recorded, "a", "b", "c"), with_optimizer(swapped, "a", None, "b"))
    assert [f.context for f in half if f.path == "model.order"] == [False]
    none = compare(with_optimizer(recorded), with_optimizer(swapped))
    assert [f.context for f in none if f.path == "model.order"] == [False]
