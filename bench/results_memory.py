"""Client memory for reading a large set's results: ``results()`` then ``get_counts(i)`` read only
the jobs they need (a few kept), while ``combine_results()`` holds the whole set.

Workload: N one-qubit-register circuits on aer_simulator with ``memory=True`` (every shot kept),
so the stored results are tens of MB. Peak Python allocations are measured with tracemalloc.
"""

from __future__ import annotations

import os
import random
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from qiskit import QuantumCircuit

from qjm import JobManager
from qjm.ops.cluster import RedisProcess, WorkerProcess

N = int(os.environ.get("BENCH_RESULTS_CIRCUITS", "20000"))
SHOTS = 256


def circuits() -> list[QuantumCircuit]:
    out = []
    for k in range(N):
        qc = QuantumCircuit(3, name=f"c{k}")
        qc.h(k % 3)
        qc.measure_all()
        out.append(qc)
    return out


def peak(call: Callable[[], Any]) -> tuple[float, Any]:
    tracemalloc.start()
    try:
        value = call()
        return tracemalloc.get_traced_memory()[1] / 2**20, value
    finally:
        tracemalloc.stop()


def main() -> dict[str, float]:
    redis = RedisProcess().start()
    worker = WorkerProcess(redis.url, concurrency=2).wait_ready()
    try:
        jm = JobManager(redis.url)
        start = time.perf_counter()
        js = jm.run(circuits(), backend="aer_simulator", shots=SHOTS, memory=True)
        js.wait(timeout=1800)
        ran = time.perf_counter() - start
        stored = sum(redis.client().memory_usage(key) or 0 for key in redis.client().scan_iter("qjm:*:result*"))
        picks = random.Random(1).sample(range(N), 200)

        def read_some() -> int:
            results = js.results()
            return sum(len(results.get_memory(k)) for k in picks)

        some, total = peak(read_some)
        assert total == 200 * SHOTS
        whole, combined = peak(lambda: js.results().combine_results())
        assert len(combined.results) == N
    finally:
        worker.stop()
        redis.stop()
    print(f"results memory ({N} circuits, {SHOTS} shots, memory=True, aer_simulator; ran in {ran:.1f} s):")
    print(f"  stored results in Redis                 : {stored / 2**20:7.1f} MiB, one value per job")
    print(f"  results() + get_memory of 200 random i  : {some:7.1f} MiB peak client allocations")
    print(f"  combine_results() (the whole set)       : {whole:7.1f} MiB peak client allocations")
    return {"stored_mib": stored / 2**20, "some_mib": some, "whole_mib": whole}


if __name__ == "__main__":
    main()
