"""The verdict: recorded vs current in; findings, their severities under a policy, and the report
out. The comparison (``compare``, ``fit``, ``codechange``), finding paths and hints, the policy and
the policy kept with a run, every rule that calls a change harmless (``downgrades``,
``runcontrol``), the one judge, and the report. Pure: reads no store and no checkpoint file.

May import: :mod:`resumeguard.records`, :mod:`resumeguard.collect`, :mod:`resumeguard.io` and the
base modules (not :mod:`resumeguard.stores`, by design, though it lies below).
"""
