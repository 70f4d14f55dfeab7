"""Finding job sets: ``JobManager.job_sets(..., limit=10)`` among 2,000 and among 200,000 kept sets.

How the sets are made (a private redis-server, no workers: listing never talks to them):

* every set gets a record and index entries written by qjm's own code: ``JobSetRecord.to_hash``
  into the set's hash and ``SetIndex.add`` for the indexes, in pipelines of 1,000 sets;
* the first 2,000 are full sets made by ``Store.create_job_set`` (one job each), as ``run()``
  writes them; the rest have no job keys, since a listing reads only set records;
* names cycle through 100 values, each set has 2 of 50 tags, 3 backends, and statuses are
  80 % DONE, 10 % ERROR, 10 % RUNNING; creation times are one second apart.

Each query is timed as the median of 30 calls, the ``ManagedJobSet`` objects included. For
contrast, at 2,000 sets: what the listing cost before the indexes (read every set, then filter).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from qjm import JobManager
from qjm.lifecycle import JobSetStatus
from qjm.ops.cluster import RedisProcess
from qjm.ops.testing import create_job_set
from qjm.store import JobSetRecord, keys, new_job_set_id

SIZES = (2_000, 200_000)
FULL = 2_000
BACKENDS = ("fake_manila", "aer_simulator", "ibm_brisbane")
REPEAT = 30
GOAL_MS = 50.0


def record(k: int, created: float) -> JobSetRecord:
    status = JobSetStatus.RUNNING if k % 10 == 0 else JobSetStatus.ERROR if k % 10 == 1 else JobSetStatus.DONE
    return JobSetRecord(id=new_job_set_id(), name=f"sweep-{k % 100}", backend=BACKENDS[k % 3],
                        tags=[f"tag-{k % 50}", f"tag-{(k * 7 + 3) % 50}"], created=created, n_experiments=1,
                        job_bounds=[(0, 1)], options={}, status=status)


def fill(jm: JobManager, start: int, stop: int, t0: float) -> None:
    store = jm.store
    for first in range(start, stop, 1000):
        p = store.r.pipeline(transaction=False)
        for k in range(first, min(first + 1000, stop)):
            rec = record(k, t0 + k)
            p.hset(keys.job_set(rec.id), mapping=rec.to_hash())
            p.expire(keys.job_set(rec.id), store.ttl)
            store.index.add(rec, expires=time.time() + store.ttl, pipe=p)
        p.execute()


def fill_full(jm: JobManager, n: int, t0: float) -> None:
    """Full sets as ``run()`` writes them, then given the same labels as ``record`` would."""
    from qiskit import QuantumCircuit

    qc = QuantumCircuit(1, 1)
    qc.measure(0, 0)
    store = jm.store
    for k in range(n):
        sid = create_job_set(store, [qc], BACKENDS[k % 3], name=f"sweep-{k % 100}")
        want = record(k, t0 + k)
        store.r.hset(keys.job_set(sid), mapping={"created": repr(want.created), "status": want.status.value})
        store.relabel(sid, tags=want.tags)
        store.index.update(store.job_set(sid))


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(REPEAT):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000, out


QUERIES: dict[str, dict[str, Any]] = {
    "newest 10": {},
    "name": {"name": "sweep-42"},
    "one tag": {"tags": ["tag-7"]},
    "two tags": {"tags": ["tag-3", "tag-24"]},
    "backend + status": {"backend": "ibm_brisbane", "status": "ERROR"},
    "name + tag + status": {"name": "sweep-42", "tags": ["tag-42"], "status": "DONE"},
}


def scan_everything(jm: JobManager, name: str) -> list[str]:
    """The listing before the indexes: read every set, keep those with the name."""
    return [sid for sid in jm.store.job_set_ids() if jm.store.job_set(sid).name == name][:10]


def main() -> dict[str, float]:
    redis = RedisProcess().start()
    out: dict[str, float] = {}
    try:
        jm = JobManager(redis.url)
        t0 = time.time() - 10 * SIZES[-1]
        made = 0
        print(f"listing: job_sets(..., limit=10), median of {REPEAT} calls (goal < {GOAL_MS:.0f} ms)")
        for size in SIZES:
            start = time.perf_counter()
            if made == 0:
                fill_full(jm, FULL, t0)
                made = FULL
            fill(jm, made, size, t0)
            made = size
            print(f"  {size:>7,} sets (made in {time.perf_counter() - start:5.1f} s):")
            for label, kw in QUERIES.items():
                ms, found = timed(lambda kw=kw: jm.job_sets(limit=10, **kw))
                assert 0 < len(found) <= 10, (label, len(found))
                out[f"{size}:{label}"] = ms
                print(f"    {label:<22} {ms:6.2f} ms  ({len(found)} sets)")
            if size == FULL:
                ms, _ = timed(lambda: scan_everything(jm, "sweep-42"))
                print(f"    {'before: read them all':<22} {ms:6.2f} ms  (name filter, no index)")
        # Sets expire: they leave the indexes at the next query, a bounded batch at a time.
        gone = [raw.decode() for raw in jm.store.r.zrange(keys.INDEX, 0, 999)]
        p = jm.store.r.pipeline(transaction=False)
        for sid in gone:
            p.delete(keys.job_set(sid))
            p.zadd(keys.SETS_EXPIRY, {sid: time.time() - 1})
        p.execute()
        start = time.perf_counter()
        jm.job_sets(name="sweep-42", limit=10)
        first = (time.perf_counter() - start) * 1000
        ms, _ = timed(lambda: jm.job_sets(name="sweep-42", limit=10))
        print(f"  1,000 sets expired: first query {first:.2f} ms (drops them from every index), then {ms:.2f} ms")
        out["expired:first"] = first
    finally:
        redis.stop()
    return out


if __name__ == "__main__":
    main()
