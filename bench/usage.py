"""QPU time: qjm's estimate against the emulator's charges, and service requests per job.

Workloads on ibm_manila through the emulator (one worker, 2 processes), each job's estimate (made
by qjm from its transpiled circuits before the post) against what the emulator charged for it
(computed on its own side, from what was posted):

* ``counts``: the IBM bench's circuits (basis states of 5 qubits, 4 per job, 256 shots);
* ``deep``: GHZ states and CNOT ladders of 2-5 qubits (longer shots), 1024 shots;
* ``sweep``: Sampler pubs with a parameter sweep of 8 points, 128 shots;
* ``estimator``: Estimator pubs (4 observables x 10 parameter sets, precision 1/32, the
  Estimator's default options: measurement twirling).

Requests per job: every request the emulator saw from qjm's workers over the ``counts`` set,
and the status requests among them, per job.
"""

from __future__ import annotations

import json
import os
import statistics
import urllib.request

import numpy as np
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter
from qiskit.circuit.library import efficient_su2

from qjm import JobManager
from qjm.ops.cluster import EmulatorProcess, RedisProcess, WorkerProcess

BACKEND = "ibm_manila"


def counts() -> tuple[list, dict]:
    from ibm import circuits

    return circuits(40), {"shots": 256, "max_experiments_per_job": 4}


def deep() -> tuple[list, dict]:
    out = []
    for k in range(24):
        n = 2 + k % 4
        qc = QuantumCircuit(n, name=f"d{k}")
        qc.h(0)
        for q in range(n - 1):
            qc.cx(q, q + 1)
        for _ in range(k % 3):
            for q in range(n - 1):
                qc.cx(q, q + 1)
        qc.measure_all()
        out.append(qc)
    return out, {"shots": 1024, "max_experiments_per_job": 3}


def sweep() -> tuple[list, dict]:
    theta = Parameter("theta")
    pubs = []
    for k in range(12):
        qc = QuantumCircuit(3, name=f"s{k}")
        qc.h(0)
        qc.rx(theta, 1)
        qc.cx(0, 2)
        qc.measure_all()
        pubs.append((qc, np.linspace(0, np.pi, 8).reshape(8, 1)))
    return pubs, {"shots": 128, "max_experiments_per_job": 4}


def estimator() -> tuple[list, dict]:
    rng = np.random.default_rng(7)
    ansatz = efficient_su2(5, reps=1)
    obs = [["ZZIII"], ["IIZZI"], ["XXIII"], ["IIIZZ"]]
    pubs = [(ansatz, obs, rng.uniform(-np.pi, np.pi, size=(10, ansatz.num_parameters))) for _ in range(6)]
    return pubs, {"primitive": "estimator", "precision": 1 / 32, "max_experiments_per_job": 2}


WORKLOADS = {"counts": counts, "deep": deep, "sweep": sweep, "estimator": estimator}


def charge(emulator: EmulatorProcess, remote_id: str) -> float:
    with urllib.request.urlopen(f"{emulator.url}/api/v1/jobs/{remote_id}/metrics", timeout=5) as resp:
        return float(json.load(resp)["usage"]["qpu_charge_time_seconds"])


def main() -> dict[str, float]:
    emulator = EmulatorProcess(job_seconds=0.3).wait_ready()
    redis = RedisProcess().start()
    worker = WorkerProcess(redis.url, concurrency=2, QISKIT_IBM_URL=emulator.url).wait_ready()
    os.environ["QISKIT_IBM_URL"] = emulator.url
    errors: dict[str, list[float]] = {}
    per_job: dict[str, float] = {}
    try:
        jm = JobManager(redis.url)
        for name, make in WORKLOADS.items():
            items, kwargs = make()
            before = emulator.stats()
            js = jm.run(items, backend=BACKEND, **kwargs)
            js.results(timeout=900)
            after = emulator.stats()
            jobs = js.jobs()
            if name == "counts":
                n = len(jobs)
                per_job = {"requests": (after["requests"] - before["requests"]) / n,
                           "status": (after["status_requests"] - before["status_requests"]) / n}
            errors[name] = [abs(js._store.job(js.job_set_id(), j.index).estimate - charge(emulator, j.job_id()))
                            / charge(emulator, j.job_id()) for j in jobs]
    finally:
        worker.stop()
        redis.stop()
        emulator.stop()
    print("QPU time: qjm's estimate before the post against the emulator's charge, per job (relative error):")
    every = [e for es in errors.values() for e in es]
    for name, es in errors.items():
        print(f"  {name:<10}: {len(es):3d} jobs, median {statistics.median(es):.2e}, worst {max(es):.2e}")
    print(f"  all       : {len(every):3d} jobs, median {statistics.median(every):.2e}, worst {max(every):.2e}")
    print(f"Service requests per job (counts workload, {BACKEND}): {per_job['requests']:.2f} in all, "
          f"{per_job['status']:.2f} of them status requests (usage read from the status answer: no request of its own)")
    return {"estimate_error_median": statistics.median(every), "estimate_error_worst": max(every),
            "requests_per_job": per_job["requests"], "status_requests_per_job": per_job["status"]}


if __name__ == "__main__":
    main()
