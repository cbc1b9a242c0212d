"""The fingerprint record (versioned schema), its JSON file form, and the compact config form.

Schema history (every version stays readable: ``fixtures/fingerprints/`` keeps one of each):
- 1: code, deps, env, optimizer, model, config.
- 2: facts, the config keys a framework callback collected. Schema 1 recorders did not all
  collect them, nor say which they did: a schema 1 record reads as ``facts`` None.
- 3: a run record's checkpoints say what their state holds (``components``: schedulers with
  their step, scalers with their scale, RNG states, the data position); a checkpoint of an
  older record reads as ``components`` None (not known), the fingerprint itself is unchanged;
  and a checkpoint record may describe a sharded checkpoint directory (``files``: every
  file's name, digest, size and rank; ``digest`` is then the listing's).
  Each checkpoint record also says where its file lies (``host``, ``disk``: the host's own or
  a shared filesystem) and its ``mtime_ns``; an older checkpoint record reads as not knowing
  (a file not here is missing; ``--quick`` compares its size only).
  And each checkpoint name keeps its recent saves (``history``: digest, size, step, time of
  the last 32), so a file holding an earlier save is that save; an older record has none, and
  such a file is judged as changed.
  And every untracked file present when the run was recorded is code (hashed or stamped, none
  left out by its name), with ``code.logs`` keeping each log's size and head digest; a record
  without ``code.logs`` (schema 1-2, or 3 written before it) reads as ``code.logs`` None: its
  untracked files are judged by their names, as when it was taken.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from resumeguard._version import __version__
from resumeguard.collect.code import CodeRecord
from resumeguard.collect.deps import DepsRecord
from resumeguard.collect.env import EnvRecord
from resumeguard.collect.optimizer import ModelRecord, OptimizerRecord
from resumeguard.collect.record import Record, Unavailable
from resumeguard.errors import BadInput
from resumeguard.io import bounded
from resumeguard.io.hashing import digest_json
from resumeguard.redact import is_secret_key, without_secret_keys

SCHEMA = 3
NOT_GIVEN = Unavailable("not given")
"""The optimizer or model part when none was passed: not compared."""


@dataclasses.dataclass(frozen=True)
class Fingerprint(Record):
    """Everything resumeguard compares before a resume."""

    kind = "fingerprint"

    code: CodeRecord | Unavailable
    """The git working tree."""
    deps: DepsRecord | Unavailable
    """Interpreter, torch stack, requirements, installed distributions."""
    env: EnvRecord | Unavailable
    """Devices and the distributed world."""
    optimizer: OptimizerRecord | Unavailable = NOT_GIVEN
    """The optimizer at run start, when one was given."""
    model: ModelRecord | Unavailable = NOT_GIVEN
    """The model's parameters at run start, when a model was given."""
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    """The user's run config (resumeguard's own key excluded)."""
    facts: tuple[str, ...] | None = ()
    """The config keys a framework callback collected (hyper-parameters, trainer settings, the
    effective batch size); None in a record from before they were kept (schema 1), which may
    lack such a key because its recorder did not collect it."""
    schema: int = SCHEMA
    """Schema version of this record."""
    created: str = ""
    """ISO time the fingerprint was taken (context only, never compared)."""
    tool: str = f"resumeguard {__version__}"
    """The version that wrote it (context only)."""

    def to_json(self) -> dict[str, Any]:
        """Plain JSON with ``schema`` first, for readable files."""
        data = super().to_json()
        return {"schema": data.pop("schema"), **data}

    def digest(self) -> str:
        """Digest of the comparable content (``created`` and ``tool`` left out)."""
        data = self.to_json()
        data.pop("created", None)
        data.pop("tool", None)
        return digest_json(data)

    def unrecorded(self, current: Fingerprint) -> list[str]:
        """The keys ``current``'s framework collected that this record could not hold: it is
        from before facts were kept and lacks the key (a key kept as null was recorded)."""
        if self.facts is not None:
            return []
        now = set(current.facts or ()) & set(current.config)
        return sorted(now - set(self.config))

    def with_facts(self, current: Fingerprint) -> Fingerprint:
        """This record grown by the facts it could not hold, as ``current`` collected them (a
        record only grows: what it recorded stays); itself when it keeps facts already."""
        if self.facts is not None or not current.facts:
            return self
        added = {k: current.config[k] for k in self.unrecorded(current)}
        return dataclasses.replace(self, config={**self.config, **added}, facts=current.facts)


def take(
    *,
    repo: str | Path | None = ".",
    requirements: Sequence[str | Path] = (),
    optimizer: Any = None,
    model: Any = None,
    config: Mapping[str, Any] | None = None,
    facts: Mapping[str, Any] | None = None,
) -> Fingerprint:
    """Collect a fingerprint of this process (torch is imported only for an optimizer or model);
    ``facts``, what a framework callback knows of the run, go over ``config``."""
    from resumeguard.collect.code import collect_code
    from resumeguard.collect.deps import collect_deps
    from resumeguard.collect.env import collect_env

    known = user_config(facts or {})  # first: a config no record can hold is refused at once
    given = user_config(config or {})
    code = collect_code(repo) if repo is not None else Unavailable("no repository given")
    root = code.root if isinstance(code, CodeRecord) else repo
    opt_record: OptimizerRecord | Unavailable = NOT_GIVEN
    model_record: ModelRecord | Unavailable = NOT_GIVEN
    if optimizer is not None or model is not None:
        from resumeguard.collect.optimizer import collect_model, collect_optimizer

        if optimizer is not None:
            opt_record = collect_optimizer(optimizer, model=model)
        if model is not None:
            model_record = collect_model(model)
    return Fingerprint(
        code=code,
        deps=collect_deps(root, requirements),
        env=collect_env(),
        optimizer=opt_record,
        model=model_record,
        config={**given, **known},
        facts=tuple(sorted(known)),
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    )


def user_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The user's config as JSON values, without resumeguard's key, wandb's private ones, or
    keys that name a credential (at any depth: a credential is not part of the experiment);
    BadInput for a NaN or an infinity (refused before anything is created)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if key == "resumeguard" or key.startswith("_") or is_secret_key(key, value):
            continue
        if isinstance(value, Mapping) and set(value) <= {"value", "desc"} and "value" in value:
            value = value["value"]  # wandb's config.yaml wraps every value
        try:
            text = json.dumps(value, default=str, allow_nan=False)
        except ValueError:  # NaN or an infinity: a record holding one could not be read back
            raise BadInput(
                f"config key {key!r} holds NaN or an infinity, which a run's record (JSON) "
                "cannot hold: pass it as a string (e.g. 'nan'), or leave it out"
            ) from None
        out[str(key)] = without_secret_keys(json.loads(text))
    return out


def from_json(data: Any, *, source: str = "fingerprint") -> Fingerprint:
    """Read a fingerprint of any known schema; BadInput with one line when malformed."""
    if not isinstance(data, Mapping):
        raise BadInput(f"{source}: not a resumeguard fingerprint (expected a JSON object)")
    if "fingerprint" in data and isinstance(data["fingerprint"], Mapping):
        data = data["fingerprint"]  # a full run record (resumeguard.json) holds one
    if data.get("schema") is None or "code" not in data or "deps" not in data:
        raise BadInput(
            f"{source}: not a resumeguard fingerprint (no schema/code/deps keys); "
            "make one with `resumeguard fingerprint --json`"
        )
    check_schema(data["schema"], f"{source}: fingerprint")
    try:
        bounded.check_tree(data)
        return Fingerprint.from_json(_migrate(dict(data)))
    except ValueError as e:
        raise BadInput(f"{source}: malformed fingerprint ({e})") from None


def check_schema(schema: object, what: str) -> None:
    """BadInput unless ``schema`` is a schema version this resumeguard reads (1..SCHEMA)."""
    if isinstance(schema, bool) or not isinstance(schema, int) or schema < 1:
        shown = repr(schema) if len(repr(schema)) < 30 else repr(schema)[:27] + "..."
        raise BadInput(f"{what} schema {shown} is not a schema version (1 to {SCHEMA})")
    if schema > SCHEMA:
        raise BadInput(
            f"{what} schema {schema} is newer than this resumeguard understands ({SCHEMA}); "
            "upgrade resumeguard"
        )


def load(path: str | Path) -> Fingerprint:
    """Read a fingerprint JSON file."""
    p = Path(path)
    try:
        data = bounded.read_json(p)
    except OSError as e:
        raise BadInput(f"cannot read {p}: {e.strerror or e}") from None
    except ValueError as e:
        raise BadInput(f"{p}: {e}") from None
    return from_json(data, source=str(p))


def dumps(fp: Fingerprint) -> str:
    """The JSON file form."""
    return json.dumps(fp.to_json(), indent=2, sort_keys=False)


def _migrate(data: dict[str, Any]) -> dict[str, Any]:
    """Bring an old schema up to the current one (each step a pure function of the last)."""
    if data["schema"] < 2:
        data["facts"] = None  # 1 -> 2: which framework facts were collected is not known
    data["schema"] = SCHEMA
    return data
