"""One set fanned out over three emulated devices (``run(backend=[...])``) with other users' jobs
queued ahead: 30 jobs of 1 s, ``qjm emulator --serial``, at most 3 of qjm's jobs pending per device.

The devices start each round with 0, 5 and 20 other users' jobs queued. The ideal makespan is
the water-filling time over the three queues: jobs go where they start soonest, so the queues
level at L with (L - 0) + (L - 5) = 30, L = 17.5 s (the 20-deep queue gets none). Beside it: the
ideal on the least busy device alone (30 s) and that set measured. Reported: makespan / ideal,
and requests the service saw per job (status requests, and every request: posts, listings,
results).
"""

from __future__ import annotations

import json
import os
import statistics
import time
import urllib.request

from qiskit import QuantumCircuit

from qjm import JobManager
from qjm.ops.cluster import EmulatorProcess, RedisProcess, WorkerProcess, wait_for

JOBS, JOB_SECONDS, LIMIT, SHOTS, ROUNDS = 30, 1.0, 3, 256, 3
#: Other users' jobs on each device at the start of a round.
AHEAD = {"ibm_manila": 0, "ibm_lima": 5, "ibm_quito": 20}


def circuits(n: int) -> list[QuantumCircuit]:
    out = []
    for k in range(n):
        qc = QuantumCircuit(5, name=f"f{k}")
        for q in range(5):
            if (k >> q) & 1:
                qc.x(q)
        qc.measure_all()
        out.append(qc)
    return out


def water_level(ahead: list[int], jobs: int, seconds: float) -> float:
    """When the last of ``jobs`` ends if each goes to the queue where it starts soonest (queues
    as a fluid: the level L where sum(max(0, L - a)) covers the jobs)."""
    queues = sorted(ahead)
    for k in range(1, len(queues) + 1):
        level = (jobs + sum(queues[:k])) / k
        if k == len(queues) or level <= queues[k]:
            return level * seconds
    raise AssertionError("unreachable")


def post(emulator: EmulatorProcess, path: str, body: dict) -> None:
    req = urllib.request.Request(f"{emulator.url}{path}", json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=5).read()


def idle(emulator: EmulatorProcess) -> bool:
    with urllib.request.urlopen(f"{emulator.url}/api/v1/backends", timeout=5) as resp:
        listing = json.load(resp)
    devices = listing.get("devices", listing) if isinstance(listing, dict) else listing
    return all(d.get("queue_length", 0) == 0 for d in devices if d.get("name") in AHEAD)


def stamps(emulator: EmulatorProcess, js) -> list[tuple[str, float, float, float]]:
    """(device, created, running, finished) of each job, from the service's own timestamps."""
    import datetime

    def ts(value: str) -> float:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()

    out = []
    for job in js.jobs():
        with urllib.request.urlopen(f"{emulator.url}/api/v1/jobs/{job.job_id()}/metrics", timeout=5) as resp:
            t = json.load(resp)["timestamps"]
        out.append((job.backend_name(), ts(t["created"]), ts(t["running"]), ts(t["finished"])))
    return out


def where_time_goes(jobs: list[tuple[str, float, float, float]], started: float, ended: float) -> dict[str, float]:
    """``idle``: seconds a device that ran qjm's jobs had none of them running between its first
    start and its last end (a slot freed late, or a job placed late); ``end``: the last end to
    results() returning; ``last``: per device, its last end after run()."""
    idle_s, last = 0.0, {}
    for device in {d for d, *_ in jobs}:
        runs = sorted((r, f) for d, _, r, f in jobs if d == device)
        idle_s += sum(max(0.0, r - f) for (_, f), (r, _) in zip(runs, runs[1:], strict=False))
        last[device] = runs[-1][1] - started
    return {"idle": idle_s, "end": ended - max(f for *_, f in jobs), **{f"last:{d}": t for d, t in last.items()}}


def one_round(jm: JobManager, emulator: EmulatorProcess, cfg_cache: float, backend: str | list[str],
              work: list[QuantumCircuit]) -> dict[str, float]:
    """Queue the others' jobs, run the set at once, and measure it. Starts from idle devices and
    a listing older than qjm's cache, so the set's first placement reads the queues afresh."""
    wait_for(lambda: idle(emulator), 120, "the devices to be idle", interval=0.2)
    time.sleep(cfg_cache + 0.5)
    for name, count in AHEAD.items():
        if count:
            post(emulator, f"/emulator/backends/{name}", {"background": count})
    before = emulator.stats()
    start, wall = time.perf_counter(), time.time()
    js = jm.run(work, backend=backend, shots=SHOTS, max_experiments_per_job=1)
    results = js.results(timeout=600)
    span, ended = time.perf_counter() - start, time.time()
    after = emulator.stats()  # before the timeline's own requests below
    where = where_time_goes(stamps(emulator, js), wall, ended)
    assert results.success
    posted = after["jobs_posted"] - before["jobs_posted"]
    assert posted == JOBS, f"{posted} jobs posted for {JOBS}"
    assert all(n <= LIMIT for n in after["max_pending_by_backend"].values()), after["max_pending_by_backend"]
    by_backend = {b: after["jobs_posted_by_backend"].get(b, 0) - before["jobs_posted_by_backend"].get(b, 0)
                  for b in AHEAD}
    return {"span": span, "status": (after["status_requests"] - before["status_requests"]) / posted,
            "requests": (after["requests"] - before["requests"]) / posted, **where,
            **{f"on:{b}": n for b, n in by_backend.items()}}


def main() -> dict[str, float]:
    cache = 5.0
    emulator = EmulatorProcess(job_seconds=JOB_SECONDS, serial=True).wait_ready()
    redis = RedisProcess().start()
    worker = WorkerProcess(redis.url, concurrency=2, QISKIT_IBM_URL=emulator.url, QJM_MAX_PENDING_JOBS=str(LIMIT),
                           QJM_BACKENDS_CACHE_SECONDS=str(cache)).wait_ready()
    os.environ["QISKIT_IBM_URL"] = emulator.url  # run() checks the names against the service's listing
    devices = list(AHEAD)
    work = circuits(JOBS)
    try:
        jm = JobManager(redis.url)
        # Warm the workers: each process fetches every device's target and builds its pass manager once.
        jm.run(work[:12], backend=devices, shots=SHOTS, max_experiments_per_job=1).results(timeout=300)
        rounds = [one_round(jm, emulator, cache, devices, work) for _ in range(ROUNDS)]
        alone = one_round(jm, emulator, cache, min(AHEAD, key=AHEAD.get), work)  # type: ignore[arg-type]
    finally:
        worker.stop()
        redis.stop()
        emulator.stop()
    ideal = water_level(list(AHEAD.values()), JOBS, JOB_SECONDS)
    ideal_alone = (JOBS + min(AHEAD.values())) * JOB_SECONDS
    span = statistics.median(r["span"] for r in rounds)
    status = statistics.median(r["status"] for r in rounds)
    requests = statistics.median(r["requests"] for r in rounds)
    ahead = ", ".join(f"{b} {n}" for b, n in AHEAD.items())
    print(f"Fan-out over three emulated devices ({JOBS} jobs of {JOB_SECONDS:.0f} s, --serial, "
          f"other users' jobs ahead: {ahead}; {LIMIT} pending per device at most), median of {ROUNDS}:")
    print(f"  ideal makespan         : {ideal:6.2f} s   (water-filling over the three queues)")
    runs = ", ".join(f"{r['span']:.2f}" for r in rounds)
    print(f"  qjm makespan           : {span:6.2f} s   (runs: {runs})")
    print(f"  ratio qjm / ideal      : {span / ideal:6.2f}   (goal: <= 1.15)")
    print("  jobs per device        : " + "; ".join(
        ", ".join(f"{b} {int(r[f'on:{b}'])}" for b in AHEAD) for r in rounds))
    print("  where the time goes    : " + "; ".join(
        f"idle {r['idle']:.2f} s, end {r['end']:.2f} s, last end " + ", ".join(
            f"{b} {r[f'last:{b}']:.2f}" for b in AHEAD if f"last:{b}" in r) for r in rounds))
    print(f"  least busy device alone: {alone['span']:6.2f} s   (ideal {ideal_alone:.1f} s; "
          f"fan-out saves {alone['span'] - span:.1f} s)")
    runs = ", ".join(f"{r['status']:.2f}" for r in rounds)
    print(f"  status requests / job  : {status:6.2f}   (goal: <= 3.5; runs: {runs})")
    print(f"  all requests / job     : {requests:6.2f}   (posts, listings, results too)")
    return {"ideal": ideal, "makespan": span, "ratio": span / ideal, "status_per_job": status,
            "requests_per_job": requests, "alone": alone["span"]}


if __name__ == "__main__":
    main()
