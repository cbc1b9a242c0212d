"""The online store: the W&B public API (W&B's service, or a self-hosted server via WANDB_BASE_URL).

How wandb 0.31's public API behaves (read from ``wandb/apis/public``), which this store relies on:

- ``wandb.Api(timeout=T)`` verifies the API key with the server at construction (one request).
  All requests go through the local wandb-core process, which itself retries connection errors,
  429s and 5xxs; ``T`` bounds how long Python waits for wandb-core's answer, and running out raises
  ``WandbApiFailedError("... did not respond in time")`` with no HTTP status. So one try of ours
  takes at most about ``T`` seconds, and a whole call at most ``(retries + 1) * T`` plus backoff.
- ``api.run("entity/project/id")`` loads the full run in one GraphQL query (config unwrapped from
  ``{"value": ...}`` with ``_wandb`` dropped, summary, state, heartbeatAt). It caches runs by path,
  hence ``api.flush()`` first. Errors come out of ``normalize_exceptions`` as ``CommError`` whose
  ``.exc`` is the cause: ``RunNotFoundError("Could not find run ...")`` for a missing run or
  project, ``WandbApiFailedError`` (``.response.http_status``, 0 when no HTTP answer) otherwise.
  Older wandb versions raised ``requests.HTTPError`` there instead; both are understood.
- ``run.file(name)`` answers a missing file with a placeholder whose md5 is "0" (as
  ``wandb.restore`` checks). ``File.download`` is NOT used: wandb-core waits for a transfer
  without a bound (a stalled or failing download hangs), so the store GETs ``File.url`` itself,
  each connect and read bounded by ``T``. ``run.update()`` re-sends the whole config as fetched.

Retries (tenacity): ``retries + 1`` tries, full-jitter exponential backoff, a server's
``Retry-After`` honoured up to ``max_backoff``. Only "no such run" is :class:`RunNotFound`; every
other failure to answer is :class:`StoreError`.
"""

from __future__ import annotations

import contextlib
import enum
import math
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import tenacity

from resumeguard.errors import (
    BadInput,
    CheckpointError,
    ResumeGuardError,
    RunNotFound,
    StoreError,
)
from resumeguard.io import atomic
from resumeguard.stores import layout
from resumeguard.stores.interface import (
    RunRef,
    RunState,
    RunStore,
    StoredRun,
    credentials_configured,
)

T = TypeVar("T")

# wandb's run states reduced to ours: what matters is whether a process may still write.
_STATES: dict[str, RunState] = {
    "running": "running",
    "preempting": "running",
    "finished": "finished",
    "crashed": "crashed",
    "killed": "crashed",
    "preempted": "crashed",
    "failed": "failed",
}


class _Kind(enum.Enum):
    NO_SUCH_RUN = "no such run"  # the API's answer: the run (or its project) is not there
    NOT_FOUND = "not found"  # HTTP 404: a file is gone, or the URL is not W&B's API
    TRANSIENT = "transient"
    AUTH = "auth"
    FATAL = "fatal"


class _NotFound(Exception):
    """Internal: the server said the thing asked for does not exist."""

    def __init__(self, reason: str, kind: _Kind) -> None:
        super().__init__(reason)
        self.kind = kind


RETRIES = 4
"""Retries of one W&B API request after its first try."""
MAX_BACKOFF = 8.0
"""The longest wait before a retry, in seconds."""
CHECK_REQUESTS = 4
"""The most W&B API requests one resume check makes (connect, run, record file, history)."""


def check_bound(timeout: float) -> float:
    """The longest one resume check may wait on the W&B API with request ``timeout``: every
    request tried ``RETRIES + 1`` times, with the longest backoff between tries."""
    return CHECK_REQUESTS * ((RETRIES + 1) * timeout + RETRIES * MAX_BACKOFF)


class OnlineStore(RunStore):
    """Runs read and adopted through ``wandb.Api``, with bounded retries and backoff."""

    def __init__(
        self,
        api_factory: Callable[..., Any] | None = None,
        timeout: float = 10.0,
        retries: int = RETRIES,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        *,
        max_backoff: float = MAX_BACKOFF,
        rng: random.Random | None = None,
    ) -> None:
        """``api_factory(timeout=...)`` makes the Api (default ``wandb.Api``), called lazily.

        A request is tried ``retries + 1`` times at most; retry ``n`` (from 1) waits a random
        time in ``[0, min(max_backoff, backoff * 2 ** (n - 1))]`` ("full jitter").
        """
        self._api_factory = api_factory or _wandb_api
        self._timeout = timeout
        self._retries = max(0, retries)
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._api: Any = None
        self._read: dict[str, Any] = {}  # path -> the Run object of the last fetch

    @property
    def name(self) -> str:
        """Always "online"."""
        return "online"

    def fetch(self, ref: RunRef) -> StoredRun:
        """One ``api.run`` for config, summary and state, plus the ``resumeguard.json`` download."""
        run, path = self._run(ref)
        return StoredRun(
            ref=RunRef(id=str(run.id), project=str(run.project), entity=str(run.entity)),
            config=dict(run.config),
            record=self._record(run, path),
            last_step=self._last_step(run),
            state=_STATES.get(str(run.state).lower(), "unknown"),
            heartbeat=_iso(getattr(run, "heartbeatAt", None)),
            location=str(getattr(run, "url", None) or path),
        )

    def fetch_file(self, ref: RunRef, name: str, dest: Path) -> Path:
        """Download run file ``name`` to ``dest / name`` (through a temp file: never half there)."""
        rel = layout.check_run_file_name(name)
        run, path = self._run(ref, fresh=False)
        missing = f"{name} not found in run {path}"
        try:
            handle = self._call(
                f"looking up {name}", lambda: _lookup_file(run, rel.as_posix()), missing_ok=True
            )
        except _NotFound as e:
            raise CheckpointError(missing) from e.__cause__
        if handle is None:
            raise CheckpointError(missing)
        target = Path(dest) / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=".resumeguard-") as tmp:
            part = Path(tmp) / rel.name
            try:
                self._call(f"downloading {name}", lambda: self._get(handle, part), missing_ok=True)
            except _NotFound as e:
                raise CheckpointError(missing) from e.__cause__
            os.replace(part, target)
        return target

    def write_record(self, ref: RunRef, record: dict[str, Any], compact: dict[str, Any]) -> None:
        """Upload ``resumeguard.json``, then set ``config["resumeguard"]`` in place.

        File first: the config key is what marks a run as recorded, so a failure in between
        leaves a run that still reads as unrecorded rather than one whose digest points nowhere.
        ``run.update()`` re-sends the other keys exactly as just fetched.
        """
        run, path = self._run(ref)
        with tempfile.TemporaryDirectory(prefix="resumeguard-") as tmp:
            file = Path(tmp) / layout.RECORD_FILE
            atomic.write_json(file, record)
            self._call(
                f"uploading {layout.RECORD_FILE} to {path}",
                lambda: run.upload_file(str(file), root=tmp),
            )

        def update() -> None:
            run.config[layout.CONFIG_KEY] = compact
            run.update()

        self._call(f"updating the config of {path}", update)

    # -- internals ------------------------------------------------------------------------

    def _get(self, handle: Any, target: Path) -> None:
        """GET run file ``handle``'s URL into ``target``, each connect and read bounded.

        Not ``File.download``: wandb-core waits for a download without a bound, so a stalled or
        failing transfer would hang the caller. The key goes only to the W&B server itself,
        never to another host (a signed storage URL needs none).
        """
        import requests

        url = str(handle.url)
        key = getattr(self._api, "api_key", None)
        auth = ("api", str(key)) if key and _same_origin(url, self._base_url()) else None
        timeout = (self._timeout, self._timeout)
        with requests.get(url, stream=True, timeout=timeout, auth=auth) as response:
            response.raise_for_status()
            with open(target, "wb") as f:
                for chunk in response.iter_content(1 << 20):
                    f.write(chunk)
        expected, got = getattr(handle, "size", None), target.stat().st_size
        if isinstance(expected, int) and expected > 0 and got != expected:
            raise ConnectionError(f"the download ended after {got} of {expected} bytes")

    def _get_api(self) -> Any:
        if self._api is None:
            self._api = self._call("connecting", lambda: self._api_factory(timeout=self._timeout))
        return self._api

    def _path(self, api: Any, ref: RunRef) -> str:
        settings = getattr(api, "settings", None)
        settings = settings if isinstance(settings, Mapping) else {}
        project = ref.project or os.environ.get("WANDB_PROJECT") or settings.get("project")
        if not project:
            raise BadInput(
                f"no W&B project known for run {ref.id}: pass ENTITY/PROJECT/ID or --project "
                "(or set WANDB_PROJECT)"
            )
        entity = ref.entity or os.environ.get("WANDB_ENTITY") or settings.get("entity")
        if not entity:
            entity = self._call("looking up the default entity", lambda: api.default_entity)
        if not entity:
            raise BadInput(f"no W&B entity known for run {ref.id}: pass --entity")
        return f"{entity}/{project}/{ref.id}"

    def _run(self, ref: RunRef, *, fresh: bool = True) -> tuple[Any, str]:
        """The run read now; with ``fresh=False`` the one the last fetch read, if any (its
        file list is asked anew either way): a check downloads each checkpoint with one read."""
        api = self._get_api()
        path = self._path(api, ref)
        if not fresh and path in self._read:
            return self._read[path], path

        def load() -> Any:
            flush = getattr(api, "flush", None)
            if callable(flush):
                flush()  # api.run caches runs by path; a store must read the present
            return api.run(path)

        try:
            self._read[path] = self._call(f"reading run {path}", load, missing_ok=True)
            return self._read[path], path
        except _NotFound as e:
            if e.kind is not _Kind.NO_SUCH_RUN:  # an HTTP 404 for the API itself: not an answer
                raise StoreError(
                    f"W&B at {self._base_url()} failed reading run {path}: {e} "
                    "(is WANDB_BASE_URL the W&B server? or use --offline)"
                ) from e.__cause__
            raise RunNotFound(
                f"no W&B run {path} at {self._base_url()} "
                "(check the run id, --project and --entity)"
            ) from e.__cause__

    def _record(self, run: Any, path: str) -> dict[str, Any] | None:
        with tempfile.TemporaryDirectory(prefix="resumeguard-") as tmp:
            try:
                handle = self._call(
                    f"looking up {layout.RECORD_FILE}",
                    lambda: _lookup_file(run, layout.RECORD_FILE),
                    missing_ok=True,
                )
                if handle is None:
                    return None
                self._call(
                    f"downloading {layout.RECORD_FILE}",
                    lambda: self._get(handle, Path(tmp) / layout.RECORD_FILE),
                    missing_ok=True,
                )
            except _NotFound:
                return None
            label = f"{layout.RECORD_FILE} of run {path}"
            record = layout.read_json_object(Path(tmp) / layout.RECORD_FILE, label=label)
        if record is None:
            raise BadInput(
                f"{layout.RECORD_FILE} of run {path} is not a JSON object; "
                "re-record the run with `resumeguard record`"
            )
        return record

    def _last_step(self, run: Any) -> int | None:
        """The run's last history step, as W&B holds it (the summary's ``_step`` can lag a
        rewind or be overwritten); the summary's only when the history cannot say."""
        step = _step(self._call("reading the last step", lambda: run.lastHistoryStep))
        if step is None:
            summary = getattr(run, "summary_metrics", None)
            if not isinstance(summary, Mapping):
                summary = getattr(run, "summary", None) or {}
            step = _step(summary.get("_step"))
        return step

    def _call(self, what: str, fn: Callable[[], T], *, missing_ok: bool = False) -> T:
        """``fn()`` with retries on transient failures; library errors become StoreError.

        With ``missing_ok``, "does not exist" answers raise ``_NotFound`` for the caller to map.
        """
        tries = self._retries + 1
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(tries),
            wait=self._wait,
            retry=tenacity.retry_if_exception(lambda e: _classify(e)[0] is _Kind.TRANSIENT),
            sleep=self._sleep,
            reraise=True,
        )
        try:
            return retrying(fn)
        except ResumeGuardError:
            raise
        except Exception as e:
            kind, reason = _classify(e)
            if "did not respond in time" in reason:  # wandb-core's words for our timeout
                reason = f"no answer within {self._timeout:g} s"
            if kind in (_Kind.NO_SUCH_RUN, _Kind.NOT_FOUND) and missing_ok:
                raise _NotFound(reason, kind) from e
            if kind is _Kind.FATAL and not _from_library(e):
                raise  # a bug (ours, or an API change), not W&B's answer: exit 4, not 3
            base = self._base_url()
            if kind is _Kind.TRANSIENT:
                raise StoreError(
                    f"could not reach W&B at {base} after {tries} tries ({what}): {reason} "
                    "(check WANDB_BASE_URL / network, or use --offline)"
                ) from e
            if kind is _Kind.AUTH:
                raise StoreError(
                    f"W&B at {base} did not accept the credentials: {reason} "
                    "(run `wandb login --relogin`, or use --offline)"
                ) from e
            raise StoreError(f"W&B at {base} failed {what}: {reason} (or use --offline)") from e

    def _wait(self, state: tenacity.RetryCallState) -> float:
        """Full jitter, or the server's ``Retry-After`` (at most ``max_backoff``)."""
        error = state.outcome.exception() if state.outcome else None
        asked = _retry_after(error) if error is not None else None
        if asked is not None:
            return min(self._max_backoff, asked)
        return self._delay(state.attempt_number)

    def _delay(self, retry: int) -> float:
        return self._rng.uniform(0.0, min(self._max_backoff, self._backoff * 2 ** (retry - 1)))

    def _base_url(self) -> str:
        settings = getattr(self._api, "settings", None)
        if isinstance(settings, Mapping) and settings.get("base_url"):
            return str(settings["base_url"])
        if os.environ.get("WANDB_BASE_URL"):
            return os.environ["WANDB_BASE_URL"]
        with contextlib.suppress(Exception):
            from wandb.sdk import wandb_setup

            return str(wandb_setup.singleton().settings.base_url)
        return "the W&B server"


def _wandb_api(timeout: float) -> Any:
    """The real ``wandb.Api``; refuses up front when it would prompt for a key."""
    if not credentials_configured():
        raise StoreError(
            "no W&B API key configured: run `wandb login` or set WANDB_API_KEY, or use --offline"
        )
    import wandb

    return wandb.Api(timeout=max(1, math.ceil(timeout)))  # annotated int; seconds either way


def _lookup_file(run: Any, name: str) -> Any:
    """The run's File ``name``, or None when the run has no such file."""
    try:
        handle = run.file(name)
    except Exception as e:
        # An empty answer surfaces as IndexError from ``Files(...)[0]``, wrapped in CommError.
        if any(isinstance(x, IndexError) for x in _chain(e)):
            return None
        raise
    if handle is None or str(getattr(handle, "md5", "")) == "0":
        return None  # W&B's placeholder for a name it does not have
    return handle


def _same_origin(url: str, base_url: str) -> bool:
    a, b = urlsplit(url), urlsplit(base_url)
    return (a.scheme, a.netloc) == (b.scheme, b.netloc)


def _retry_after(error: BaseException) -> float | None:
    """Seconds from a ``Retry-After`` header the failed answer carried (seconds form only)."""
    for exc in _chain(error):
        headers = getattr(getattr(exc, "response", None), "headers", None)
        value = headers.get("Retry-After") if isinstance(headers, Mapping) else None
        if value is None:
            continue
        try:
            return max(0.0, float(value))
        except ValueError:
            return None
    return None


def _step(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        return None
    return int(value)


def _iso(value: object) -> str | None:
    parsed = layout.parse_time(value)
    return parsed.isoformat() if parsed else None


def _chain(error: BaseException) -> Iterator[BaseException]:
    """``error``, then what it wraps: ``CommError.exc``, ``__cause__``, ``__context__``."""
    seen: set[int] = set()
    todo: list[BaseException] = [error]
    while todo:
        exc = todo.pop(0)
        if id(exc) in seen:
            continue
        seen.add(id(exc))
        yield exc
        for nxt in (getattr(exc, "exc", None), exc.__cause__, exc.__context__):
            if isinstance(nxt, BaseException):
                todo.append(nxt)


def _status(exc: BaseException) -> int | None:
    """The HTTP status of an exception: wandb-core's ``http_status``, requests' ``status_code``."""
    response = getattr(exc, "response", None)
    if response is None:  # not truthiness: a requests.Response for 4xx/5xx is falsy
        return None
    for attr in ("http_status", "status_code"):
        value = getattr(response, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _classify(error: BaseException) -> tuple[_Kind, str]:
    """What kind of failure ``error`` is, and a one-line reason."""
    chain = list(_chain(error))
    reason = _one_line(error)
    answered = all(_status(exc) is None for exc in chain)
    for exc in chain:
        if type(exc).__name__ == "RunNotFoundError" or (
            answered and "Could not find run" in str(exc)
        ):
            return _Kind.NO_SUCH_RUN, reason
    for exc in chain:
        status = _status(exc)
        if status is None:
            continue
        text = reason if reason.startswith(f"HTTP {status}") else f"HTTP {status}: {reason}"
        if status == 404:
            return _Kind.NOT_FOUND, text
        if status in (408, 429) or status >= 500 or status < 400:  # < 400: a cut-off answer
            return _Kind.TRANSIENT, text
        if status in (401, 403):
            return _Kind.AUTH, text
        return _Kind.FATAL, text
    names = {type(exc).__name__ for exc in chain}
    # No HTTP status: wandb-core got no answer in time, or the connection failed.
    if names & {"WandbApiFailedError", "ConnectionError", "Timeout", "ConnectTimeout"}:
        return _Kind.TRANSIENT, reason
    if any(isinstance(exc, (TimeoutError, ConnectionError)) for exc in chain):
        return _Kind.TRANSIENT, reason
    if any(type(exc).__module__.partition(".")[0] in ("requests", "urllib3") for exc in chain):
        return _Kind.TRANSIENT, reason  # the connection failed, was reset or stalled
    if names & {"AuthenticationError", "UsageError"}:
        return _Kind.AUTH, reason
    return _Kind.FATAL, reason


def _from_library(error: BaseException) -> bool:
    """True when ``error`` came out of wandb or its HTTP stack (or the OS), not our own code."""
    return any(
        isinstance(exc, OSError) or type(exc).__module__.partition(".")[0] in _LIBRARIES
        for exc in _chain(error)
    )


_LIBRARIES = frozenset({"wandb", "requests", "urllib3"})


def _one_line(error: BaseException, limit: int = 200) -> str:
    text = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    text = text or type(error).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
