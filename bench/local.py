"""Seed workload: qjm with 2 worker processes against the same work by hand in one process.

Workload: 1000 random 5-qubit depth-4 circuits, 1024 shots, fake_manila, optimization_level=2.
By hand: ``generate_preset_pass_manager(...).run(circuits)`` then
``SamplerV2(mode=FakeManilaV2()).run(isa, shots=1024).result()``. Both measured in this run.
"""

from __future__ import annotations

import statistics
import time
import warnings

from qiskit.circuit.random import random_circuit
from qiskit.transpiler import generate_preset_pass_manager
from qiskit_ibm_runtime import SamplerV2
from qiskit_ibm_runtime.fake_provider import FakeManilaV2

from qjm import JobManager
from qjm.ops.cluster import RedisProcess, WorkerProcess

N, SHOTS, LEVEL, PER_JOB, ROUNDS = 1000, 1024, 2, 100, 3


def by_hand(circuits) -> float:
    start = time.perf_counter()
    backend = FakeManilaV2()
    isa = generate_preset_pass_manager(optimization_level=LEVEL, backend=backend).run(circuits)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        result = SamplerV2(mode=backend).run(isa, shots=SHOTS).result()
    assert len(result) == N
    return time.perf_counter() - start


def with_qjm(jm: JobManager, circuits) -> float:
    start = time.perf_counter()
    job_set = jm.run(circuits, backend="fake_manila", shots=SHOTS, optimization_level=LEVEL,
                     max_experiments_per_job=PER_JOB)
    results = job_set.results(timeout=600)
    elapsed = time.perf_counter() - start
    assert results.success and sum(results.get_counts(len(circuits) - 1).values()) == SHOTS
    return elapsed


def main() -> dict[str, float]:
    circuits = [random_circuit(num_qubits=5, depth=4, measure=True, seed=k) for k in range(N)]
    redis = RedisProcess().start()
    worker = WorkerProcess(redis.url, concurrency=2).wait_ready()
    try:
        jm = JobManager(redis.url)
        with_qjm(jm, circuits[:20])  # first task in each pool process builds its backend and pass manager
        hand, qjm_times = [], []
        for _ in range(ROUNDS):
            hand.append(by_hand(circuits))
            qjm_times.append(with_qjm(jm, circuits))
    finally:
        worker.stop()
        redis.stop()
    h, q = statistics.median(hand), statistics.median(qjm_times)
    print(f"local seed workload ({N} circuits, {SHOTS} shots, fake_manila, optimization_level={LEVEL}), "
          f"median of {ROUNDS}:")
    print(f"  by hand, one process : {h:6.2f} s   (runs: {', '.join(f'{t:.2f}' for t in hand)})")
    print(f"  qjm, 2 worker procs  : {q:6.2f} s   (runs: {', '.join(f'{t:.2f}' for t in qjm_times)})")
    print(f"  ratio qjm / by hand  : {q / h:6.2f}   (goal: <= 1.00)")
    return {"by_hand": h, "qjm": q, "ratio": q / h}


if __name__ == "__main__":
    main()
