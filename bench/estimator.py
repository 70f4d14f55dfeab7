"""Estimator workload: qjm with 2 worker processes against the local testing mode by hand.

Workload: PUBS pubs (default 40; ``BENCH_ESTIMATOR_PUBS=200`` for the issue's full size) of a
5-qubit ``efficient_su2`` ansatz on fake_manila, each with 10 parameter sets and 4 observables
(shape (4, 10)), the Estimator's default options (precision 1/64, readout mitigation with
measurement twirling). By hand: ``generate_preset_pass_manager(...).run(circuits)``, observables
laid out, then ``executor_estimator.Estimator(mode=FakeManilaV2()).run(pubs)`` in one process.
qjm: ``run(pubs, primitive="estimator")`` with the same options. Both measured in this run.
"""

from __future__ import annotations

import os
import time
import warnings

import numpy as np
from qiskit.circuit.library import efficient_su2
from qiskit.quantum_info import SparsePauliOp
from qiskit.transpiler import generate_preset_pass_manager
from qiskit_ibm_runtime.executor_estimator import Estimator
from qiskit_ibm_runtime.fake_provider import FakeManilaV2

from qjm import JobManager
from qjm.ops.cluster import RedisProcess, WorkerProcess

PUBS = int(os.environ.get("BENCH_ESTIMATOR_PUBS", "40"))
PER_JOB = 5
OBSERVABLES = [["ZZIII"], ["IIZZI"], ["XXIII"], ["IIIZZ"]]  # shape (4, 1): broadcast against 10 sets


def workload() -> list[tuple]:
    rng = np.random.default_rng(7)
    ansatz = efficient_su2(5, reps=1)
    return [(ansatz, OBSERVABLES, rng.uniform(-np.pi, np.pi, size=(10, ansatz.num_parameters))) for _ in range(PUBS)]


def by_hand(pubs: list[tuple]) -> float:
    start = time.perf_counter()
    backend = FakeManilaV2()
    isa = generate_preset_pass_manager(optimization_level=2, backend=backend).run([p[0] for p in pubs])
    laid_out = [(c, [[SparsePauliOp(o[0]).apply_layout(c.layout)] for o in obs], values)
                for c, (_, obs, values) in zip(isa, pubs, strict=True)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = Estimator(mode=backend).run(laid_out).result()
    assert len(result) == len(pubs) and result[0].data.evs.shape == (4, 10)
    return time.perf_counter() - start


def with_qjm(jm: JobManager, pubs: list[tuple]) -> float:
    start = time.perf_counter()
    js = jm.run(pubs, backend="fake_manila", primitive="estimator", max_experiments_per_job=PER_JOB)
    pr = js.results(timeout=3600).primitive_result()
    elapsed = time.perf_counter() - start
    assert len(pr) == len(pubs) and pr[-1].data.evs.shape == (4, 10)
    return elapsed


def main() -> dict[str, float]:
    pubs = workload()
    redis = RedisProcess().start()
    worker = WorkerProcess(redis.url, concurrency=2).wait_ready()
    try:
        jm = JobManager(redis.url)
        with_qjm(jm, pubs[:2])  # each pool process builds its backend and pass manager once
        hand = by_hand(pubs)
        ours = with_qjm(jm, pubs)
    finally:
        worker.stop()
        redis.stop()
    print(f"estimator workload ({PUBS} pubs of shape (4, 10), 5-qubit ansatz, fake_manila, default options):")
    print(f"  by hand, local testing mode, one process : {hand:7.2f} s")
    print(f"  qjm, 2 worker procs ({PER_JOB} pubs per job)   : {ours:7.2f} s")
    print(f"  ratio qjm / by hand                      : {ours / hand:7.2f}   (goal: <= 0.70)")
    return {"by_hand": hand, "qjm": ours, "ratio": ours / hand}


if __name__ == "__main__":
    main()
