"""Fingerprint the code: git commit, branch, remote, working-tree changes and untracked files.

GitPython is imported lazily: it runs ``git --version`` at import, which costs time and fails
where git is missing; both must not affect commands that never look at the code.
"""

from __future__ import annotations

import configparser
import contextlib
import dataclasses
import hashlib
import os
import re
import shutil
import stat
import tempfile
import urllib.parse
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from resumeguard.collect.filekinds import is_log
from resumeguard.collect.record import Record, Unavailable
from resumeguard.collect.skipped import stamps
from resumeguard.collect.sourcechange import PY_SUFFIXES
from resumeguard.errors import Unverifiable
from resumeguard.io import hashing
from resumeguard.redact import redact_url

if TYPE_CHECKING:
    from git import Commit, Repo

DELETED = "deleted"
"""Blob value recorded for a tracked file that was deleted in the working tree."""
UNINITIALIZED = "uninitialized"
"""Submodule value when the submodule is registered but not checked out."""
DIRTY_SUFFIX = "-dirty"
"""Appended to a submodule's commit when its working tree has changes of its own."""

GIT_ADVICE = "Is git installed, and are you in a Git repository directory?"
_GITLINK_MODE = 0o160000
_HEX = re.compile(r"[0-9a-fA-F]{4,64}")
# Entries W&B itself writes into its ``wandb`` directory (see wandb_settings.Settings.sync_dir).
_WANDB_ENTRY = re.compile(r"(offline-)?run-.*|latest-run|debug.*\.log|settings|sweep-.*")
# Plumbing only; keep git from taking optional locks (a user's concurrent `git commit` must not
# fail on index.lock) or fetching missing objects from a partial clone's remote (no network).
_GIT_ENV = {"GIT_OPTIONAL_LOCKS": "0", "GIT_NO_LAZY_FETCH": "1", "GIT_TERMINAL_PROMPT": "0"}


@dataclasses.dataclass(frozen=True)
class LogHead(Record):
    """What a recorded log's first bytes were, to tell a log that only grew from an edit."""

    kind = "log head"

    size: int
    """The log's size when recorded."""
    digest: str
    """Digest of its first ``min(size, HEAD_BYTES)`` bytes."""


HEAD_BYTES = 64 << 20
"""A log's head is digested up to this many bytes (a longer log is judged by its start)."""


@dataclasses.dataclass(frozen=True)
class CodeRecord(Record):
    """The state of the user's git working tree."""

    kind = "code"

    root: str
    """Absolute path of the repository's working tree (context only: moving a repo is not drift)."""
    commit: str | None
    """HEAD's hexsha, or None when the repository has no commits yet."""
    branch: str | None
    """The checked-out branch, or None when HEAD is detached (or unborn without a name)."""
    detached: bool = False
    """True when HEAD is detached."""
    remote: str | None = None
    """URL of ``origin`` (else the first remote), credentials redacted; None when there is none."""
    shallow: bool = False
    """True in a shallow clone: older commits may be missing locally."""
    diff_digest: str = ""
    """Digest over every changed and untracked file below (path and blob); "" when clean."""
    changed: dict[str, str] = dataclasses.field(default_factory=dict)
    """Tracked files that differ from HEAD (staged or not): path -> git blob sha, or "deleted".

    A changed submodule maps to its checked-out commit, with "-dirty" when it has local edits."""
    untracked: dict[str, str] = dataclasses.field(default_factory=dict)
    """Untracked, not ignored source and configuration files: path -> git blob sha."""
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)
    """Untracked files left out, path -> why (run output such as a log, "larger than 1 MiB")."""
    stamps: dict[str, str] = dataclasses.field(default_factory=dict)
    """The skipped files that are not run output (too large, unreadable, nested repositories):
    path -> a cheap stamp that changes when they do (see :mod:`resumeguard.collect.skipped`)."""
    submodules: dict[str, str] = dataclasses.field(default_factory=dict)
    """Submodule path -> the commit checked out in it (or "uninitialized"), "-dirty" if edited."""
    logs: dict[str, LogHead] | None = None
    """The untracked logs (see :data:`~resumeguard.collect.filekinds.LOG_SUFFIXES`) and their
    heads, so that one that only grew by appending is told from a rewrite. None in a record
    from before every untracked file counted as code (schema 1-2): its untracked files were
    sorted into code and run output by their names, and are judged so."""


def is_own_file(path: str, wandb_dir: str | None = None) -> bool:
    """True for files W&B or resumeguard write, which are run output and never code changes.

    ``path`` is relative to the repository root with forward slashes; ``wandb_dir`` is WANDB_DIR
    relative to the root, when it lies strictly inside the repository.
    """
    parts = path.rstrip("/").split("/")
    name = parts[-1]
    if name == "resumeguard.json" or name.endswith(".resumeguard.json"):
        return True
    if ".wandb" in parts or ".resumeguard" in parts or parts[0] == "wandb":
        return True
    # A deeper `wandb` directory may be the user's own package (src/integrations/wandb/), so only
    # the entries W&B creates in it count as run output (wandb.init(dir=...) puts them anywhere).
    for i, part in enumerate(parts[:-1]):
        if part == "wandb" and _WANDB_ENTRY.fullmatch(parts[i + 1]):
            return True
    return wandb_dir is not None and (path + "/").startswith(wandb_dir + "/")


def strip_credentials(url: str) -> str:
    """``url`` with its user info redacted and without query or fragment, where tokens hide;
    scp-style URLs unchanged."""
    if "://" not in url:
        # `git@host:org/repo.git` names an account, not a secret; a local path has nothing to strip.
        return url
    parts = urllib.parse.urlsplit(url)
    return redact_url(urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")))


def collect_code(
    path: str | Path = ".", *, max_untracked_bytes: int = 1 << 20
) -> CodeRecord | Unavailable:
    """Fingerprint the git repository containing ``path``; Unavailable (with advice) outside one.

    Untracked files above ``max_untracked_bytes`` are listed in ``skipped``, not hashed.
    """
    try:
        git = _load_git()
    except ImportError as e:
        return Unavailable(f"git cannot be used ({_first_line(e)}). {GIT_ADVICE}")
    try:
        repo = _open_repo(git, path)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return Unavailable(
            f"not a git repository: {path} (run inside your project's repo, or pass --repo)"
        )
    if repo is None:
        return Unavailable(f"bare git repository without a working tree: {path} (pass --repo)")
    try:
        return _collect(repo, max_untracked_bytes)
    except git.GitCommandNotFound as e:
        return Unavailable(f"git cannot be run ({_first_line(e)}). {GIT_ADVICE}")
    except git.GitCommandError as e:
        # E.g. "detected dubious ownership": git's own message is the actionable part.
        detail = _first_line(e.stderr.strip().removeprefix("stderr: ").strip("'") or e)
        return Unavailable(f"git failed in {repo.working_tree_dir}: {detail}. {GIT_ADVICE}")
    finally:
        repo.close()


def open_history(path: str | Path = ".") -> CodeHistory | None:
    """The history of the repository containing ``path``; None outside one or without git."""
    try:
        return CodeHistory(path)
    except ValueError:
        return None


class CodeHistory:
    """Read access to a local repository's commits, for file-level comparison."""

    def __init__(self, root: str | Path) -> None:
        """Open the repository containing ``root``; ValueError when there is none or no git."""
        try:
            git = _load_git()
        except ImportError as e:
            raise ValueError(f"git cannot be used ({_first_line(e)}). {GIT_ADVICE}") from e
        try:
            repo = _open_repo(git, root)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError) as e:
            raise ValueError(f"not a git repository: {root}") from e
        if repo is None:
            raise ValueError(f"bare git repository without a working tree: {root}")
        self._git = git
        self._repo: Repo = repo
        self.root = Path(str(repo.working_tree_dir))

    def has_commit(self, sha: str) -> bool:
        """True when ``sha`` is a commit present in the local object store (False in a shallow
        clone that lacks it, and for anything that is not a hex sha)."""
        if not _HEX.fullmatch(sha):
            return False
        try:
            self._repo.git.cat_file("-e", f"{sha}^{{commit}}")
        except self._git.GitCommandError:
            return False
        return True

    def changed_between(self, a: str, b: str) -> set[str]:
        """Paths added, removed or modified between commits ``a`` and ``b``; ValueError if either
        is missing locally."""
        self._commit(a), self._commit(b)  # ValueError when either is missing
        return {entry.path for entry in raw_diff(self._repo, a, b)}

    def blob(self, commit: str, path: str) -> str | None:
        """The blob sha of ``path`` at ``commit`` (a submodule's commit for a gitlink), or None
        when absent there; ValueError if ``commit`` is missing locally."""
        return self.blobs(commit, [path])[path]

    def blobs(self, commit: str, paths: Iterable[str]) -> dict[str, str | None]:
        """:meth:`blob` for many paths at once, sharing one tree walk."""
        tree = self._commit(commit).tree
        found: dict[str, str | None] = {}
        for path in paths:
            try:
                item = tree / path.strip("/")
            except KeyError:
                found[path] = None
                continue
            found[path] = item.hexsha if item.type in ("blob", "submodule") else None
        return found

    def content(self, sha: str) -> bytes | None:
        """The bytes of blob ``sha`` from the object database; None when it is not there."""
        if not _HEX.fullmatch(sha):
            return None
        try:
            data: bytes = self._repo.odb.stream(bytes.fromhex(sha)).read()
        except (ValueError, OSError, self._git.GitCommandError, self._git.BadObject):
            return None
        return data

    def close(self) -> None:
        """Stop the git helper processes GitPython keeps for object reads."""
        self._repo.close()

    def __enter__(self) -> CodeHistory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _commit(self, sha: str) -> Commit:
        if not self.has_commit(sha):
            raise ValueError(f"commit {sha} is not in the local repository (shallow clone?)")
        return self._repo.commit(sha)


@dataclasses.dataclass(frozen=True)
class DiffEntry:
    """One path of ``git diff --raw``."""

    path: str
    """The path, relative to the repository root."""
    status: str
    """git's status letter: A, D, M, T, U, X."""
    modes: tuple[int, int]
    """The file modes before and after (0 when absent)."""


def raw_diff(repo: Repo, *commits: str) -> list[DiffEntry]:
    """``git diff --raw -z`` between ``commits`` (one: against the working tree), renames as a
    delete and an add. Parsed here from NUL-separated output, so a file name may hold any
    character, newlines included."""
    out: bytes = repo.git.diff(
        *commits, "--raw", "-z", "--no-renames", "--no-color", stdout_as_string=False
    )
    fields = out.split(b"\0")
    entries: list[DiffEntry] = []
    for header, path in zip(fields[0::2], fields[1::2], strict=False):
        meta = header.decode("ascii", "replace").lstrip(":").split()
        if len(meta) < 5 or not path:
            continue
        modes = (int(meta[0], 8), int(meta[1], 8))
        entries.append(DiffEntry(os.fsdecode(path), meta[4][:1], modes))
    return entries


def _load_git() -> ModuleType:
    """Import GitPython; ImportError (GitPython's own, when git is missing) propagates."""
    import git

    return git


def _open_repo(git: ModuleType, path: str | Path) -> Repo | None:
    """The repository containing ``path``, or None for a bare one; git's errors propagate."""
    repo: Repo = git.Repo(path, search_parent_directories=True)
    if repo.bare or repo.working_tree_dir is None:
        repo.close()
        return None
    repo.git.update_environment(**_GIT_ENV)
    return repo


def _collect(repo: Repo, max_untracked_bytes: int) -> CodeRecord:
    root = Path(str(repo.working_tree_dir))
    wandb_dir = _wandb_dir_in(root)
    has_commit = repo.head.is_valid()
    detached = repo.head.is_detached
    changes: dict[str, str] = {}  # path -> DELETED, or "" until hashed below
    gitlinks: set[str] = set()
    untracked_listing = _start_untracked(repo)
    missing_filters = _missing_filters(repo)
    if has_commit:
        # One `git diff HEAD`: staged and unstaged changes together; renames as delete + add.
        try:
            diff = raw_diff(repo, repo.head.commit.hexsha)
        except _load_git().GitCommandError as e:
            if missing_filters:  # a required filter (git lfs) that cannot run fails the diff
                raise _filter_error(root, missing_filters) from e
            raise
        for d in diff:
            p = d.path
            if not p or is_own_file(p, wandb_dir):
                continue
            changes[p] = DELETED if d.status == "D" else ""
            if _GITLINK_MODE in d.modes and d.status != "D":
                gitlinks.add(p)
    else:
        # No commit to compare with: everything staged is new.
        for (entry_path, _stage), entry in repo.index.entries.items():
            p = Path(entry_path).as_posix()
            if not is_own_file(p, wandb_dir):
                changes[p] = ""
                if entry.mode == _GITLINK_MODE:
                    gitlinks.add(p)

    submodules = _submodules(repo, root, has_commit, gitlinks)
    for p in gitlinks:
        changes[p] = submodules.get(p, UNINITIALIZED)

    skipped: dict[str, str] = {}
    left_out: list[str] = []
    untracked_paths = []
    for p in untracked_listing():
        if is_own_file(p, wandb_dir):
            continue
        if p.endswith("/"):
            # git lists a nested repository (not a submodule) as its directory only.
            skipped[p.rstrip("/")] = "nested git repository (not a submodule)"
            left_out.append(p.rstrip("/"))
            continue
        # Every untracked file is code, whatever its folder or ending: which of them the run
        # writes is only known from what appears after it was recorded (see codechange).
        note = _skip_reason(root / p, max_untracked_bytes)
        if note:
            skipped[p] = note
            left_out.append(p)  # code all the same: stamped below
        else:
            untracked_paths.append(p)

    to_hash = [p for p, v in changes.items() if not v]
    if missing_filters:
        _check_filters(repo, root, [*to_hash, *untracked_paths], missing_filters)
    blobs = _hash_objects(repo, root, [*to_hash, *untracked_paths])
    changed = {p: v or blobs.get(p, DELETED) for p, v in sorted(changes.items())}
    untracked = {p: blobs[p] for p in sorted(untracked_paths) if p in blobs}
    digest = ""
    if changed or untracked:
        digest = hashing.digest_json({"changed": changed, "untracked": untracked})
    return CodeRecord(
        root=root.as_posix(),
        commit=repo.head.commit.hexsha if has_commit else None,
        branch=None if detached else _branch_name(repo),
        detached=detached,
        remote=_remote_url(repo),
        shallow=Path(repo.common_dir, "shallow").exists(),
        diff_digest=digest,
        changed=changed,
        untracked=untracked,
        skipped=dict(sorted(skipped.items())),
        stamps=stamps(root, left_out),
        submodules=submodules,
        logs=log_heads(root, [*untracked_paths, *left_out]),
    )


def log_heads(root: Path, paths: Iterable[str]) -> dict[str, LogHead]:
    """The head of each log among ``paths`` (below ``root``) that can be read."""
    heads = {}
    for p in sorted(paths):
        if is_log(p):
            head = read_head(root / p, None)
            if head is not None:
                heads[p] = head
    return heads


def read_head(path: Path, size: int | None) -> LogHead | None:
    """The head of the file at ``path``: its first ``size`` bytes (None: all of it), digested
    up to :data:`HEAD_BYTES`; None when it cannot be read or is shorter than ``size``."""
    try:
        with open(path, "rb") as f:
            total = os.fstat(f.fileno()).st_size
            want = total if size is None else size
            if total < want:
                return None
            data = f.read(min(want, HEAD_BYTES))
    except OSError:
        return None
    if len(data) != min(want, HEAD_BYTES):
        return None
    return LogHead(size=want, digest=hashing.digest_bytes(data))


def _wandb_dir_in(root: Path) -> str | None:
    """WANDB_DIR relative to ``root`` when strictly inside it. Equal to the root it would hide
    every file; W&B then writes to root/wandb, which :func:`is_own_file` covers anyway."""
    value = os.environ.get("WANDB_DIR")
    if not value:
        return None
    try:
        rel = Path(value).resolve().relative_to(root.resolve())
    except ValueError:
        return None
    return rel.as_posix() if rel.parts else None


def _start_untracked(repo: Repo) -> Callable[[], list[str]]:
    """Start listing untracked, not ignored files; call the result to collect them.

    `ls-files -z` rather than `repo.untracked_files` (a full `git status`): the tracked changes
    come from the diff already, and NUL-separated names need no unquoting. It runs while the
    diff runs, which hides most of its cost.
    """
    proc = repo.git.ls_files("-z", "--others", "--exclude-standard", as_process=True)

    def result() -> list[str]:
        out: bytes = proc.stdout.read()
        proc.wait()  # raises GitCommandError with git's stderr on failure
        return [os.fsdecode(p) for p in out.split(b"\0") if p]

    return result


def _skip_reason(path: Path, limit: int) -> str | None:
    """Why an untracked file is left out of the fingerprint, or None to hash it."""
    try:
        st = path.lstat()
    except OSError:
        return "vanished while reading"
    if stat.S_ISLNK(st.st_mode):
        return None
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_size > limit:
        return f"larger than {_size(limit)}"
    if not os.access(path, os.R_OK):
        # One unreadable stray file must not make the whole code fingerprint unavailable.
        return "not readable"
    return None


def _missing_filters(repo: Repo) -> dict[str, str]:
    """Configured git filters (``filter.<name>.clean``/``.process``, e.g. Git LFS) whose program
    is not installed: filter name -> program."""
    try:
        out: str = repo.git.config("-z", "--get-regexp", r"^filter\..*\.(clean|process)$")
    except _load_git().GitCommandError:
        return {}  # exit status 1: no filter configured
    missing: dict[str, str] = {}
    for item in out.split("\0"):
        key, _, command = item.partition("\n")
        words = command.split()
        if not key or not words:
            continue
        program = words[0]
        if program == "git" and len(words) > 1:
            program = f"git-{words[1]}"  # `git lfs clean`: git runs git-lfs
        if shutil.which(program) is None and not _in_git_exec_path(repo, program):
            missing[key.removeprefix("filter.").rsplit(".", 1)[0]] = program
    return missing


def _in_git_exec_path(repo: Repo, program: str) -> bool:
    try:
        return (Path(repo.git.execute(["git", "--exec-path"])) / program).is_file()
    except (_load_git().GitCommandError, OSError):
        return False


def _check_filters(repo: Repo, root: Path, paths: list[str], missing: dict[str, str]) -> None:
    """Unverifiable when a file to hash goes through a filter whose program is missing: git
    would store something else than what can be computed here (an LFS pointer)."""
    if not paths:
        return
    with tempfile.TemporaryFile() as stdin:
        stdin.write(b"".join(os.fsencode(p) + b"\0" for p in paths))
        stdin.seek(0)
        out: bytes = repo.git.check_attr(
            "-z", "--stdin", "filter", istream=stdin, stdout_as_string=False
        )
    fields = out.split(b"\0")
    for path, value in zip(fields[0::3], fields[2::3], strict=False):
        if value.decode(errors="replace") in missing:
            raise _filter_error(root, missing, os.fsdecode(path))


def _filter_error(root: Path, missing: dict[str, str], path: str | None = None) -> Unverifiable:
    name, program = next(iter(missing.items()))
    where = f" for {path}" if path else ""
    return Unverifiable(
        f"git filter {name!r} is configured{where} in {root} but its program {program!r} is not "
        "installed, so the code cannot be fingerprinted as git stores it; install it "
        "(for Git LFS: `git lfs install`) and check again"
    )


def _hash_objects(repo: Repo, root: Path, paths: list[str]) -> dict[str, str]:
    """Git blob shas of working-tree files, as git would store them (clean filters applied).

    One `git hash-object --stdin-paths` for all regular files; symlinks hashed here as git stores
    them (the link text), and paths that no longer exist left out.
    """
    blobs: dict[str, str] = {}
    files: list[str] = []
    for p in paths:
        full = root / p
        try:
            if full.is_symlink():
                blobs[p] = _blob_sha(repo, os.fsencode(os.readlink(full)))
            elif full.is_file():
                files.append(p)
        except OSError:
            continue
    if not files:
        return blobs
    try:
        shas = _hash_files(repo, files)
    except _load_git().GitCommandError:
        # A file deleted since it was listed fails the whole batch: retry once without it.
        files = [p for p in files if (root / p).is_file()]
        shas = _hash_files(repo, files)
    blobs.update(zip(files, shas, strict=True))
    _store_python(repo, [p for p in files if p.endswith(PY_SUFFIXES)])
    return blobs


def _store_python(repo: Repo, files: list[str]) -> None:
    """Keep the content of changed Python files in git's object database (loose objects, as
    ``git stash`` does), so a later check can tell a comment-only edit from a code change.
    Best effort: a read-only repository just keeps such edits blocking."""
    if files:
        with contextlib.suppress(_load_git().GitCommandError, OSError):
            _hash_files(repo, files, write=True)


def _hash_files(repo: Repo, files: list[str], *, write: bool = False) -> list[str]:
    """`git hash-object` over ``files`` in one call; paths go on stdin, so no ARG_MAX limit."""
    with tempfile.TemporaryFile() as stdin:
        stdin.write(os.fsencode("".join(_quote(p) + "\n" for p in files)))
        stdin.seek(0)
        args = ("-w", "--stdin-paths") if write else ("--stdin-paths",)
        out: str = repo.git.hash_object(*args, istream=stdin)
    shas = out.split()
    if len(shas) != len(files):
        raise _load_git().GitCommandError(["git", "hash-object"], 1, "unexpected output")
    return shas


def _blob_sha(repo: Repo, data: bytes) -> str:
    """The blob id git gives ``data``, in the repository's object format (sha1 or sha256)."""
    algo = str(repo.config_reader().get_value("extensions", "objectformat", "sha1"))
    h = hashlib.new(algo)
    h.update(b"blob %d\0" % len(data))
    h.update(data)
    return h.hexdigest()


def _quote(path: str) -> str:
    """C-quote a path for ``--stdin-paths`` when it holds a newline, quote or backslash."""
    if not any(c in path for c in '\n"\\') and not path.startswith('"'):
        return path
    body = path.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{body}"'


def _submodules(repo: Repo, root: Path, has_commit: bool, changed: set[str]) -> dict[str, str]:
    """Submodule path -> checked-out commit, "-dirty" added when the parent's diff lists it and
    the submodule's own tree has edits; gitlinks in ``changed`` are included even if new."""
    paths = set(changed)
    if has_commit:
        # A malformed .gitmodules is no reason to fail: the gitlinks in the diff still count.
        with contextlib.suppress(ValueError, KeyError, OSError, configparser.Error):
            paths.update(str(sm.path) for sm in repo.submodules)
    git = _load_git()
    states: dict[str, str] = {}
    for p in sorted(paths):
        try:
            sub = git.Repo(root / p)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError):
            states[p] = UNINITIALIZED
            continue
        sub.git.update_environment(**_GIT_ENV)
        try:
            if not sub.head.is_valid():
                states[p] = UNINITIALIZED
                continue
            state = sub.head.commit.hexsha
            # Only a submodule the parent already sees as changed pays for its own `git status`.
            if p in changed and sub.is_dirty(untracked_files=True):
                state += DIRTY_SUFFIX
            states[p] = state
        finally:
            sub.close()
    return states


def _branch_name(repo: Repo) -> str | None:
    """The branch HEAD points at, born or not."""
    try:
        return str(repo.head.reference.name)
    except (TypeError, ValueError):
        return None


def _remote_url(repo: Repo) -> str | None:
    """URL of origin, else of the first remote that has one, credentials stripped."""
    remotes = sorted(repo.remotes, key=lambda r: r.name != "origin")
    for remote in remotes:
        try:
            url = remote.url
        except (AttributeError, configparser.Error):
            continue  # a remote section without a url: try the next one
        if url:
            return strip_credentials(str(url))
    return None


def _size(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n} bytes"


def _first_line(value: object) -> str:
    lines = str(value).strip().splitlines()
    return lines[0].strip() if lines else type(value).__name__
