"""collect_code and CodeHistory against real git repositories in temporary directories."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import git as gitpython
import pytest
from helpers import git

from resumeguard.collect import code
from resumeguard.collect.code import (
    DELETED,
    CodeHistory,
    CodeRecord,
    collect_code,
    is_own_file,
    open_history,
    strip_credentials,
)
from resumeguard.collect.record import Unavailable


@pytest.fixture(autouse=True)
def pinned_git_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Author and config pinned, so the host's git config and identity never matter."""
    home = tmp_path / "home"
    home.mkdir()
    for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "WANDB_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    for role in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{role}_NAME", "Test")
        monkeypatch.setenv(f"GIT_{role}_EMAIL", "test@example.com")
        monkeypatch.setenv(f"GIT_{role}_DATE", "2024-01-01T00:00:00Z")
    yield


def write(root: Path, files: dict[str, str | bytes]) -> None:
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content)


def commit_all(root: Path, message: str = "commit") -> str:
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", message)
    return git(root, "rev-parse", "HEAD")


def make_repo(path: Path, files: dict[str, str | bytes] | None = None) -> Path:
    """A repository on branch main with ``files`` committed (nothing committed if None)."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    if files is not None:
        write(path, files)
        commit_all(path, "initial")
    return path


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(
        tmp_path / "repo",
        {"train.py": "print('train')\n", "src/model.py": "W = 1\n", "README.md": "hi\n"},
    )


def collect(path: Path, **kwargs: int) -> CodeRecord:
    record = collect_code(path, **kwargs)
    assert isinstance(record, CodeRecord), record
    return record


def hash_object(root: Path, rel: str) -> str:
    return git(root, "hash-object", "--", rel)


def test_clean_repo(repo: Path) -> None:
    record = collect(repo)
    assert record.commit == git(repo, "rev-parse", "HEAD")
    assert record.branch == "main"
    assert not record.detached
    assert record.root == repo.resolve().as_posix()
    assert (record.changed, record.untracked, record.skipped, record.diff_digest) == (
        {},
        {},
        {},
        "",
    )
    assert record.remote is None and not record.shallow and record.submodules == {}


def test_collect_from_a_subdirectory_finds_the_root(repo: Path) -> None:
    assert collect(repo / "src").root == repo.resolve().as_posix()


def test_new_commit_changes_commit_and_changed_between_lists_only_that_file(repo: Path) -> None:
    first = collect(repo).commit
    write(repo, {"src/model.py": "W = 2\n"})
    second = commit_all(repo)
    record = collect(repo)
    assert record.commit == second != first
    assert record.changed == {}
    assert first is not None
    with CodeHistory(repo) as history:
        assert history.changed_between(first, second) == {"src/model.py"}
        assert history.changed_between(second, first) == {"src/model.py"}
        assert history.changed_between(first, first) == set()


def test_changed_between_rename_is_delete_plus_add(repo: Path) -> None:
    first = git(repo, "rev-parse", "HEAD")
    git(repo, "mv", "src/model.py", "src/net.py")
    second = commit_all(repo)
    with CodeHistory(repo) as history:
        assert history.changed_between(first, second) == {"src/model.py", "src/net.py"}


def test_dirty_edit_recorded_with_its_blob(repo: Path) -> None:
    write(repo, {"train.py": "print('changed')\n"})
    record = collect(repo)
    assert record.changed == {"train.py": hash_object(repo, "train.py")}
    assert record.diff_digest.startswith("blake3:")
    # A different edit gives a different digest; the same edit the same one.
    assert collect(repo).diff_digest == record.diff_digest
    write(repo, {"train.py": "print('changed again')\n"})
    assert collect(repo).diff_digest != record.diff_digest


def test_staged_only_change(repo: Path) -> None:
    write(repo, {"src/model.py": "W = 3\n"})
    git(repo, "add", "src/model.py")
    record = collect(repo)
    assert record.changed == {"src/model.py": hash_object(repo, "src/model.py")}
    # Staged and then reverted in the working tree: still differs from HEAD in the index only,
    # the working tree equals HEAD, so what would run is the committed code.
    write(repo, {"src/model.py": "W = 1\n"})
    assert collect(repo).changed == {}


def test_deletion_staged_or_not(repo: Path) -> None:
    (repo / "README.md").unlink()
    assert collect(repo).changed == {"README.md": DELETED}
    git(repo, "rm", "-q", "--cached", "README.md")
    assert collect(repo).changed == {"README.md": DELETED}


def test_uncommitted_rename_is_delete_plus_add(repo: Path) -> None:
    git(repo, "mv", "src/model.py", "src/net.py")
    record = collect(repo)
    assert record.changed == {
        "src/model.py": DELETED,
        "src/net.py": hash_object(repo, "src/net.py"),
    }


def test_untracked_listed_ignored_not_oversized_skipped(repo: Path) -> None:
    write(
        repo,
        {
            ".gitignore": "*.log\n",
            "src/new_layer.py": "class Layer: ...\n",
            "train.log": "noise\n",
            "data/weights.bin": b"\0" * 2048,
            "tiny.bin": b"\x00\xff\x01",
        },
    )
    record = collect(repo, max_untracked_bytes=1024)
    # Every untracked, not ignored file is code when recorded, whatever its ending or folder.
    assert record.untracked == {
        p: hash_object(repo, p) for p in (".gitignore", "src/new_layer.py", "tiny.bin")
    }
    assert record.skipped == {"data/weights.bin": "larger than 1 KiB"}
    assert set(record.stamps) == {"data/weights.bin"}
    assert record.changed == {} and record.logs == {}
    assert record.diff_digest


def test_default_size_limit_is_one_mib(repo: Path) -> None:
    write(repo, {"big.py": b"x" * ((1 << 20) + 1), "ok.py": b"x" * (1 << 20)})
    record = collect(repo)
    assert record.skipped == {"big.py": "larger than 1 MiB"}
    assert set(record.untracked) == {"ok.py"}


def test_odd_file_names(repo: Path) -> None:
    names = ["sp ace.py", 'quo"te.py', "back\\slash.py", "ünï.py", "-dash.py", "new\nline.py"]
    write(repo, {n: n for n in names})
    record = collect(repo)
    assert record.untracked == {n: hash_object(repo, n) for n in sorted(names)}


def test_symlink_hashed_as_git_stores_it(repo: Path) -> None:
    (repo / "link.py").symlink_to("train.py")
    record = collect(repo)
    git(repo, "add", "link.py")
    staged = git(repo, "ls-files", "-s", "link.py").split()[1]
    assert record.untracked == {"link.py": staged}


def test_wandb_and_resumeguard_files_are_never_code(repo: Path) -> None:
    own = {
        "wandb/offline-run-20240101_000000-abc/files/config.yaml": "a: 1\n",
        "wandb/debug.log": "log\n",
        ".wandb/run-x/files/output.log": "log\n",
        "experiments/e1/wandb/run-20240101_000000-abc/files/x.txt": "x\n",
        "resumeguard.json": "{}\n",
        "ckpt/model.resumeguard.json": "{}\n",
        ".resumeguard/cache.json": "{}\n",
    }
    write(repo, own)
    # A tracked file under wandb/ that W&B rewrites is run output too.
    commit_all(repo)
    write(repo, {"wandb/debug.log": "log 2\n", "wandb/latest-run": "x"})
    # The user's own package named wandb deeper down is code.
    write(repo, {"src/integrations/wandb/callback.py": "pass\n"})
    record = collect(repo)
    assert record.changed == {}
    assert set(record.untracked) == {"src/integrations/wandb/callback.py"}


def test_is_own_file_rule() -> None:
    assert is_own_file("wandb/anything.py")
    assert is_own_file("a/b/.wandb/x")
    assert is_own_file("a/wandb/offline-run-1-x/files/a.py")
    assert is_own_file("a/wandb/latest-run")
    assert is_own_file("a/wandb/debug-internal.log")
    assert is_own_file("x/resumeguard.json")
    assert is_own_file("x/run.resumeguard.json")
    assert is_own_file("x/.resumeguard/state")
    assert is_own_file("out/runs/a.txt", wandb_dir="out/runs")
    assert not is_own_file("out/runs2/a.txt", wandb_dir="out/runs")
    assert not is_own_file("src/wandb/logger.py")
    assert not is_own_file("src/wandb_utils.py")
    assert not is_own_file("resumeguard.json.py")


def test_wandb_dir_inside_repo_excluded(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(repo, {"runs/notes.py": "n", "src/b.py": "b"})
    assert set(collect(repo).untracked) == {"runs/notes.py", "src/b.py"}
    monkeypatch.setenv("WANDB_DIR", str(repo / "runs"))
    assert set(collect(repo).untracked) == {"src/b.py"}
    # WANDB_DIR at the repository root must not hide the code itself.
    monkeypatch.setenv("WANDB_DIR", str(repo))
    assert "src/b.py" in collect(repo).untracked


def test_not_a_git_repository(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    record = collect_code(plain)
    assert isinstance(record, Unavailable)
    assert record.reason.startswith(f"not a git repository: {plain}")
    assert "--repo" in record.reason
    assert isinstance(collect_code(tmp_path / "missing"), Unavailable)
    assert open_history(plain) is None


def test_git_not_installed_import(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail() -> None:
        raise ImportError("Failed to initialize: Bad git executable.")

    monkeypatch.setattr(code, "_load_git", fail)
    record = collect_code(repo)
    assert isinstance(record, Unavailable)
    assert "Is git installed, and are you in a Git repository directory?" in record.reason
    assert open_history(repo) is None


def test_git_not_installed_at_use(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gitpython.Git, "GIT_PYTHON_GIT_EXECUTABLE", "/nonexistent/git")
    record = collect_code(repo)
    assert isinstance(record, Unavailable)
    assert "Is git installed, and are you in a Git repository directory?" in record.reason


def test_git_failure_becomes_advice(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (repo / ".git" / "index").write_bytes(b"not an index")
    record = collect_code(repo)
    assert isinstance(record, Unavailable)
    assert record.reason.startswith("git failed in")
    assert "Is git installed" in record.reason


def test_no_commits_yet(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "fresh")
    assert collect(root) == CodeRecord(
        root=root.resolve().as_posix(), commit=None, branch="main", logs={}
    )
    write(root, {"a.py": "a", "b.py": "b"})
    git(root, "add", "a.py")
    record = collect(root)
    assert record.commit is None and record.branch == "main" and not record.detached
    assert record.changed == {"a.py": hash_object(root, "a.py")}
    assert record.untracked == {"b.py": hash_object(root, "b.py")}
    history = open_history(root)
    assert history is not None and not history.has_commit("0" * 40)


def test_detached_head(repo: Path) -> None:
    first = git(repo, "rev-parse", "HEAD")
    write(repo, {"train.py": "v2"})
    commit_all(repo)
    git(repo, "checkout", "-q", first)
    record = collect(repo)
    assert (record.commit, record.branch, record.detached) == (first, None, True)


def test_shallow_clone(tmp_path: Path, repo: Path) -> None:
    old = git(repo, "rev-parse", "HEAD")
    write(repo, {"train.py": "v2"})
    new = commit_all(repo)
    clone = tmp_path / "shallow"
    git(tmp_path, "clone", "-q", "--depth", "1", repo.resolve().as_uri(), str(clone))
    record = collect(clone)
    assert record.shallow and record.commit == new and record.changed == {}
    assert record.remote == repo.resolve().as_uri()
    history = open_history(clone)
    assert history is not None
    assert history.has_commit(new)
    assert not history.has_commit(old)
    assert not history.has_commit("not-a-sha")
    assert not history.has_commit("--all")
    with pytest.raises(ValueError, match="not in the local repository"):
        history.changed_between(old, new)
    with pytest.raises(ValueError, match="not in the local repository"):
        history.blob(old, "train.py")
    history.close()
    assert not collect(repo).shallow


def test_submodule_recorded_uninitialized_and_dirty(tmp_path: Path, repo: Path) -> None:
    lib = make_repo(tmp_path / "lib", {"lib.py": "x = 1\n"})
    lib_sha = git(lib, "rev-parse", "HEAD")
    git(repo, "submodule", "add", "-q", str(lib), "vendor/lib")
    # Added and staged, not yet committed: visible already.
    staged = collect(repo)
    assert staged.submodules == {"vendor/lib": lib_sha}
    assert staged.changed["vendor/lib"] == lib_sha
    commit_all(repo, "add submodule")
    record = collect(repo)
    assert record.submodules == {"vendor/lib": lib_sha}
    assert record.changed == {}
    with CodeHistory(repo) as history:
        assert history.blob(record.commit or "", "vendor/lib") == lib_sha

    write(repo, {"vendor/lib/lib.py": "x = 2\n"})
    dirty = collect(repo)
    assert dirty.submodules == {"vendor/lib": lib_sha + "-dirty"}
    assert dirty.changed == {"vendor/lib": lib_sha + "-dirty"}
    assert dirty.diff_digest

    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo), str(clone))
    assert collect(clone).submodules == {"vendor/lib": "uninitialized"}


def test_submodule_moved_to_another_commit(tmp_path: Path, repo: Path) -> None:
    lib = make_repo(tmp_path / "lib", {"lib.py": "x = 1\n"})
    git(repo, "submodule", "add", "-q", str(lib), "lib")
    commit_all(repo, "add submodule")
    write(repo, {"lib/lib.py": "x = 3\n"})
    moved = commit_all(repo / "lib")
    record = collect(repo)
    assert record.submodules == {"lib": moved}
    assert record.changed == {"lib": moved}


def test_remote_url_credentials_stripped(repo: Path) -> None:
    git(repo, "remote", "add", "upstream", "https://example.com/up.git")
    assert collect(repo).remote == "https://example.com/up.git"
    git(repo, "remote", "add", "origin", "https://user:ghp_secret@github.com/o/r.git?token=abc")
    assert collect(repo).remote == "https://***@github.com/o/r.git"


def test_strip_credentials() -> None:
    assert strip_credentials("https://tok@host:8443/x.git") == "https://***@host:8443/x.git"
    assert strip_credentials("ssh://git@host/x.git") == "ssh://git@host/x.git"
    assert strip_credentials("git@github.com:o/r.git") == "git@github.com:o/r.git"
    assert strip_credentials("/srv/repos/r.git") == "/srv/repos/r.git"


def test_blob_matches_tree(repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD")
    with CodeHistory(repo) as history:
        assert history.blob(head, "src/model.py") == git(repo, "rev-parse", "HEAD:src/model.py")
        assert history.blob(head, "src/missing.py") is None
        assert history.blob(head, "src") is None  # a tree is not a blob
        assert history.blobs(head, ["train.py", "nope"]) == {
            "train.py": git(repo, "rev-parse", "HEAD:train.py"),
            "nope": None,
        }
    # The recorded blob of a dirty file equals the committed blob once that edit is committed.
    write(repo, {"train.py": "print('v2')\n"})
    recorded = collect(repo).changed["train.py"]
    new = commit_all(repo)
    with CodeHistory(repo) as history:
        assert history.blob(new, "train.py") == recorded


def test_record_round_trips_through_json(repo: Path) -> None:
    write(repo, {"train.py": "edit", "new.py": "new"})
    record = collect(repo)
    assert CodeRecord.from_json(record.to_json()) == record
