"""What the W&B-protocol test server holds: runs with their config, summary, history and files."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import threading
from datetime import datetime, timezone
from typing import Any


def now() -> str:
    """The server's clock as W&B writes it: ISO-8601 UTC without an offset."""
    return datetime.now(timezone.utc).replace(tzinfo=None).isoformat(timespec="seconds")


def storage_id(kind: str, *parts: str) -> str:
    """An opaque GraphQL node id, shaped like W&B's (base64 of "Kind:v1:...")."""
    return base64.b64encode(":".join((kind, "v1", *parts)).encode()).decode()


@dataclasses.dataclass
class StoredFile:
    """One run file: its bytes and when they were written."""

    data: bytes
    updated_at: str = dataclasses.field(default_factory=now)

    @property
    def md5(self) -> str:
        """Base64 of the MD5 digest, as W&B reports a file's md5."""
        return base64.b64encode(hashlib.md5(self.data).digest()).decode()


@dataclasses.dataclass
class Run:
    """One run as the server stores it (config in W&B's wire form: ``{key: {"value": v}}``)."""

    entity: str
    project: str
    name: str
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    summary: dict[str, Any] = dataclasses.field(default_factory=dict)
    history: list[str] = dataclasses.field(default_factory=list)
    events: list[str] = dataclasses.field(default_factory=list)
    logs: list[str] = dataclasses.field(default_factory=list)
    files: dict[str, StoredFile] = dataclasses.field(default_factory=dict)
    state: str = "running"
    display_name: str = ""
    created_at: str = dataclasses.field(default_factory=now)
    heartbeat_at: str = dataclasses.field(default_factory=now)
    exitcode: int | None = None

    @property
    def path(self) -> str:
        """ENTITY/PROJECT/NAME."""
        return f"{self.entity}/{self.project}/{self.name}"

    @property
    def id(self) -> str:
        """The run's storage id (what ``run.update()`` sends back)."""
        return storage_id("Run", self.name, self.project, self.entity)

    @property
    def user_config(self) -> dict[str, Any]:
        """The config as the user sees it: values unwrapped, W&B's own keys dropped."""
        return {
            k: v.get("value") if isinstance(v, dict) else v
            for k, v in self.config.items()
            if k not in ("_wandb", "wandb_version")
        }

    def history_rows(self) -> list[dict[str, Any]]:
        """The logged history rows, parsed."""
        return [json.loads(line) for line in self.history]

    @property
    def last_step(self) -> int:
        """The last logged ``_step``, -1 without history."""
        steps = [row.get("_step", -1) for row in self.history_rows()]
        return max(steps, default=-1)


class Store:
    """All runs, under one lock (the server answers requests on many threads)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.runs: dict[str, Run] = {}
        self.projects: set[tuple[str, str]] = set()

    def run(self, entity: str, project: str, name: str) -> Run | None:
        """The run, or None."""
        return self.runs.get(f"{entity}/{project}/{name}")

    def by_id(self, run_id: str) -> Run | None:
        """The run with storage id ``run_id``, or None."""
        return next((r for r in self.runs.values() if r.id == run_id), None)

    def upsert(self, entity: str, project: str, name: str) -> tuple[Run, bool]:
        """The run, created when missing; True when it was created."""
        run = self.run(entity, project, name)
        if run is not None:
            return run, False
        run = Run(entity=entity, project=project, name=name)
        self.runs[run.path] = run
        self.projects.add((entity, project))
        return run, True

    def get(self, path: str) -> Run:
        """The run at ENTITY/PROJECT/NAME (KeyError when missing): for tests to inspect."""
        with self.lock:
            return self.runs[path]
