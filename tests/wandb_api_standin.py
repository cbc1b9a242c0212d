"""A STAND-IN for wandb's public API (``wandb.Api``, ``Run``, ``File``), in memory, for tests.

It is not wandb and talks to no server. It mirrors what wandb 0.31's sources
(``wandb/apis/public/{api,runs,files}.py``, ``wandb/apis/normalize.py``) do, as far as
resumeguard's online store uses them:

- ``Api(timeout=...)``: ``settings`` with ``base_url``/``entity``/``project`` (entity and project
  from ``WANDB_ENTITY``/``WANDB_PROJECT``), ``default_entity``, ``run(path)`` caching runs by path
  until ``flush()``. A failing construction raises ``AuthenticationError`` chained to a
  ``WandbApiFailedError``, as ``wandb_login._verify_login`` does.
- Every failure is raised the way ``normalize_exceptions`` raises it: a ``CommError`` whose
  ``.exc`` (and ``__cause__``) is a ``WandbApiFailedError`` carrying ``response.http_status``
  (no response for a timeout). A missing run is ``CommError("Could not find run ...")`` wrapping
  ``RunNotFoundError``.
- ``Run``: ``config`` (unwrapped, ``_wandb`` dropped), ``summary``/``summary_metrics``, ``state``,
  ``heartbeatAt``, ``lastHistoryStep`` (-1 without history), ``url``, ``files()``,
  ``file(name)`` (a placeholder with md5 "0" for a name the run lacks, like the server's),
  ``update()`` (re-sends the whole config as JSON), ``upload_file(path, root)``.
- ``File.download(root, replace)`` writes ``root/name`` and returns an open handle; downloading
  the placeholder fails with HTTP 404.

Failures are injected per operation with :meth:`StandinServer.fail`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from collections import defaultdict, deque
from http import HTTPStatus
from pathlib import Path
from typing import Any

from wandb.apis.public.runs import RunNotFoundError
from wandb.errors import AuthenticationError, CommError
from wandb.proto.wandb_api_pb2 import ApiErrorResponse  # type: ignore[attr-defined]
from wandb.sdk.lib.service.service_connection import WandbApiFailedError

TIMEOUT = "timeout"
"""A failure with no HTTP answer: wandb-core did not respond within the Api's timeout."""

OPS = ("api", "default_entity", "run", "file", "download", "history", "update", "upload")


@dataclasses.dataclass
class RunData:
    """What the stand-in server holds for one run."""

    entity: str
    project: str
    id: str
    config: dict[str, Any]
    summary: dict[str, Any]
    state: str = "finished"
    heartbeat_at: str | None = "2024-05-01T12:00:00"
    last_history_step: int = -1
    files: dict[str, bytes] = dataclasses.field(default_factory=dict)

    @property
    def path(self) -> str:
        return f"{self.entity}/{self.project}/{self.id}"


class StandinServer:
    """The in-memory "server" behind any number of stand-in ``Api`` objects."""

    def __init__(
        self, base_url: str = "https://api.standin.invalid", default_entity: str | None = "me"
    ) -> None:
        self.base_url = base_url
        self.default_entity = default_entity
        self.runs: dict[str, RunData] = {}
        self.calls: list[str] = []
        """Each operation as it is attempted, e.g. "run me/p/abc"."""
        self.api_timeouts: list[Any] = []
        """The ``timeout`` each Api was created with."""
        self._failures: dict[str, deque[int | str]] = defaultdict(deque)

    def add_run(
        self,
        run_id: str,
        *,
        entity: str = "me",
        project: str = "p",
        config: dict[str, Any] | None = None,
        summary: dict[str, Any] | None = None,
        files: dict[str, bytes] | None = None,
        **kwargs: Any,
    ) -> RunData:
        """Store a run (config in the user's form) and return its data for inspection."""
        data = RunData(
            entity=entity,
            project=project,
            id=run_id,
            config=copy.deepcopy(config or {}),
            summary=copy.deepcopy(summary or {}),
            files=dict(files or {}),
            **kwargs,
        )
        self.runs[data.path] = data
        return data

    def fail(self, op: str, *failures: int | str) -> None:
        """Make the next calls of ``op`` fail, one per item: an HTTP status or :data:`TIMEOUT`."""
        assert op in OPS, op
        self._failures[op].extend(failures)

    def count(self, prefix: str) -> int:
        """How many calls started with ``prefix``."""
        return sum(1 for call in self.calls if call.startswith(prefix))

    def api(self, timeout: Any = None) -> Api:
        """The ``api_factory``: a new stand-in ``Api``, like ``wandb.Api(timeout=...)``."""
        self.api_timeouts.append(timeout)
        self._enter("api")
        return Api(self, timeout)

    def _enter(self, op: str, detail: str = "") -> None:
        self.calls.append(f"{op} {detail}".strip())
        if self._failures[op]:
            failure = self._failures[op].popleft()
            if op == "api":
                _raise_auth(failure, self.base_url)
            _raise_comm(failure)


def _failed(failure: int | str) -> WandbApiFailedError:
    if failure == TIMEOUT:
        return WandbApiFailedError(
            "Failed to execute API request:"
            " the service process is busy and did not respond in time."
        )
    status = int(failure)
    message = f"HTTP {status}: {HTTPStatus(status).phrase}"  # wandb-core's "HTTP %d: %s"
    return WandbApiFailedError(message, ApiErrorResponse(message=message, http_status=status))


def _raise_comm(failure: int | str) -> None:
    err = _failed(failure)
    message = (err.response.message if err.response is not None else "") or str(err)
    raise CommError(message, err) from err  # as normalize_exceptions does


def _raise_auth(failure: int | str, base_url: str) -> None:
    err = _failed(failure)
    raise AuthenticationError(f"Failed to verify credentials with {base_url}: {err}") from err


class Api:
    """Stand-in for ``wandb.Api``."""

    def __init__(self, server: StandinServer, timeout: Any) -> None:
        self._server = server
        self.timeout = timeout
        self.settings: dict[str, Any] = {
            "base_url": server.base_url,
            "entity": os.environ.get("WANDB_ENTITY"),
            "project": os.environ.get("WANDB_PROJECT"),
        }
        self._runs: dict[str, Run] = {}

    @property
    def default_entity(self) -> str | None:
        """The account's entity (a viewer query in wandb)."""
        self._server._enter("default_entity")
        return self._server.default_entity

    def flush(self) -> None:
        """Forget cached runs, as ``wandb.Api.flush``."""
        self._runs = {}

    def run(self, path: str = "") -> Run:
        """The run at "entity/project/id" ("project/id" and "id" use settings and defaults)."""
        parts = path.strip("/").split("/")
        entity: str | None
        project: str | None
        if len(parts) == 3:
            entity, project, run_id = parts
        elif len(parts) == 2:
            entity, (project, run_id) = self.settings["entity"] or self.default_entity, parts
        else:
            entity = self.settings["entity"] or self.default_entity
            project, run_id = self.settings["project"], parts[0]
        full = f"{entity}/{project}/{run_id}"
        if path not in self._runs:
            self._server._enter("run", full)
            data = self._server.runs.get(full)
            if data is None:
                try:
                    raise RunNotFoundError(f"Could not find run <Run {full} (not found)>")
                except RunNotFoundError as err:
                    # normalize_exceptions' generic branch: no "from", so only __context__.
                    raise CommError(str(err), err)  # noqa: B904
            self._runs[path] = Run(self._server, data)
        return self._runs[path]


class Run:
    """Stand-in for ``wandb.apis.public.Run`` loaded with ``lazy=False``."""

    def __init__(self, server: StandinServer, data: RunData) -> None:
        self._server = server
        self._data = data
        self.entity = data.entity
        self.project = data.project
        self.id = data.id
        self.state = data.state
        self.heartbeatAt = data.heartbeat_at
        # Copies: like the real object, this is a snapshot until update() sends it back.
        self.config: dict[str, Any] = copy.deepcopy(data.config)
        self.summary_metrics: dict[str, Any] = copy.deepcopy(data.summary)
        self.summary = self.summary_metrics
        self.url = f"https://standin.invalid/{data.entity}/{data.project}/runs/{data.id}"

    @property
    def path(self) -> list[str]:
        return [self.entity, self.project, self.id]

    @property
    def lastHistoryStep(self) -> int:  # wandb's camelCase name
        self._server._enter("history", self._data.path)
        return self._data.last_history_step

    def files(self, names: list[str] | None = None) -> list[File]:
        """The run's files; with ``names``, one entry per name, placeholders for missing ones."""
        self._server._enter("file", ",".join(names or []))
        if not names:
            return [File(self._server, self._data, n) for n in sorted(self._data.files)]
        return [File(self._server, self._data, n) for n in names]

    def file(self, name: str) -> File:
        """``files([name])[0]``."""
        return self.files([name])[0]

    def update(self) -> None:
        """Send config (all keys, as JSON, like ``Run.json_config``) and summary back."""
        self._server._enter("update", self._data.path)
        self._data.config = json.loads(json.dumps(self.config))
        self._data.summary = json.loads(json.dumps(self.summary_metrics))

    def upload_file(self, path: str, root: str = ".") -> File:
        """Store ``path`` as the run file ``relpath(path, root)``."""
        name = os.path.relpath(path, os.path.abspath(root))
        self._server._enter("upload", name)
        self._data.files[Path(name).as_posix()] = Path(path).read_bytes()
        return File(self._server, self._data, Path(name).as_posix())


class File:
    """Stand-in for ``wandb.apis.public.File``."""

    def __init__(self, server: StandinServer, data: RunData, name: str) -> None:
        self._server = server
        self._data = data
        self.name = name
        content = data.files.get(name)
        # The server answers a name it lacks with a placeholder: size 0, md5 "0", no update time.
        self.md5 = "0" if content is None else f"md5-of-{len(content)}"
        self.size = 0 if content is None else len(content)
        self.updated_at = None if content is None else "2024-05-01T12:00:00"
        self.url = f"https://standin.invalid/files/{data.path}/{name}"

    def download(self, root: str = ".", replace: bool = False, exist_ok: bool = False) -> Any:
        """Write ``root/name`` and return it opened, as ``File.download``."""
        self._server._enter("download", self.name)
        path = Path(root) / self.name
        if path.exists() and not replace:
            if exist_ok:
                return open(path)
            raise ValueError("File already exists, pass replace=True to overwrite")
        content = self._data.files.get(self.name)
        if content is None:
            _raise_comm(404)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content or b"")
        return open(path)
