"""The HTTP side: GraphQL, file_stream, uploads and downloads, with faults injected per operation.

Operations (what :meth:`WandbServer.fail` and the request log name): every GraphQL operation by its
name ("Viewer", "Run", "RunFiles", "UpsertBucket", ...), ``file_stream``, ``upload`` (a PUT of a run
file) and ``download`` (a GET of one). Faults for ``download:NAME`` / ``upload:NAME`` hit only
that run file, and take precedence over those for all downloads / uploads.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import socket
import struct
import sys
import threading
from collections import defaultdict, deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from wandb_server.graphql import HANDLERS, Context, GraphQLError, operation_name
from wandb_server.state import Run, Store, StoredFile, now

API_KEY = "a" * 40
"""The key the server accepts; any other answers 401."""

ENTITY = "tester"
"""The account's entity (the default entity of ``wandb.Api``)."""


@dataclasses.dataclass(frozen=True)
class Fault:
    """One faulty answer to one request of an operation."""

    status: int | None = None
    """Answer with this HTTP status (and a JSON error body)."""
    retry_after: float | None = None
    """With ``status``: the ``Retry-After`` header, in seconds."""
    hang: bool = False
    """Never answer: hold the connection until the client gives up (or the server stops)."""
    reset: bool = False
    """Drop the connection: a download sends half its body first, anything else nothing."""
    malformed: bool = False
    """Answer 200 with a body that is not JSON."""


@dataclasses.dataclass(frozen=True)
class Request:
    """One request the server saw."""

    operation: str
    method: str
    path: str
    status: int
    bytes_in: int
    bytes_out: int


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # a client that hung up is no error
            super().handle_error(request, client_address)


class WandbServer:
    """A stateful W&B-protocol server on 127.0.0.1, for the real wandb client."""

    def __init__(self, features: list[str] | None = None) -> None:
        self.store = Store()
        self.requests: list[Request] = []
        self._faults: dict[str, deque[Fault]] = defaultdict(deque)
        self._always: dict[str, Fault] = {}
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._http = _HTTPServer(("127.0.0.1", 0), _Handler)
        self._http.wandb = self  # type: ignore[attr-defined]
        self.base_url = f"http://127.0.0.1:{self._http.server_address[1]}"
        self.context = Context(self.store, self.base_url, ENTITY, features or [])
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    def start(self) -> WandbServer:
        """Serve on a thread; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release every hung request."""
        self._stopping.set()
        self._http.shutdown()
        self._http.server_close()

    # -- faults and what happened ------------------------------------------------------

    def fail(self, operation: str, *faults: Fault) -> None:
        """Answer the next requests of ``operation`` with ``faults``, one each, in order."""
        with self._lock:
            self._faults[operation].extend(faults)

    def fail_always(self, operation: str, fault: Fault) -> None:
        """Answer every request of ``operation`` with ``fault`` until :meth:`heal`."""
        with self._lock:
            self._always[operation] = fault

    def heal(self) -> None:
        """Forget every pending fault and clear the request log."""
        with self._lock:
            self._faults.clear()
            self._always.clear()
            self.requests.clear()

    def count(self, operation: str) -> int:
        """How many requests of ``operation`` were seen (faulty ones included)."""
        with self._lock:
            return sum(r.operation == operation for r in self.requests)

    def operations(self) -> list[str]:
        """The operations seen, in order."""
        with self._lock:
            return [r.operation for r in self.requests]

    def _next_fault(self, *operations: str) -> Fault | None:
        with self._lock:
            for operation in operations:
                queue = self._faults.get(operation)
                if queue:
                    return queue.popleft()
            return next((self._always[o] for o in operations if o in self._always), None)

    def client_env(self, folder: Path) -> dict[str, str]:
        """The environment that points the real wandb client here, with its folders in
        ``folder``: online mode, the accepted key, no entity or project preset."""
        env = {
            "WANDB_BASE_URL": self.base_url,
            "WANDB_API_KEY": API_KEY,
            "WANDB_MODE": "online",
            "WANDB_SILENT": "true",
        }
        for name in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR"):
            (folder / name.lower()).mkdir(parents=True, exist_ok=True)
            env[name] = str(folder / name.lower())
        return env

    def _log(self, request: Request) -> None:
        """Log ``request`` on arrival, before any answer: a client that has its answer finds
        its request counted (:meth:`_answered` adds the answer)."""
        with self._lock:
            self.requests.append(request)

    def _answered(self, request: Request, status: int, bytes_out: int) -> None:
        """Set the status and size of the answer to ``request``, if not cleared since."""
        with self._lock:
            for i in range(len(self.requests) - 1, -1, -1):
                if self.requests[i] is request:
                    self.requests[i] = dataclasses.replace(
                        request, status=status, bytes_out=bytes_out
                    )
                    return

    # -- the store, as tests shape it ----------------------------------------------------

    def add_run(
        self,
        path: str,
        *,
        config: dict[str, Any] | None = None,
        summary: dict[str, Any] | None = None,
        steps: int = 0,
        state: str = "finished",
        files: dict[str, bytes] | None = None,
    ) -> Run:
        """Store run ENTITY/PROJECT/ID as a client would have left it: ``config`` (user values),
        ``summary``, ``steps`` history rows (``_step`` 0..steps-1), ``state`` and ``files``."""
        entity, project, name = path.split("/")
        with self.store.lock:
            run, _ = self.store.upsert(entity, project, name)
            run.config = {k: {"value": v, "desc": None} for k, v in (config or {}).items()}
            run.config["_wandb"] = {"value": {"t": {}}}
            run.summary = dict(summary or {})
            run.history = [json.dumps({"_step": i}) for i in range(steps)]
            run.state = state
            run.files = {n: StoredFile(d) for n, d in (files or {}).items()}
        return run

    def put_file(self, path: str, name: str, data: bytes) -> None:
        """Replace run file ``name`` of run ENTITY/PROJECT/ID ``path`` (a change on the server)."""
        with self.store.lock:
            self.store.get(path).files[name] = StoredFile(data)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ThreadingHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the request log is in WandbServer.requests

    @property
    def wandb(self) -> WandbServer:
        return self.server.wandb  # type: ignore[attr-defined,no-any-return]

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _authorized(self) -> bool:
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Basic "):
            return False
        try:
            user_key = base64.b64decode(auth[6:]).decode()
        except ValueError:
            return False
        return user_key.partition(":")[2] == API_KEY

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> int:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {"Content-Type": "application/json"}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)
        return status

    def _json(self, status: int, payload: Any) -> int:
        return self._send(status, json.dumps(payload).encode())

    def _reset(self) -> None:
        """Close the socket with RST, not FIN: the client sees "connection reset by peer"."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True

    def _fault(self, fault: Fault, payload: bytes | None = None) -> int:
        if fault.hang:
            self.wandb._stopping.wait(120)
            self._reset()
            return 0
        if fault.reset:
            if payload:  # half the body, then gone
                self.send_response(200)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload[: len(payload) // 2])
                self.wfile.flush()
            self._reset()
            return 0
        if fault.malformed:
            return self._send(200, b'{"data": {"project": ', {"Content-Type": "application/json"})
        status = fault.status or 500
        headers = {"Content-Type": "application/json"}
        if fault.retry_after is not None:
            headers["Retry-After"] = f"{fault.retry_after:g}"
        body = json.dumps({"errors": [{"message": f"injected HTTP {status}"}]}).encode()
        return self._send(status, body, headers)

    def _serve(
        self,
        operation: str,
        answer: Callable[[], tuple[int, bytes, dict[str, str] | None]],
        body: bytes = b"",
        auth: bool = True,
        detail: str = "",
    ) -> None:
        """Answer ``operation`` (faults first, then the key, then ``answer()``) and log it.

        Uploads and downloads go to the URLs the server handed out, which carry no key (as
        W&B's signed storage URLs).
        """
        keys = (f"{operation}:{detail}", operation) if detail else (operation,)
        fault = self.wandb._next_fault(*keys)
        seen = Request(operation, self.command, self.path, 0, len(body), 0)
        self.wandb._log(seen)
        if fault is not None:
            payload = self._stored() if fault.reset and operation == "download" else None
            self.wandb._answered(seen, fault.status or (200 if fault.malformed else 0), 0)
            self._fault(fault, payload)
        elif auth and not self._authorized():
            self.wandb._answered(seen, 401, 0)
            self._json(401, {"errors": [{"message": "user is not logged in"}]})
        else:
            status, data, headers = answer()
            self.wandb._answered(seen, status, len(data))
            self._send(status, data, headers)

    # -- routes ----------------------------------------------------------------------------

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        body = self._body()
        if path == "/graphql":
            try:
                request = json.loads(body or b"{}")
            except ValueError:
                request = {}
            operation = operation_name(request.get("query", ""))
            self._serve(operation, lambda: self._graphql(operation, request), body)
        elif path.endswith("/file_stream"):
            parts = path.strip("/").split("/")  # files/ENTITY/PROJECT/RUN/file_stream
            self._serve("file_stream", lambda: self._file_stream(parts[1:4], body), body)
        else:  # e.g. /sdk/otel/v1/metrics: nothing to store
            self._serve("other", lambda: (404, b"{}", None), body)

    def do_PUT(self) -> None:
        body = self._body()
        self._serve(
            "upload", lambda: self._storage_put(body), body, auth=False, detail=self._file_name()
        )

    def do_GET(self) -> None:
        self._serve("download", self._storage_get, auth=False, detail=self._file_name())

    def _file_name(self) -> str:
        try:
            return self._file_target()[1]
        except KeyError:
            return ""

    def _graphql(self, operation: str, request: dict[str, Any]) -> tuple[int, bytes, None]:
        handler = HANDLERS.get(operation)
        if handler is None:
            payload: dict[str, Any] = {"errors": [{"message": f"unknown operation {operation}"}]}
        else:
            try:
                with self.wandb.store.lock:
                    payload = {"data": handler(self.wandb.context, request.get("variables") or {})}
            except GraphQLError as e:
                payload = {"errors": [{"message": str(e)}], "data": None}
        return 200, json.dumps(payload).encode(), None

    def _file_stream(self, where: list[str], body: bytes) -> tuple[int, bytes, None]:
        request = json.loads(body or b"{}")
        with self.wandb.store.lock:
            run, _ = self.wandb.store.upsert(*where)
            for name, chunk in (request.get("files") or {}).items():
                offset, lines = int(chunk.get("offset", 0)), list(chunk.get("content", []))
                if name == "wandb-history.jsonl":
                    run.history[offset:] = lines
                elif name == "wandb-events.jsonl":
                    run.events[offset:] = lines
                elif name == "output.log":
                    run.logs[offset:] = lines
                elif name == "wandb-summary.json" and lines:
                    run.summary = json.loads(lines[-1])
            run.heartbeat_at = now()
            if request.get("complete"):
                run.exitcode = int(request.get("exitcode") or 0)
                run.state = "finished" if run.exitcode == 0 else "failed"
            else:
                run.state = "running"
        return 200, json.dumps({"exitcode": None, "limits": {}}).encode(), None

    def _file_target(self) -> tuple[str, str]:
        path = unquote(urlsplit(self.path).path)
        parts = path.strip("/").split("/", 4)  # storage/ENTITY/PROJECT/RUN/NAME
        if len(parts) != 5 or parts[0] != "storage":
            raise KeyError(path)
        return "/".join(parts[1:4]), parts[4]

    def _storage_put(self, body: bytes) -> tuple[int, bytes, None]:
        try:
            run_path, name = self._file_target()
            with self.wandb.store.lock:
                self.wandb.store.get(run_path).files[name] = StoredFile(body)
        except KeyError:
            return 404, b"{}", None
        return 200, b"", None

    def _stored(self) -> bytes | None:
        """The bytes of the run file the request's path names, None when there is none."""
        try:
            run_path, name = self._file_target()
            with self.wandb.store.lock:
                return self.wandb.store.get(run_path).files[name].data
        except KeyError:
            return None

    def _storage_get(self) -> tuple[int, bytes, dict[str, str] | None]:
        data = self._stored()
        if data is None:
            return 404, b"not found", None
        return 200, data, {"Content-Type": "application/octet-stream"}
