"""The shape of the job a check from outside predicts: its world size when the job script says
it (``--world-size``, ``--nproc-per-node`` x ``--nnodes``, ``WORLD_SIZE``), and whether this
process can see the job's devices. What is not known is not checked from here: the checking
process is one process on one node, never the job itself.

Slurm: ``SLURM_NTASKS`` is the world size under ``srun python train.py`` but the node count
under ``srun torchrun`` (one task per node), and the check cannot tell which launcher follows
it, so it is never read as the world size; ``SLURM_JOB_NUM_NODES`` (``SLURM_NNODES``) is the
node count ``--nproc-per-node`` multiplies when ``--nnodes`` is not given."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

from resumeguard.collect.env import EnvRecord
from resumeguard.collect.record import Unavailable
from resumeguard.errors import BadInput


@dataclasses.dataclass(frozen=True)
class JobShape:
    """What the job script says of the job a check predicts."""

    world_size: int | None = None
    """The number of processes the job will run; None when not known here."""
    source: str = ""
    """Where it comes from ("--world-size 4", "--nproc-per-node 4 x 2 nodes", "WORLD_SIZE")."""


def job_shape(
    world_size: int | None = None,
    nproc_per_node: int | None = None,
    nnodes: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> JobShape:
    """The job's shape from the check's options, else ``WORLD_SIZE``; BadInput for options
    that contradict each other or a ``WORLD_SIZE`` that is not a positive number."""
    env = os.environ if environ is None else environ
    if nnodes is not None and nproc_per_node is None:
        raise BadInput(
            "--nnodes needs --nproc-per-node (the processes each node runs); or give the "
            "whole job's --world-size"
        )
    if nproc_per_node is not None:
        nodes, where = _nodes(nnodes, env)
        product = nproc_per_node * nodes
        if world_size is not None and world_size != product:
            raise BadInput(
                f"--world-size {world_size} contradicts --nproc-per-node {nproc_per_node} x "
                f"{nodes} node(s) ({where}); give one of them"
            )
        return JobShape(product, f"--nproc-per-node {nproc_per_node} x {nodes} node(s) ({where})")
    if world_size is not None:
        return JobShape(world_size, f"--world-size {world_size}")
    text = env.get("WORLD_SIZE", "").strip()
    if text:
        if not text.isdigit() or int(text) < 1:
            raise BadInput(
                f"WORLD_SIZE={text!r} is not a number of processes; unset it or pass --world-size N"
            )
        return JobShape(int(text), "WORLD_SIZE")
    return JobShape()


def _nodes(nnodes: int | None, env: Mapping[str, str]) -> tuple[int, str]:
    if nnodes is not None:
        return nnodes, "--nnodes"
    for name in ("SLURM_JOB_NUM_NODES", "SLURM_NNODES"):
        text = env.get(name, "").strip()
        if text.isdigit() and int(text) > 0:
            return int(text), name
    return 1, "--nnodes default"


def as_the_job(
    recorded: EnvRecord | Unavailable, current: EnvRecord | Unavailable, job: JobShape
) -> tuple[EnvRecord | Unavailable, list[str]]:
    """This process's environment as the job's, for a check from outside: the world size the
    job script gave (else the recorded one, not checked from here), and the recorded devices
    when this process sees none (it does not run where the job runs). Returns it and one
    line per part not checked from here."""
    if not isinstance(recorded, EnvRecord) or not isinstance(current, EnvRecord):
        return current, []
    notes: list[str] = []
    world = job.world_size
    if world is None:
        world = recorded.world_size
        notes.append(
            f"env.world_size (recorded {recorded.world_size}): the job's is not known here; "
            "pass --world-size N, or --nproc-per-node N [--nnodes M], as the job starts it"
        )
    env = dataclasses.replace(current, world_size=world)
    if current.device_type == "cpu" and recorded.device_type != "cpu":
        env = dataclasses.replace(
            env,
            device_type=recorded.device_type,
            device_count=recorded.device_count,
            device_names=recorded.device_names,
        )
        notes.append(
            f"env.device_* (recorded {recorded.device_count} {recorded.device_type} device(s)): "
            "no accelerator is visible here; the job's own check compares them"
        )
    return env, notes
