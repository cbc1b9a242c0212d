"""The Python front door: ``init`` and ``guard`` for a run, ``save_checkpoint``,
``restore_checkpoint`` and ``load_checkpoint`` for its checkpoints, and the sharded checkpoints of
:mod:`resumeguard.dcp`. It wires the decision to what a training script holds.

May import: every stage below it (:mod:`resumeguard.decide` and down). Imported only by the
other front doors (integrations, launcher, CLI).
"""
