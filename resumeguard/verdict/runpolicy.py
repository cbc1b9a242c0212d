"""The policy kept with a run, so that a policy cannot excuse its own change.

The repository's ``[tool.resumeguard]`` lives in the very tree a resume is judged on: one commit
could edit ``train.py`` and add ``ignore = ["code.*"]``. So the policy in force when the run was
recorded is kept in its record and judges every resume; a repository policy that changed since
is itself a finding (``policy.rules``), judged by the kept one. Loosening takes an explicit act
outside the tree: ``--policy FILE`` (or ``policy=`` in Python, or the ``RESUMEGUARD_POLICY``
environment variable of a job script), whose rules come on top of the kept ones, and the report
names it. A preset name given that way swaps the preset and keeps the recorded rules; so does a
``Policy`` object without rules of its own. The framework callbacks pass the user's policy on
as given and add their preset-level rules after it is resolved, so the repository's preset never
reaches a resume through them either.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from resumeguard.verdict.findings import Finding
from resumeguard.verdict.hints import explain
from resumeguard.verdict.policy import (
    PYPROJECT,
    Policy,
    file_preset,
    is_file_spec,
    load_policy,
    preset,
)

POLICY_ENV = "RESUMEGUARD_POLICY"
"""A preset name or policy file for every check of the process, when none is passed."""

Spec = Policy | str | None


def explicit(spec: Spec) -> Spec:
    """The policy asked for outside the tree: the argument, else ``RESUMEGUARD_POLICY``."""
    return spec if spec is not None else os.environ.get(POLICY_ENV) or None


def validate(spec: Spec) -> None:
    """BadInput for a policy asked for outside the tree that names no preset or readable policy
    file, before anything else is asked (a bad ``--policy`` is reported as such, not as what the
    store answered)."""
    spec = explicit(spec)
    if isinstance(spec, str):
        load_policy(spec) if is_file_spec(spec) else preset(spec)


def at_start(spec: Spec, repo: str | Path | None) -> Policy:
    """The policy in force for a run that starts now (or a check with nothing recorded)."""
    spec = explicit(spec)
    if isinstance(spec, Policy):
        return spec if spec.origin else dataclasses.replace(spec, origin="given as policy=")
    return load_policy(spec, repo=repo)


def to_keep(policy: Policy, repo: str | Path | None) -> dict[str, Any]:
    """What a run's record keeps of the policy in force when it was recorded: that policy, and
    the repository's own policy when it came from there (later changes to it are findings)."""
    kept = policy.to_kept()
    from_tree = all(r.source == PYPROJECT for r in policy.rules)
    kept["repository"] = load_policy(None, repo=repo).to_kept() if from_tree else None
    return kept


def for_resume(
    spec: Spec, kept: Mapping[str, Any] | None, repo: str | Path | None
) -> tuple[Policy, list[Finding]]:
    """The policy that judges a resume, and the ``policy.rules`` finding when the repository's
    policy is no longer the one recorded. ``kept`` is the record's policy (None for records
    from before policies were kept: the repository's policy then judges, as it did)."""
    spec = explicit(spec)
    if kept is None:
        return at_start(spec, repo), []
    recorded = Policy.from_kept(kept, origin="recorded with the run")
    if isinstance(spec, Policy):
        if spec.overrides or spec.rules:
            return at_start(spec, repo), []
        # A bare preset: like a preset name, its preset with the recorded rules.
        policy = dataclasses.replace(
            spec,
            rules=recorded.rules,
            origin=f"preset {spec.name}, given explicitly, with the rules recorded with the run",
        )
        return policy, _changed(kept, repo)
    if is_file_spec(spec):
        assert spec is not None
        given = load_policy(spec)
        base = preset(file_preset(spec) or recorded.name)
        policy = dataclasses.replace(
            base,
            rules=recorded.rules,
            overrides=given.rules,
            origin=f"policy file {spec}, given explicitly, on top of the policy recorded with "
            "the run",
        )
        return policy, []
    if spec:
        recorded = dataclasses.replace(
            preset(spec),
            rules=recorded.rules,
            origin=f"preset {spec}, given explicitly, with the rules recorded with the run",
        )
    return recorded, _changed(kept, repo)


def _changed(kept: Mapping[str, Any], repo: str | Path | None) -> list[Finding]:
    then = kept.get("repository")
    if not isinstance(then, Mapping):
        return []  # the kept policy did not come from the repository
    now = load_policy(None, repo=repo)
    before = Policy.from_kept(then)
    if before.describe() == now.describe():
        return []
    return [explain("policy.rules", before.describe(), now.describe())]
