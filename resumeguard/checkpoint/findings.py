"""Which files beside checkpoints are resumeguard's own (records, temp files), not code."""

from __future__ import annotations

from resumeguard.checkpoint.beside import SUFFIX as BESIDE_SUFFIX
from resumeguard.io.atomic import TMP_SUFFIX
from resumeguard.verdict.findings import Severity
from resumeguard.verdict.policy import Rule

OWN_FILES_RULE = "resumeguard's own files beside checkpoints (records, temp files)"
CORRUPT = ".corrupt-"
"""A damaged checkpoint ``resumeguard restore`` replaced is kept as ``<name>.corrupt-<time>``."""


def own_file_rules() -> list[Rule]:
    """Ignore the records beside checkpoints, the temp files of saves (also of saves killed
    midway) and the damaged checkpoints a restore kept, untracked or committed (``git add
    -A``): they change with every save, not with the code."""
    return [
        Rule(f"code.{kind}.*{suffix}", Severity.IGNORE, OWN_FILES_RULE)
        for kind in ("untracked", "files")
        for suffix in (TMP_SUFFIX, BESIDE_SUFFIX, f"{CORRUPT}*")
    ]
