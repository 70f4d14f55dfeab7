"""Scale: 50,000 small circuits on aer_simulator through qjm with 2 worker processes, against the
same work by hand in one process, measured in the same run.

Prints ``run()``'s time per circuit (goal: 5 s for the whole set), the time to the first finished
job (jobs begun run to their end before new ones begin, so it comes early), and the ratio of qjm's
end to end time (``run()`` to ``results()``) to the time by hand (goal <= 0.7). By hand:
``generate_preset_pass_manager(optimization_level=1, backend=AerSimulator()).run(circuits, num_processes=1)`` then
``AerSimulator(max_parallel_threads=1).run(isa, shots=SHOTS).result()`` (one process, one thread, as each
worker process runs). ``QJM_BENCH_SCALE_N`` sets the number of circuits.

Both are measured ``ROUNDS`` times, by hand then qjm in turn, and the median of the ratios is the
figure: on this 2-core VM the same qjm run took 33 s or 54 s from one minute to the next (every task
of a run slower alike, with nothing else running), so one pair says more about the machine than
about qjm. Every round is printed.
"""

from __future__ import annotations

import os
import statistics
import threading
import time

from qiskit import QuantumCircuit
from qiskit.circuit.random import random_circuit
from qiskit.transpiler import generate_preset_pass_manager
from qiskit_aer import AerSimulator

from qjm import JobManager
from qjm.ops.cluster import RedisProcess, WorkerProcess

N = int(os.environ.get("QJM_BENCH_SCALE_N", "50000"))
SHOTS, LEVEL, ROUNDS = 256, 1, 3


def circuits(n: int) -> list[QuantumCircuit]:
    return [random_circuit(num_qubits=3, depth=2, measure=True, seed=k) for k in range(n)]


def by_hand(cs: list[QuantumCircuit]) -> float:
    start = time.perf_counter()
    backend = AerSimulator(max_parallel_threads=1)  # one thread, as each qjm worker process (QJM_SIM_THREADS)
    isa = generate_preset_pass_manager(optimization_level=LEVEL, backend=backend).run(cs, num_processes=1)
    result = backend.run(isa, shots=SHOTS).result()
    assert len(result.results) == len(cs)
    return time.perf_counter() - start


def with_qjm(jm: JobManager, cs: list[QuantumCircuit]) -> dict[str, float]:
    start = time.perf_counter()
    job_set = jm.run(cs, backend="aer_simulator", shots=SHOTS, optimization_level=LEVEL)
    returned = time.perf_counter() - start
    first: list[float] = []
    n_jobs = job_set.record().n_jobs

    def watch() -> None:  # when the first job is DONE (what `qjm watch` would show)
        while not first:
            if any(s.final for s in jm.store.job_statuses(job_set.job_set_id(), n_jobs)):
                first.append(time.perf_counter() - start)
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    results = job_set.results(timeout=3600)
    elapsed = time.perf_counter() - start
    watcher.join(5)
    assert results.success and sum(results.get_counts(len(cs) - 1).values()) == SHOTS
    return {"run": returned, "first": first[0] if first else elapsed, "total": elapsed, "jobs": n_jobs}


def main() -> dict[str, float]:
    cs = circuits(N)
    redis = RedisProcess().start()
    worker = WorkerProcess(redis.url, concurrency=2).wait_ready()
    try:
        jm = JobManager(redis.url)
        with_qjm(jm, cs[:200])  # each pool process builds its pass manager once
        rounds = []
        for _ in range(ROUNDS):
            hand = by_hand(cs)
            rounds.append((hand, with_qjm(jm, cs)))
    finally:
        worker.stop()
        redis.stop()
    ratios = [q["total"] / hand for hand, q in rounds]
    hand, q = rounds[ratios.index(statistics.median(ratios))]
    print(f"scale ({N} random 3-qubit depth-2 circuits, {SHOTS} shots, aer_simulator, optimization_level={LEVEL}, "
          f"{q['jobs']:.0f} jobs), the median of {ROUNDS} rounds:")
    print(f"  run() returned after : {q['run']:6.2f} s   ({q['run'] / N * 1e3:.3f} ms per circuit; goal: 5 s, 0.1 ms)")
    print(f"  first job finished   : {q['first']:6.2f} s   (last: {q['total']:.2f} s)")
    print(f"  by hand, one process : {hand:6.2f} s")
    print(f"  qjm, 2 worker procs  : {q['total']:6.2f} s   (run() to results())")
    print(f"  ratio qjm / by hand  : {q['total'] / hand:6.2f}   (goal: <= 0.70)")
    print("  every round          : " + ", ".join(f"{q['total']:.1f} s / {hand:.1f} s = {q['total'] / hand:.2f}"
                                                 for hand, q in rounds))
    return {"run_per_circuit": q["run"] / N, "first": q["first"], "ratio": q["total"] / hand}


if __name__ == "__main__":
    main()
