"""The decision: is this a resume, of which run, and may it go ahead. One answer for every front
door (:mod:`.pipeline`), shared across ranks (:mod:`.distributed`), with one resume at a time
(:mod:`.claims`), the run's own files (:mod:`.runfiles`) and the line a resume logs
(:mod:`.verified`).

May import: every stage below it (:mod:`resumeguard.checkpoint`, :mod:`resumeguard.verdict`,
:mod:`resumeguard.records`, :mod:`resumeguard.stores`, :mod:`resumeguard.collect`,
:mod:`resumeguard.io`), never a front door.
"""
