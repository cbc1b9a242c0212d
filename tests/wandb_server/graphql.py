"""The GraphQL operations wandb 0.31 sends (wandb-core for ``wandb.init``, ``wandb.Api`` for reads).

Each answer carries the fields the client's query selects, with the types W&B's schema gives them:
``config``, ``summaryMetrics``, ``systemMetrics``, ``historyTail`` and ``wandbConfig`` are JSON
*strings*; ``historyKeys`` is a JSON object. Operations are recognised by the name in the query
text, since wandb-core sends public-API queries with an empty ``operationName``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from wandb_server.state import Run, Store, now, storage_id

_OPERATION = re.compile(r"\b(?:query|mutation)\s+(\w+)")

Handler = Callable[["Context", dict[str, Any]], dict[str, Any]]


class Context:
    """What a handler may use: the store, the server's URL and the account."""

    def __init__(self, store: Store, base_url: str, entity: str, features: list[str]) -> None:
        self.store = store
        self.base_url = base_url
        self.entity = entity
        self.features = features

    def file_url(self, run: Run, name: str) -> str:
        """Where a run file is uploaded (PUT) and downloaded (GET)."""
        return f"{self.base_url}/storage/{run.entity}/{run.project}/{run.name}/{name}"


def operation_name(query: str) -> str:
    """The operation's name as written in the query ("Viewer", "UpsertBucket", ...)."""
    match = _OPERATION.search(query)
    return match.group(1) if match else ""


def _viewer(ctx: Context, _: dict[str, Any]) -> dict[str, Any]:
    return {
        "viewer": {
            "id": storage_id("User", ctx.entity),
            "entity": ctx.entity,
            "username": ctx.entity,
            "email": f"{ctx.entity}@example.com",
            "name": ctx.entity,
            "admin": False,
            "flags": "{}",
            "teams": {"edges": []},
        }
    }


def _project(run: Run) -> dict[str, Any]:
    return {
        "id": storage_id("Project", run.project, run.entity),
        "name": run.project,
        "entity": {"id": storage_id("Entity", run.entity), "name": run.entity},
    }


def run_fields(run: Run) -> dict[str, Any]:
    """A run as ``RunFragment`` and the bucket selections read it."""
    return {
        "id": run.id,
        "name": run.name,
        "displayName": run.display_name or run.name,
        "description": "",
        "notes": "",
        "tags": [],
        "group": None,
        "jobType": None,
        "commit": None,
        "sweepName": None,
        "readOnly": False,
        "state": run.state,
        "config": json.dumps(run.config),
        "summaryMetrics": json.dumps(run.summary),
        "systemMetrics": "{}",
        "createdAt": run.created_at,
        "heartbeatAt": run.heartbeat_at,
        "historyLineCount": len(run.history),
        "eventsLineCount": len(run.events),
        "logLineCount": len(run.logs),
        "historyKeys": {"lastStep": run.last_step, "keys": {}},
        "user": {"name": run.entity, "username": run.entity},
        "projectId": 1,
        "project": _project(run),
    }


def _upsert_bucket(ctx: Context, v: dict[str, Any]) -> dict[str, Any]:
    store = ctx.store
    if v.get("id"):  # the public API's run.update(): by storage id
        run = store.by_id(v["id"])
        if run is None:
            raise GraphQLError(f"run {v['id']} not found")
        inserted = False
    else:
        entity = v.get("entity") or ctx.entity
        run, inserted = store.upsert(entity, v.get("project") or "uncategorized", v["name"])
    if v.get("config") is not None:
        run.config = json.loads(v["config"])
    if v.get("summaryMetrics") is not None:
        run.summary = json.loads(v["summaryMetrics"])
    if v.get("displayName"):
        run.display_name = v["displayName"]
    if v.get("state"):
        run.state = v["state"]
    return {"upsertBucket": {"bucket": run_fields(run), "inserted": inserted}}


def _resume_status(ctx: Context, v: dict[str, Any]) -> dict[str, Any]:
    entity = v.get("entity") or ctx.entity
    project = v.get("project") or "uncategorized"
    if (entity, project) not in ctx.store.projects:
        return {"model": None}
    run = ctx.store.run(entity, project, v["name"])
    bucket = None
    if run is not None:
        wandb_value = run.config.get("_wandb", {})
        wandb_value = wandb_value.get("value", {}) if isinstance(wandb_value, dict) else {}
        t = {"t": wandb_value["t"]} if isinstance(wandb_value, dict) and "t" in wandb_value else {}
        bucket = {
            **run_fields(run),
            "historyTail": json.dumps(run.history[-10:]),
            "eventsTail": json.dumps(run.events[-10:]),
            "wandbConfig": json.dumps(t),
        }
    return {
        "model": {
            "id": storage_id("Project", project, entity),
            "name": project,
            "entity": {"id": storage_id("Entity", entity), "name": entity},
            "bucket": bucket,
        }
    }


def _project_run(ctx: Context, v: dict[str, Any]) -> tuple[bool, Run | None]:
    entity = v.get("entity") or ctx.entity
    project = v.get("project") or "uncategorized"
    return (entity, project) in ctx.store.projects, ctx.store.run(entity, project, v["name"])


def _run(ctx: Context, v: dict[str, Any]) -> dict[str, Any]:
    exists, run = _project_run(ctx, v)
    if not exists:
        return {"project": None}
    return {"project": {"internalId": 1, "run": run_fields(run) if run else None}}


def _file_node(ctx: Context, run: Run, name: str) -> dict[str, Any]:
    stored = run.files.get(name)
    url = ctx.file_url(run, name)
    return {
        "id": storage_id("File", run.name, name),
        "name": name,
        "url": url,
        "directUrl": url,
        "sizeBytes": len(stored.data) if stored else 0,
        "mimetype": "application/octet-stream",
        "updatedAt": stored.updated_at if stored else now(),
        # W&B answers a name the run lacks with a placeholder whose md5 is "0".
        "md5": stored.md5 if stored else "0",
    }


def _run_files(ctx: Context, v: dict[str, Any]) -> dict[str, Any]:
    exists, run = _project_run(ctx, v)
    if not exists:
        return {"project": None}
    if run is None:
        return {"project": {"internalId": 1, "run": None}}
    names = v.get("fileNames") or sorted(run.files)
    pattern = v.get("pattern")
    if pattern:  # MySQL LIKE: % any run, _ one character
        like = re.compile(
            "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
        )
        names = [n for n in names if like.fullmatch(n)]
    start = int(v.get("fileCursor") or 0)
    limit = int(v.get("fileLimit") or 50)
    page = names[start : start + limit]
    edges = [
        {"node": _file_node(ctx, run, name), "cursor": str(start + i + 1)}
        for i, name in enumerate(page)
    ]
    return {
        "project": {
            "internalId": 1,
            "run": {
                "fileCount": len(run.files),
                "files": {
                    "edges": edges,
                    "pageInfo": {
                        "endCursor": str(start + len(page)),
                        "hasNextPage": start + len(page) < len(names),
                    },
                },
            },
        }
    }


def _history_keys(ctx: Context, v: dict[str, Any]) -> dict[str, Any]:
    exists, run = _project_run(ctx, v)
    if not exists:
        return {"project": None}
    keys = {"lastStep": run.last_step, "keys": {}} if run else None
    return {"project": {"run": {"historyKeys": keys} if run else None}}


def _full_history(ctx: Context, v: dict[str, Any]) -> dict[str, Any]:
    exists, run = _project_run(ctx, v)
    if not exists:
        return {"project": None}
    return {"project": {"run": {"history": list(run.history)} if run else None}}


def _create_run_files(ctx: Context, v: dict[str, Any]) -> dict[str, Any]:
    run = ctx.store.run(v["entity"], v["project"], v["run"])
    if run is None:
        return {"createRunFiles": {"runID": "", "uploadHeaders": [], "files": []}}
    files = [{"name": n, "uploadUrl": ctx.file_url(run, n)} for n in v["files"]]
    return {"createRunFiles": {"runID": run.id, "uploadHeaders": [], "files": files}}


def _mark_uploaded(_: Context, __: dict[str, Any]) -> dict[str, Any]:
    return {"markRunFilesUploaded": {"success": True}}


def _default_entity(ctx: Context, _: dict[str, Any]) -> dict[str, Any]:
    return {"viewer": {"id": storage_id("User", ctx.entity), "entity": ctx.entity}}


def _features(ctx: Context, _: dict[str, Any]) -> dict[str, Any]:
    return {"serverInfo": {"features": [{"name": f, "isEnabled": True} for f in ctx.features]}}


def _organization(_: Context, __: dict[str, Any]) -> dict[str, Any]:
    return {"entity": {"organization": None}}


class GraphQLError(Exception):
    """Answered as ``{"errors": [{"message": ...}]}``."""


HANDLERS: dict[str, Handler] = {
    "Viewer": _viewer,
    "GetViewer": _viewer,
    "GetDefaultEntity": _default_entity,
    "UpsertBucket": _upsert_bucket,
    "RunResumeStatus": _resume_status,
    "Run": _run,
    "RunFiles": _run_files,
    "RunHistoryKeys": _history_keys,
    "RunFullHistory": _full_history,
    "CreateRunFiles": _create_run_files,
    "MarkRunFilesUploaded": _mark_uploaded,
    "ServerFeaturesQuery": _features,
    "OrganizationCoreWeaveOrganizationID": _organization,
}
"""Operation name → answer. Any other operation is answered with a GraphQL error."""
