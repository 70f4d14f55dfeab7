"""Sizing pubs into jobs by executions (``QJM_MAX_EXECUTIONS_PER_JOB`` at most per job).

* Sampler: parameter sets x shots.
* Estimator: the service caps nothing, so qjm counts for itself: parameter sets x measurement
  bases x the shots the precision needs (``ceil(1 / precision**2)``, as the Estimator does).
  Bases are the qubit-wise commuting groups of every Pauli term of the pub's observables.

Pubs of one shots (Sampler) or one precision (Estimator) share jobs, since a primitive job
takes one of each; a pub larger than a job is cut into slices of rows along its leading axis.
"""

from __future__ import annotations

import math
from collections import defaultdict

from qiskit.primitives.containers.estimator_pub import EstimatorPub
from qiskit.primitives.containers.sampler_pub import SamplerPub
from qiskit.quantum_info import SparsePauliOp

from ..errors import InvalidInputError
from ..formats.pubs import Piece, Pub, slice_pub


def estimator_shots(precision: float) -> int:
    return int(math.ceil(1.0 / precision**2))


def measurement_bases(pub: EstimatorPub) -> int:
    """Qubit-wise commuting groups of the pub's Pauli terms (at least one)."""
    labels: set[str] = set()
    for obs in pub.observables.ravel().tolist():
        labels.update(label for label in obs if set(label) - {"I"})
    if not labels:
        return 1
    op = SparsePauliOp(sorted(labels))
    return max(1, len(op.group_commuting(qubit_wise=True)))


def executions(pub: Pub) -> int:
    sets = max(1, pub.parameter_values.size) if pub.circuit.num_parameters else 1
    if isinstance(pub, SamplerPub):
        return max(1, math.prod(pub.shape)) * int(pub.shots)
    return sets * measurement_bases(pub) * estimator_shots(float(pub.precision))


def group_key(pub: Pub) -> float:
    return float(pub.shots) if isinstance(pub, SamplerPub) else float(pub.precision)


def slices(pub: Pub, k: int, cap: int) -> list[tuple[Piece, int]]:
    """The pub as pieces of at most ``cap`` executions each, with their executions; a pub
    whose single row exceeds the cap is refused."""
    cost = executions(pub)
    if cost <= cap:
        return [(Piece(k), cost)]
    rows = pub.shape[0] if pub.shape else 1
    row_cost = executions(slice_pub(pub, (0, 1))) if pub.shape else cost
    if rows == 1 or row_cost > cap:
        what = "shots" if isinstance(pub, SamplerPub) else "precision (shots = 1/precision**2)"
        raise InvalidInputError(
            f"Experiment {k}: one element needs {row_cost:,} executions, more than one job may run "
            f"(QJM_MAX_EXECUTIONS_PER_JOB = {cap:,}). Lower its {what}, or give its sweep a longer leading "
            "axis (qjm splits pubs along it).")
    out: list[tuple[Piece, int]] = []
    step = max(1, cap // row_cost)
    a = 0
    while a < rows:
        b = min(rows, a + step)
        piece_cost = executions(slice_pub(pub, (a, b)))
        while piece_cost > cap and b - a > 1:  # rows differ in cost: shrink until it fits
            b = a + max(1, (b - a) // 2)
            piece_cost = executions(slice_pub(pub, (a, b)))
        out.append((Piece(k, (a, b)), piece_cost))
        a = b
    return out


def plan_jobs(pubs: list[Pub], cap: int, max_pubs: int) -> list[list[Piece]]:
    """Jobs as lists of pieces: pubs grouped by shots/precision (first-seen order), each group
    packed in input order up to ``max_pubs`` pieces and ``cap`` executions per job."""
    groups: dict[float, list[tuple[Piece, int]]] = defaultdict(list)
    for k, pub in enumerate(pubs):
        groups[group_key(pub)].extend(slices(pub, k, cap))
    jobs: list[list[Piece]] = []
    for pieces in groups.values():
        job: list[Piece] = []
        load = 0
        for piece, cost in pieces:
            if job and (len(job) >= max_pubs or load + cost > cap):
                jobs.append(job)
                job, load = [], 0
            job.append(piece)
            load += cost
        if job:
            jobs.append(job)
    return jobs
