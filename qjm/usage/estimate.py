"""qjm's estimate of what a job will cost in QPU seconds, made from its transpiled circuits.

    estimate = JOB_OVERHEAD_SECONDS + sum over the job's pubs p of  executions(p) * (T(p) + rep_delay)

* ``T(p)``: one shot of the pub's ISA circuit on the backend's ``Target``: the circuit scheduled
  as late as possible (Qiskit's ``ALAPScheduleAnalysis`` with ``PadDelay``), then its
  ``QuantumCircuit.estimate_duration(target)``: the longest path through it on the target's
  calibrated instruction durations.
* ``rep_delay``: the backend configuration's ``default_rep_delay`` (the client gives it in seconds).
* ``executions(p)``: the pub's shots times every point of its shape (parameter sweeps). A job
  the client prepares into an executor program first (the Estimator; a Sampler with twirling)
  is counted from that program, as it will be posted: each item's circuit, its shots times its
  extent (randomizations, measurement bases, sweeps), the readout calibration's items included
  (``Executor.executions``). Otherwise an Estimator pub's shots are ``ceil(1 / precision**2)``.
* ``JOB_OVERHEAD_SECONDS``: a fixed cost per job, preparing the QPU (2 s).

It is computed once per job, in its transpile step (``qjm.engine.pipeline``), and stored with the job: a
budget is checked against it right before the post (``qjm.usage.budget``).
"""

from __future__ import annotations

import math
from typing import Any

from qiskit import QuantumCircuit
from qiskit.primitives.containers.estimator_pub import EstimatorPub
from qiskit.transpiler import PassManager, Target
from qiskit.transpiler.passes import ALAPScheduleAnalysis, PadDelay

#: Seconds every job costs on top of its shots (preparing the QPU for it).
JOB_OVERHEAD_SECONDS = 2.0
#: Precision of an Estimator pub that names none, when the set names none either.
DEFAULT_PRECISION = 0.015625


def shot_seconds(circuit: QuantumCircuit, target: Target) -> float:
    """One shot of an ISA circuit on ``target``: its ALAP schedule's longest path, in seconds."""
    if not circuit.data:
        return 0.0
    scheduled = PassManager([ALAPScheduleAnalysis(target=target), PadDelay(target=target)]).run(circuit)
    return float(scheduled.estimate_duration(target, unit="s"))


def executions(pub: Any, precision: float | None = None) -> int:
    """Shots times the points of the pub's shape."""
    points = math.prod(pub.shape) if pub.shape else 1
    if isinstance(pub, EstimatorPub):
        shots = math.ceil(1.0 / (pub.precision or precision or DEFAULT_PRECISION) ** 2)
    else:
        shots = int(pub.shots)
    return shots * points


def rep_delay(backend: Any) -> float:
    """The backend's ``default_rep_delay`` in seconds (0 when it has none, e.g. a simulator)."""
    try:
        return float(backend.configuration().default_rep_delay or 0.0)
    except (AttributeError, TypeError):
        return float(getattr(backend, "default_rep_delay", 0.0) or 0.0)


def pub_executions(pubs: list[Any], precision: float | None = None) -> list[tuple[QuantumCircuit, int]]:
    """Each pub's ISA circuit with its executions."""
    return [(p.circuit, executions(p, precision)) for p in pubs]


def job_seconds(work: list[tuple[QuantumCircuit, int]], backend: Any) -> float:
    """The module's formula for one job on ``backend`` (a ``BackendV2``): its ISA circuits, each
    with its executions."""
    target, delay = backend.target, rep_delay(backend)
    return JOB_OVERHEAD_SECONDS + sum(n * (shot_seconds(c, target) + delay) for c, n in work)
