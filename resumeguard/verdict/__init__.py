"""The verdict core: which changes are harmless and why, and the one judge.

- :mod:`~resumeguard.verdict.downgrades`: every rule that calls a change harmless, as data with
  its reason (read by :meth:`resumeguard.policy.Policy.judge`);
- :mod:`~resumeguard.verdict.judge`: findings and a policy in, the report and its verdict out.

It imports :mod:`resumeguard.findings` and :mod:`resumeguard.report` only (the policy as a type):
no collector, store or front door, and none of those modules imports it back except to judge.
"""
