"""The seed example: 1000 random 5-qubit circuits on fake_manila, in jobs of 100.

Starts a private Redis and workers when none are running, and stops what it started.
"""

from __future__ import annotations

import sys
import time
import warnings

from ..config import settings


def run_demo(n: int = 1000, per_job: int = 100, backend: str = "fake_manila") -> int:
    from qiskit.circuit.random import random_circuit

    from ..client.manager import JobManager
    from .cluster import LocalCluster

    with LocalCluster(settings().redis_url) as cluster:
        for what in cluster.started:
            print(f"started {what}")
        circuits = [random_circuit(num_qubits=5, depth=4, measure=True, seed=k) for k in range(n)]
        started = time.monotonic()
        job_set = JobManager(cluster.redis_url).run(circuits, backend=backend, name="foo",
                                                    max_experiments_per_job=per_job)
        print(f"job set {job_set.job_set_id()}: {n} circuits in {len(job_set.jobs())} jobs on {backend}")
        results = job_set.results()
        print(f"done in {time.monotonic() - started:.1f} s\n")
        print(job_set.report(detailed=True))
        print(f"\nresults.get_counts(5) = {results.get_counts(5)}")
        if cluster.started:
            print("\nstopping what the demo started")
    return 0


def main() -> None:
    warnings.simplefilter("ignore")  # the demo's output is the report, not library chatter
    sys.exit(run_demo())


if __name__ == "__main__":
    main()
