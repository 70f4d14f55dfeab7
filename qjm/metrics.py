"""Prometheus metrics for what Flower cannot know: job sets, their jobs, remote slots, latency.

Flower sees Celery tasks; qjm's own state lives in Redis. ``QJMCollector`` reads that state at
scrape time, so the numbers are right whichever process or host changed them and survive restarts
of the metrics server. Latency histograms are the exception (they need a moment, not a state):
workers record each observation into Redis through ``qjm.hooks`` listeners, as plain counters
that only grow, so every worker process on every host adds to one histogram without Prometheus'
multi-process mode, and the collector serves it. ``qjm metrics --port 9808`` serves all of it.
"""

from __future__ import annotations

import logging
import time
from functools import lru_cache
from typing import Any, Iterable, Iterator

import redis
from prometheus_client.core import CollectorRegistry, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from . import codec, hooks
from .config import Settings
from .status import JobSetStatus, JobStatus
from .store import JobSetRecord, Keys, Store

log = logging.getLogger(__name__)

#: Seconds. Local jobs take seconds; jobs on IBM hardware can wait in the queue for hours.
BUCKETS: tuple[float, ...] = (1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)

METRICS_PREFIX = f"{Keys.PREFIX}:metrics"
JOB_HISTOGRAM = "job_result_seconds"  # a job's result, from the submit of its set
SET_HISTOGRAM = "job_set_result_seconds"  # a set's final state, from its submit
_HELP = {
    JOB_HISTOGRAM: "Seconds from submitting a job set to the result of each of its jobs",
    SET_HISTOGRAM: "Seconds from submitting a job set to its final state",
}


def _hist_key(metric: str, backend: str) -> str:
    return f"{METRICS_PREFIX}:hist:{metric}:{backend}"


def _seen_key(job_set_id: str) -> str:
    return f"{METRICS_PREFIX}:seen:{job_set_id}"


def _bucket(value: float) -> str:
    for le in BUCKETS:
        if value <= le:
            return repr(float(le))
    return "+Inf"


# KEYS[1] seen-set of the job set, KEYS[2] histogram hash; ARGV: member, ttl, bucket, value.
# A redelivered task may report the same transition twice: each job and set is counted once.
_OBSERVE = """
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
redis.call('HINCRBY', KEYS[2], 'count', 1)
redis.call('HINCRBYFLOAT', KEYS[2], 'sum', ARGV[4])
return 1
"""


def observe(store: Store, metric: str, backend: str, job_set_id: str, member: str, seconds: float) -> bool:
    """Count one observation once; False if this member of the set was already counted."""
    seconds = max(0.0, seconds)
    script = store.r.register_script(_OBSERVE)
    keys = [_seen_key(job_set_id), _hist_key(metric, backend)]
    return bool(script(keys=keys, args=[member, store.ttl, _bucket(seconds), repr(seconds)]))


# ---------------------------------------------------------------- worker side: hook listeners
@lru_cache(maxsize=1)
def _store() -> Store:
    return Store()


def _on_chunk_status(job_set_id: str, chunk: int, status: JobStatus, fields: dict[str, Any],
                     **_: Any) -> None:
    if status is not JobStatus.DONE:
        return
    store = _store()
    rec = store.job_set(job_set_id)
    finished = float(fields.get("finished_at") or time.time())
    observe(store, JOB_HISTOGRAM, rec.backend, job_set_id, f"job:{chunk}", finished - rec.created)


def _on_job_set_final(job_set_id: str, status: JobSetStatus, record: JobSetRecord, **_: Any) -> None:
    observe(_store(), SET_HISTOGRAM, record.backend, job_set_id, "set", time.time() - record.created)


_installed = False


def install() -> None:
    """Register the latency listeners in this process (idempotent). Workers call it at start."""
    global _installed
    if not _installed:
        hooks.on("chunk_status", _on_chunk_status)
        hooks.on("job_set_final", _on_job_set_final)
        _installed = True


def _install_in_worker(**_: Any) -> None:
    install()


# ``celery worker -I qjm.metrics`` (what ``qjm worker`` runs) imports this module; the signals make
# the worker and its pool processes listen, while a mere import elsewhere (a client) changes nothing.
try:
    from celery import signals as _celery_signals

    _celery_signals.worker_init.connect(_install_in_worker, weak=False)
    _celery_signals.worker_process_init.connect(_install_in_worker, weak=False)
except ImportError:  # pragma: no cover - celery is a dependency
    pass


# ---------------------------------------------------------------- scrape side: the collector
class QJMCollector(Collector):
    """Reads qjm's state from Redis on every scrape; ``qjm_up`` is 0 when Redis does not answer."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Any]:
        up = GaugeMetricFamily("qjm_up", "1 if qjm's Redis answered this scrape")
        try:
            families = list(self._families())
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            log.warning("qjm metrics: Redis at %s did not answer: %s", self.store.url, exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _families(self) -> Iterable[Any]:
        r = self.store.r
        ids = [raw.decode() for raw in r.zrange(Keys.INDEX, 0, -1)]
        p = r.pipeline(transaction=False)
        for sid in ids:
            p.hmget(Keys.job_set(sid), "status", "backend", "chunk_bounds")
        rows = [(sid, *row) for sid, row in zip(ids, p.execute()) if row[0]]  # expired sets have no hash

        sets = GaugeMetricFamily("qjm_job_sets", "Job sets kept in Redis, by state", labels=["state", "backend"])
        by_set: dict[tuple[str, str], int] = {}
        active: list[tuple[str, str, int]] = []
        for sid, status, backend, bounds in rows:
            state, bname = status.decode(), backend.decode()
            by_set[state, bname] = by_set.get((state, bname), 0) + 1
            if state == JobSetStatus.RUNNING.value:
                active.append((sid, bname, len(codec.loads(bounds))))
        for bname in sorted({b for _, b in by_set}):
            for state in JobSetStatus:
                sets.add_metric([state.value, bname], by_set.get((state.value, bname), 0))
        yield sets

        chunks = GaugeMetricFamily("qjm_chunks", "Jobs (chunks) of unfinished job sets, by state",
                                   labels=["state", "backend"])
        p = r.pipeline(transaction=False)
        owners: list[str] = []
        for sid, bname, n in active:
            for i in range(n):
                p.hget(Keys.chunk(sid, i), "status")
                owners.append(bname)
        by_chunk: dict[tuple[str, str], int] = {}
        for bname, status in zip(owners, p.execute() if owners else []):
            if status:
                by_chunk[status.decode(), bname] = by_chunk.get((status.decode(), bname), 0) + 1
        for bname in sorted({b for _, b, _ in active}):
            for state in JobStatus:
                chunks.add_metric([state.value, bname], by_chunk.get((state.value, bname), 0))
        yield chunks

        pending = GaugeMetricFamily("qjm_remote_jobs_pending",
                                    "Remote jobs holding one of the backend's pending-job slots", labels=["backend"])
        prefix = Keys.slots("")
        now = time.time()
        for key in sorted(r.scan_iter(match=Keys.slots("*"), count=500)):
            leases = r.hvals(key)
            pending.add_metric([key.decode()[len(prefix):]], sum(1 for v in leases if float(v) > now))
        yield pending

        limit = GaugeMetricFamily("qjm_remote_jobs_pending_limit", "QJM_MAX_PENDING_JOBS: slots per IBM backend")
        limit.add_metric([], self.store.cfg.max_pending_jobs)
        yield limit

        for metric in (JOB_HISTOGRAM, SET_HISTOGRAM):
            hist = HistogramMetricFamily(f"qjm_{metric}", _HELP[metric], labels=["backend"])
            prefix = _hist_key(metric, "")
            for key in sorted(r.scan_iter(match=_hist_key(metric, "*"), count=500)):
                h = {k.decode(): v.decode() for k, v in r.hgetall(key).items()}
                cumulative, buckets = 0, []
                for le in BUCKETS:
                    cumulative += int(h.get(repr(float(le)), 0))
                    buckets.append((repr(float(le)), cumulative))
                buckets.append(("+Inf", int(h.get("count", 0))))
                hist.add_metric([key.decode()[len(prefix):]], buckets, float(h.get("sum", 0)))
            yield hist


def registry(cfg: Settings | None = None) -> CollectorRegistry:
    """A registry holding only qjm's collector (plus nothing process-specific)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(QJMCollector(Store(cfg=cfg)))
    return reg


def serve(port: int = 9808, host: str = "0.0.0.0", cfg: Settings | None = None) -> None:
    """Serve ``/metrics`` until interrupted."""
    from prometheus_client import start_http_server

    server, thread = start_http_server(port, addr=host, registry=registry(cfg))
    try:
        while thread.is_alive():
            thread.join(1.0)
    finally:
        server.shutdown()
