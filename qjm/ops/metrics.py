"""Prometheus metrics for what Flower cannot know: job sets, their jobs, remote slots, latency.

Flower sees Celery tasks; qjm's own state lives in Redis. ``QJMCollector`` reads that state at
scrape time, so the numbers are right whichever process or host changed them and survive restarts
of the metrics server. Latency histograms are the exception (they need a moment, not a state):
workers record each observation into Redis through ``qjm.engine.hooks`` listeners, as plain counters
that only grow, so every worker process on every host adds to one histogram without Prometheus'
multi-process mode, and the collector serves it. ``qjm metrics --port 9808`` serves all of it.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import Any

import redis
from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from ..config import Settings, mask_url
from ..engine import hooks
from ..lifecycle import JobSetStatus, JobStatus, Step
from ..store import JobSetRecord, Store

log = logging.getLogger(__name__)

#: Seconds. Local jobs take seconds; jobs on IBM hardware can wait in the queue for hours.
BUCKETS: tuple[float, ...] = (1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)

JOB_HISTOGRAM = "job_result_seconds"  # a job's result, from the submit of its set
SET_HISTOGRAM = "job_set_result_seconds"  # a set's final state, from its submit
_HELP = {
    JOB_HISTOGRAM: "Seconds from submitting a job set to the result of each of its jobs",
    SET_HISTOGRAM: "Seconds from submitting a job set to its final state",
}


def _bucket(value: float) -> str:
    for le in BUCKETS:
        if value <= le:
            return repr(float(le))
    return "+Inf"


def observe(store: Store, metric: str, backend: str, seconds: float) -> None:
    """Count one observation; its caller is told of it once (only the move that made a job DONE,
    and only the assembly that finished a set, announce it)."""
    seconds = max(0.0, seconds)
    store.histograms.observe(metric, backend, _bucket(seconds), seconds)


# ---------------------------------------------------------------- worker side: hook listeners
@lru_cache(maxsize=1)
def _store() -> Store:
    return Store()


@lru_cache(maxsize=256)
def _set_origin(job_set_id: str) -> tuple[str, float]:
    """A set's backend and creation time, which never change: read once per worker process."""
    rec = _store().job_set(job_set_id)
    return rec.backend, rec.created


def _on_job_status(job_set_id: str, job: int, status: JobStatus, fields: dict[str, Any],
                   **_: Any) -> None:
    if status is not JobStatus.DONE:
        return
    backend, created = _set_origin(job_set_id)
    finished = float(fields.get("finished_at") or time.time())
    # Told once per job (only the move that made it DONE announces it), so no seen-set is needed;
    # written within a second, with the other jobs this process finished meanwhile.
    seconds = max(0.0, finished - created)
    _store().histograms.observe_later(JOB_HISTOGRAM, backend, _bucket(seconds), seconds)


def _on_job_set_final(job_set_id: str, status: JobSetStatus, record: JobSetRecord, **_: Any) -> None:
    # Announced by the one assembly that finished the set (``Store.finish``): once per run of a
    # set, a run of ``rerun_failed()`` included.
    observe(_store(), SET_HISTOGRAM, record.backend, time.time() - record.created)


_installed = False


def install() -> None:
    """Register the latency listeners in this process (idempotent). Workers call it at start."""
    global _installed
    if not _installed:
        hooks.on("job_status", _on_job_status)
        hooks.on("job_set_final", _on_job_set_final)
        _installed = True


def _install_in_worker(**_: Any) -> None:
    install()


def _flush_in_worker(**_: Any) -> None:
    """A pool process that ends (a warm shutdown, ``max_tasks_per_child``) writes what it gathered."""
    if _store.cache_info().currsize:
        _store().histograms.flush()


# ``celery worker -I qjm.ops.metrics`` (what ``qjm worker`` runs) imports this module; the signals make
# the worker and its pool processes listen, while a mere import elsewhere (a client) changes nothing.
try:
    from celery import signals as _celery_signals

    _celery_signals.worker_init.connect(_install_in_worker, weak=False)
    _celery_signals.worker_process_init.connect(_install_in_worker, weak=False)
    _celery_signals.worker_process_shutdown.connect(_flush_in_worker, weak=False)
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
            log.warning("qjm metrics: Redis at %s did not answer: %s", mask_url(self.store.url), exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _families(self) -> Iterable[Any]:
        store = self.store
        summaries = store.set_summaries()

        sets = GaugeMetricFamily("qjm_job_sets", "Job sets kept in Redis, by state", labels=["state", "backend"])
        by_set = Counter((status, backend) for _, status, backend, _ in summaries)
        for bname in sorted({b for _, b in by_set}):
            for set_status in JobSetStatus:
                sets.add_metric([set_status.value, bname], by_set[set_status, bname])
        yield sets

        jobs = GaugeMetricFamily("qjm_jobs", "Jobs of unfinished job sets, by state", labels=["state", "backend"])
        running = [(sid, backend, n) for sid, status, backend, n in summaries if not status.final]
        by_job: Counter[tuple[JobStatus, str]] = Counter()
        for sid, backend, n in running:
            by_job.update((s, backend) for s in store.job_statuses(sid, n))
        for bname in sorted({b for _, b, _ in running}):
            for state in JobStatus:
                jobs.add_metric([state.value, bname], by_job[state, bname])
        yield jobs

        pending = GaugeMetricFamily("qjm_remote_jobs_pending",
                                    "Remote jobs holding one of the backend's pending-job slots", labels=["backend"])
        for backend, n in sorted(store.slots.live_leases().items()):
            pending.add_metric([backend], n)
        yield pending

        limit = GaugeMetricFamily("qjm_remote_jobs_pending_limit", "QJM_MAX_PENDING_JOBS: slots per IBM backend")
        limit.add_metric([], store.cfg.max_pending_jobs)
        yield limit

        yield from qpu_families(store)

        resent = CounterMetricFamily("qjm_reconciler_resent", "Steps the reconciler re-sent because their message "
                                     "was lost (see README, What qjm guarantees)", labels=["step"])
        counts = store.steps.resent_counts()
        for step in Step:
            resent.add_metric([step.value], counts.get(step.value, 0))
        yield resent

        for metric in (JOB_HISTOGRAM, SET_HISTOGRAM):
            hist = HistogramMetricFamily(f"qjm_{metric}", _HELP[metric], labels=["backend"])
            for backend, h in sorted(store.histograms.read(metric).items()):
                cumulative, buckets = 0, []
                for le in BUCKETS:
                    cumulative += int(h.get(repr(float(le)), 0))
                    buckets.append((repr(float(le)), cumulative))
                buckets.append(("+Inf", int(h.get("count", 0))))
                hist.add_metric([backend], buckets, float(h.get("sum", 0)))
            yield hist


def qpu_families(store: Store) -> Iterable[Any]:
    """QPU seconds charged per backend (ever) and what is left of the instance's monthly budget."""
    from ..store.usage import month
    from ..usage import instance_key

    instance = instance_key(store.cfg)
    total = CounterMetricFamily("qjm_qpu_seconds", "QPU seconds the service charged for qjm's jobs, by backend",
                                labels=["backend"])
    for backend, seconds in sorted(store.usage.totals(instance).items()):
        total.add_metric([backend], seconds)
    yield total
    budget = store.cfg.qpu_seconds_per_month
    if budget is not None:
        figures = store.usage.month_figures(instance, month())
        left = GaugeMetricFamily("qjm_qpu_budget_remaining_seconds",
                                 "QJM_QPU_SECONDS_PER_MONTH less what qjm's jobs consumed and reserved this UTC month")
        left.add_metric([], max(0.0, budget - figures.consumed - figures.reserved))
        yield left


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
