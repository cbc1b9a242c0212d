"""How this process runs resumeguard: switched off, or under ``resumeguard run``.

The off switch for incidents: ``RESUMEGUARD_DISABLE=1`` makes every front door of a training
process a plain pass-through (``init`` is ``wandb.init``, a save is ``torch.save``, a restore
is ``torch.load`` and ``load_state_dict``, the decorator and the callbacks do nothing): no
check, no record, no collective. Said once on stderr."""

from __future__ import annotations

import functools
import os
import sys

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
