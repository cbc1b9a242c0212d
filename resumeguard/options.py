"""What a front door was told, and how this process runs resumeguard.

:class:`Options` is the one value a front door (``init``, ``guard``, the framework callbacks,
Accelerate's ``attach``, the CLI, ``resumeguard run``) builds from what the user gave it and
passes down whole to the decision, so the same settings mean the same thing at every door.

The off switch for incidents: ``RESUMEGUARD_DISABLE=1`` makes every front door of a training
process a plain pass-through (``init`` is ``wandb.init``, a save is ``torch.save``, a restore
is ``torch.load`` and ``load_state_dict``, the decorator and the callbacks do nothing): no
check, no record, no collective. Said once on stderr.

May import: the stages below the decision (it names the verdict's policy and the checkpoint
storage option, for type hints only); imported by the decision and the front doors.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from resumeguard.checkpoint.storage import Storage
    from resumeguard.verdict.policy import Policy


@dataclasses.dataclass(frozen=True)
class Options:
    """The settings a front door takes, as one frozen value passed down to the decision."""

    policy: Policy | str | None = None
    """A preset (``strict``, ``lenient``), a TOML policy file, or a Policy. None: the policy kept
    with the run judges its resumes (a new run starts with the repository's
    ``[tool.resumeguard]`` over strict); ``RESUMEGUARD_POLICY`` counts as given."""
    repo: str | Path = "."
    """The git repository of the training code."""
    requirements: tuple[str | Path, ...] = ()
    """Requirement files to fingerprint; none given: ``requirements*.txt`` at the repo root."""
    storage: Storage | str | None = None
    """What is kept of each checkpoint beyond its digest (a Storage, or its text such as
    ``latest+upload``); None: ``RESUMEGUARD_STORAGE``, else ``auto``."""
    project: str | None = None
    """The W&B project of the run; None: the run id's own, or wandb's default."""
    entity: str | None = None
    """The W&B entity of the run; None: the run id's own, or wandb's default."""
    offline: bool | None = None
    """True: read W&B offline run directories; False: the W&B API; None: as wandb would
    (``WANDB_MODE``, then whether an API key is configured)."""
    wandb_dir: str | Path | None = None
    """Where offline runs live; None: ``WANDB_DIR``, else the current directory."""
    timeout: float | None = None
    """Seconds one W&B API request may take; None: ``RESUMEGUARD_TIMEOUT``, else 10."""

    def __post_init__(self) -> None:
        if isinstance(self.requirements, (str, Path)):  # one file given alone
            object.__setattr__(self, "requirements", (self.requirements,))
        elif not isinstance(self.requirements, tuple):
            object.__setattr__(self, "requirements", tuple(self.requirements))

    def where(
        self,
        *,
        project: str | None = None,
        entity: str | None = None,
        offline: bool | None = None,
        wandb_dir: str | Path | None = None,
    ) -> Options:
        """These options with the run's whereabouts filled in where they were not given."""
        return dataclasses.replace(
            self,
            project=self.project or project,
            entity=self.entity or entity,
            offline=self.offline if self.offline is not None else offline,
            wandb_dir=self.wandb_dir or wandb_dir,
        )


DEFAULT = Options()
"""The settings of a front door given none."""

ENV = "RESUMEGUARD_DISABLE"
"""The environment variable; "1", "true", "yes" or "on" switch resumeguard off."""


def disabled() -> bool:
    """True when resumeguard is switched off (and said so once on stderr)."""
    if os.environ.get(ENV, "").strip().lower() not in ("1", "true", "yes", "on"):
        return False
    _say_once()
    return True


@functools.cache
def _say_once() -> None:
    sys.stderr.write(
        f"resumeguard: off ({ENV} is set): nothing is checked or recorded; wandb and torch "
        "calls go through unchanged\n"
    )


REPORT_ENV = "RESUMEGUARD_REPORT"
"""Set by ``resumeguard run``: where a process that ends a resume writes its verdict (JSON)."""


def under_launcher() -> bool:
    """True in a process that ``resumeguard run`` started."""
    return bool(os.environ.get(REPORT_ENV))
