"""The run-store interface: where a run's record, config and checkpoints are read back from.

Two implementations: :class:`~resumeguard.stores.offline.OfflineStore` (W&B offline run
directories on disk) and :class:`~resumeguard.stores.online.OnlineStore` (the W&B public API).
:func:`open_store` picks one. Every store error is a :class:`~resumeguard.errors.Unverifiable`
(exit 3: run not found, store unreachable) unless the input itself is bad
(:class:`~resumeguard.errors.BadInput`, exit 2) or a checkpoint is missing
(:class:`~resumeguard.errors.CheckpointError`).
"""

from __future__ import annotations

import abc
import dataclasses
import os
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from resumeguard.errors import BadInput

RunState = Literal["running", "finished", "crashed", "failed", "unknown"]
"""A run's state, reduced to what matters for a resume."""

OFFLINE_MODES = ("offline", "dryrun", "disabled")
"""``WANDB_MODE`` values that mean: no W&B server."""

_RESERVED_ID_CHARS = ":;,#?/'"  # wandb_settings.validate_run_id rejects these in run ids
_NAME_RE = re.compile(r"^[^/\s]+(?:[^/]*[^/\s])?$")


@dataclasses.dataclass(frozen=True)
class RunRef:
    """Which run: an id, optionally with its project and entity."""

    id: str
    """The run id (the last part of the run's URL), e.g. "1a2b3c4d"."""
    project: str | None = None
    """The W&B project; online stores fall back to ``WANDB_PROJECT``."""
    entity: str | None = None
    """The W&B entity (user or team); online stores fall back to the account's default."""

    @classmethod
    def parse(cls, text: str, project: str | None = None, entity: str | None = None) -> RunRef:
        """Parse "ID" or "ENTITY/PROJECT/ID" (also ".../runs/ID" and a run's URL).

        ``project``/``entity`` (from ``--project``/``--entity``) fill in what ``text`` lacks and
        must agree with what it gives. BadInput on anything else.
        """
        raw = text.strip()
        parts = _path_parts(raw)
        if len(parts) == 4 and parts[2] == "runs":
            parts = [parts[0], parts[1], parts[3]]
        if len(parts) == 1:
            run_id, got_project, got_entity = parts[0], None, None
        elif len(parts) == 3:
            got_entity, got_project, run_id = parts
        else:
            raise BadInput(
                f"bad run id {text!r}: give ID or ENTITY/PROJECT/ID "
                "(or ID with --project and --entity)"
            )
        _check_id(run_id, text)
        pairs = (("--project", project, got_project), ("--entity", entity, got_entity))
        for flag, given, parsed in pairs:
            if given is not None and parsed is not None and given != parsed:
                raise BadInput(f"{flag} {given!r} contradicts the run path {text!r}")
            if given is not None and not _NAME_RE.match(given):
                raise BadInput(f"bad {flag} {given!r}")
            if parsed is not None and not _NAME_RE.match(parsed):
                raise BadInput(f"bad run path {text!r}: empty or malformed part")
        return cls(id=run_id, project=got_project or project, entity=got_entity or entity)

    def __str__(self) -> str:
        """The path with what is known: "ENTITY/PROJECT/ID", "PROJECT/ID" or "ID"."""
        return "/".join(p for p in (self.entity, self.project, self.id) if p)


def _path_parts(raw: str) -> list[str]:
    if "://" in raw:  # a run's URL copied from the browser
        raw = urlsplit(raw).path
    raw = raw.strip("/")
    return raw.split("/") if raw else [""]


def _check_id(run_id: str, text: str) -> None:
    if not run_id or run_id != run_id.strip() or any(c in _RESERVED_ID_CHARS for c in run_id):
        raise BadInput(
            f"bad run id {text!r}: a run id is non-empty, without spaces around it "
            f"and without any of {_RESERVED_ID_CHARS}"
        )


@dataclasses.dataclass(frozen=True)
class StoredRun:
    """What a store holds for one run, read in one go."""

    ref: RunRef
    """The run, with project and entity filled in where the store knows them."""
    config: dict[str, Any]
    """The run config as the user sees it (values unwrapped), ``"resumeguard"`` key included."""
    record: dict[str, Any] | None
    """The parsed ``resumeguard.json``; None when the run has none."""
    last_step: int | None
    """The highest step with logged data (W&B's ``_step``), None when unknown."""
    state: RunState
    """Whether the run lives: "running" means another process may be writing to it now."""
    heartbeat: str | None
    """ISO-8601 UTC time of the run's last sign of life, None when unknown."""
    location: str
    """Where it was read: the newest run directory, or the run's URL."""
    directories: tuple[str, ...] = ()
    """Offline: every offline-run directory of the id, oldest first. Online: empty."""
    step_unknown: str = ""
    """Why the last logged step cannot be known (a damaged transaction log), "" when it can:
    then :attr:`last_step` is only what could be read before the damage."""


class RunStore(abc.ABC):
    """Reads and adopts runs. Implementations must not change any user data of a run."""

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """The store's kind: "offline" or "online"."""

    @abc.abstractmethod
    def fetch(self, ref: RunRef) -> StoredRun:
        """Read a run. RunNotFound when the store says it does not exist, StoreError when the
        store cannot answer (unreachable, refused, malformed): only RunNotFound means a new run."""

    @abc.abstractmethod
    def fetch_file(self, ref: RunRef, name: str, dest: Path) -> Path:
        """Copy run file ``name`` (relative to the run files dir) to ``dest / name``; return it.

        CheckpointError when the run has no such file.
        """

    def local_file(self, ref: RunRef, name: str, *, local: bool = False) -> Path | None:
        """Run file ``name`` on this machine, read in place; None when it would need a download.
        ``local``: a checkpoint copy kept beside the run's files (never uploaded) instead."""
        return None

    @abc.abstractmethod
    def write_record(self, ref: RunRef, record: dict[str, Any], compact: dict[str, Any]) -> None:
        """Adopt a run: store ``record`` as ``resumeguard.json`` and ``compact`` as
        ``config["resumeguard"]``, leaving every other config key as it is."""


def default_timeout() -> float:
    """Seconds one W&B API request may take: ``RESUMEGUARD_TIMEOUT``, else 10."""
    raw = os.environ.get("RESUMEGUARD_TIMEOUT", "10")
    try:
        value = float(raw)
    except ValueError:
        raise BadInput(f"RESUMEGUARD_TIMEOUT must be a number of seconds, not {raw!r}") from None
    return check_timeout(value, "RESUMEGUARD_TIMEOUT")


MAX_TIMEOUT = 3600.0
"""The longest wait for one W&B API request that a check accepts."""


def check_timeout(value: float, what: str) -> float:
    """``value`` when it is a usable request timeout in seconds; BadInput otherwise."""
    if not 0 < value <= MAX_TIMEOUT:  # also false for NaN
        raise BadInput(
            f"{what} must be a number of seconds above 0 and at most {MAX_TIMEOUT:g}, not {value!r}"
        )
    return value


def wandb_settings() -> Any:
    """wandb's settings from the environment and settings files (no network), None if broken."""
    try:
        from wandb.sdk import wandb_setup

        return wandb_setup.singleton().settings
    except Exception:  # a broken wandb install or settings file: nothing to talk to
        return None


def credentials_configured(settings: Any = None) -> bool:
    """True when an API key (env, settings, ~/.netrc) or an identity token file is configured.

    Checked locally, as ``wandb.Api()`` would find them; a malformed key counts as configured so
    that W&B's own complaint reaches the user.
    """
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    settings = settings if settings is not None else wandb_settings()
    if settings is None:
        return False
    if getattr(settings, "api_key", None) or getattr(settings, "identity_token_file", None):
        return True
    base_url = str(getattr(settings, "base_url", ""))
    try:
        from wandb.sdk.lib.wbauth import read_netrc_auth
    except ImportError:  # older wandb without wbauth: look in ~/.netrc ourselves
        import netrc

        try:
            return bool(netrc.netrc().authenticators(urlsplit(base_url).netloc))
        except (OSError, netrc.NetrcParseError):
            return False
    try:
        return read_netrc_auth(host=base_url) is not None
    except Exception:
        return True
