"""The emulated service's memory: jobs, batches, counters, and how they change.

Everything is guarded by one lock. Routes read and write records through these methods; the
``Runner`` simulates posted jobs and the ``queues.Clock`` moves each Queued -> Running ->
Completed/Failed by its device's queue, so no request ever waits for a simulation. Batch expiry
is checked whenever the state is touched (and by the clock), so an expired batch is seen the
moment its time is up.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, defaultdict
from typing import Any

from . import listing, stats, usage
from .charges import Tariff
from .devices import DeviceCatalog
from .faults import Dice, Faults
from .queues import DEVICE_STATES, MAINTENANCE, Clock, background_job, schedule
from .records import (
    ACTIVE,
    CANCELLED,
    CLOSED,
    COMPLETED,
    FAILED,
    FINAL,
    OPEN,
    PENDING,
    QUEUED,
    RUNNING,
    Batch,
    Job,
    ServiceError,
    check_tags,
    new_id,
    now_iso,
)
from .runner import Runner
from .simulation import ChildSimulator


class ServiceState:
    """All emulated state; ``faults`` says how the service misbehaves (see ``Faults``)."""

    def __init__(self, faults: Faults | None = None, catalog: DeviceCatalog | None = None,
                 simulate_apart: bool = False) -> None:
        """``simulate_apart``: jobs are simulated in a child process (``simulation``)."""
        self.faults = faults or Faults()
        self.catalog = catalog or DeviceCatalog()
        self.dice = Dice(self.faults.seed)
        self.lock = threading.RLock()
        self.wakeup = threading.Condition(self.lock)
        self.jobs: dict[str, Job] = {}
        self.batches: dict[str, Batch] = {}
        self.counters: Counter[str] = Counter()
        self.posts_by_tag: Counter[str] = Counter()
        self.status_requests_by_job: Counter[str] = Counter()
        self.failed_by_code: Counter[str] = Counter()
        self.posts_by_backend: Counter[str] = Counter()
        self.max_pending = 0
        self.max_pending_by_backend: Counter[str] = Counter()
        unknown = self.faults.unknown_devices(self.catalog.names())
        if unknown:
            raise ValueError(f"no such device: {', '.join(unknown)} (see GET /api/v1/backends for the names)")
        #: Devices not online (``queues.MAINTENANCE``); changed by ``POST /emulator/backends/<name>``.
        self.device_state: dict[str, str] = {name: MAINTENANCE for name in self.faults.offline}
        #: The instance's allocation in quantum seconds (None: unlimited); ``POST /emulator/usage``.
        self.usage_limit: float | None = self.faults.usage_limit
        #: Quantum seconds each instance's ended jobs cost (``usage.final_charge``).
        self.consumed: defaultdict[str, float] = defaultdict(float)
        self.tariff = Tariff(self.catalog)
        self.estimate_rng = random.Random(self.faults.seed)
        now = time.monotonic()
        for backend, count in self.faults.background:
            for _ in range(count):
                job = background_job(self.faults, backend, now)
                self.jobs[job.id] = job
        self.runner = Runner(self, ChildSimulator() if simulate_apart else None)
        self.clock = Clock(self)

    def count(self, name: str) -> None:
        with self.lock:
            self.counters[name] += 1

    # ----- jobs -----
    def pending_count(self, instance: str | None = None, backend: str | None = None) -> int:
        """This emulator's clients' pending jobs (never other users' background jobs)."""
        with self.lock:
            return sum(1 for j in self.jobs.values() if j.status in PENDING and not j.background
                       and (instance is None or j.instance == instance) and (backend is None or j.backend == backend))

    def set_device_state(self, name: str, status: str) -> None:
        """``POST /emulator/backends/<name>``: a device goes into maintenance or comes back online."""
        if self.catalog.get(name) is None:
            raise ServiceError(404, f"Backend {name} not found", 1216)
        if status not in DEVICE_STATES:
            raise ServiceError(400, f"status must be one of {', '.join(DEVICE_STATES)}, not {status!r}", 400)
        with self.lock:
            self.device_state[name] = status
            self.wakeup.notify_all()

    def add_background(self, name: str, count: int) -> None:
        """``POST /emulator/backends/<name>`` ``{"background": N}``: N more jobs of other users
        join the device's queue now, as they do on the service at any time."""
        if self.catalog.get(name) is None:
            raise ServiceError(404, f"Backend {name} not found", 1216)
        with self.lock:
            self.jobs.update((j.id, j) for j in (background_job(self.faults, name, time.monotonic()) for _ in range(count)))
            self.wakeup.notify_all()

    def usage_held(self, instance: str) -> bool:
        """Whether the instance's usage limit is reached (its queued jobs then wait; ``usage``)."""
        return usage.reached(self.consumed[instance], self.usage_limit)

    def set_usage_limit(self, limit: float | None) -> None:
        """``POST /emulator/usage``: a new allocation; raised above what was consumed, held jobs start."""
        if limit is not None and limit < 0:
            raise ServiceError(400, f"limit must be >= 0 or null, not {limit}", 400)
        with self.lock:
            self.usage_limit = limit
            self.wakeup.notify_all()

    def instance_usage(self, instance: str) -> dict[str, Any]:
        with self.lock:
            return usage.instance_usage(instance, self.consumed[instance], self.usage_limit)

    def _price(self, backend: str | None, program_id: str, params: Any) -> float:
        """The charge of a job about to be posted (``charges``): computed before the job exists
        (and outside the lock), so its first record already carries its estimate."""
        if not backend or self.catalog.get(backend) is None or not isinstance(params, dict):
            return 0.0
        return self.tariff.charge(backend, program_id, params)

    def _estimate(self, charge: float) -> float:
        """``estimated_running_time_seconds``: the charge, off by up to ``estimate_error`` (seeded,
        one draw per accepted post); the caller holds the lock."""
        error = self.faults.estimate_error
        return charge * (1.0 + self.estimate_rng.uniform(-error, error)) if error else charge

    def submit(self, instance: str, body: dict[str, Any]) -> Job:
        """Validate and queue a job, or raise ``ServiceError`` the way the service refuses it."""
        program_id = body.get("program_id")
        backend = body.get("backend")
        session_id = body.get("session_id")
        if not program_id or "params" not in body:
            raise ServiceError(400, "Request validation of body failed: program_id and params are required", 1208)
        tags = check_tags([str(t) for t in body.get("tags") or []])
        faults = self.faults
        with self.lock:
            hinted = self.batches.get(session_id) if session_id else None
        charge = self._price(backend or (hinted.backend if hinted else None), program_id, body["params"])
        with self.lock:
            self.expire_due()
            batch = self.batches.get(session_id) if session_id else None
            if session_id and batch is None:
                raise ServiceError(404, f"Session {session_id} not found", 1217)
            if batch is not None:
                if not batch.accepting_jobs or batch.state == CLOSED:
                    raise ServiceError(400, f"Session {session_id} is closed and no longer accepting jobs", 1225)
                backend = backend or batch.backend
            if not backend:
                raise ServiceError(400, "A backend must be specified", 1208)
            if self.catalog.get(backend) is None:
                raise ServiceError(404, f"Backend {backend} not found", 1216)
            limit = faults.pending_limit
            if limit is not None and self.pending_count(instance) >= limit:
                self.counters["refused_pending_limit"] += 1
                raise ServiceError(
                    400,
                    f"You have reached the limit of {limit} pending jobs. Please wait for a job "
                    "to complete or cancel one before submitting anything new.",
                    3458,
                )
            self.counters["jobs_posted"] += 1
            seq = self.counters["jobs_posted"]
            start_due, run_seconds = schedule(faults, time.monotonic())
            job = Job(
                id=new_id(), seq=seq, instance=instance, backend=backend, program_id=program_id,
                params=body["params"], session_id=session_id, tags=tags,
                created=now_iso(), start_due=start_due, run_seconds=run_seconds,
                fail=faults.failure(seq) if faults.fails(seq) else None, charge=charge, estimate=self._estimate(charge),
            )
            self.jobs[job.id] = job
            if batch is not None:
                batch.jobs.append(job.id)
            for tag in job.tags:
                self.posts_by_tag[tag] += 1
            self.posts_by_backend[backend] += 1
            self.max_pending = max(self.max_pending, self.pending_count())
            self.max_pending_by_backend[backend] = max(self.max_pending_by_backend[backend],
                                                       self.pending_count(backend=backend))
            self.wakeup.notify_all()
            return job

    def job(self, job_id: str) -> Job:
        with self.lock:
            self.expire_due()
            job = self.jobs.get(job_id)
        if job is None or job.background:  # other users' jobs are not this instance's to see
            raise ServiceError(404, f"Job {job_id} not found", 1291)
        return job

    def job_status(self, job_id: str) -> dict[str, Any]:
        """``GET /jobs/{id}``: the job's JSON, counted per job so tests can see how often it is polled."""
        job = self.job(job_id)
        with self.lock:
            self.status_requests_by_job[job_id] += 1
            return job.to_json()

    def list_jobs(self, query: dict[str, list[str]], instance: str | None) -> dict[str, Any]:
        """``GET /jobs`` (``listing.select``); other users' jobs are never listed."""
        with self.lock:
            self.expire_due()
            jobs = [j for j in self.jobs.values() if not j.background]
        return listing.select(jobs, query, instance)

    def cancel(self, job_id: str) -> None:
        job = self.job(job_id)
        with self.lock:
            if job.status in FINAL:
                raise ServiceError(409, f"Job {job_id} is in a final state ({job.status}) and cannot be cancelled", 1212)
            self._end(job, CANCELLED, "Cancelled by user")

    def delete(self, job_id: str) -> None:
        job = self.job(job_id)
        with self.lock:
            if job.status in PENDING:
                raise ServiceError(409, f"Job {job_id} is not in a final state", 1212)
            del self.jobs[job_id]

    def results(self, job_id: str) -> str:
        job = self.job(job_id)
        with self.lock:
            if job.status == COMPLETED and job.result is not None:
                return job.result
            if job.status == FAILED:
                return job.reason or "Job failed"
            if job.status == CANCELLED:
                return "Job was cancelled"
        raise ServiceError(404, f"Results for job {job_id} are not available yet (status {job.status})", 1290)

    def received(self, job_id: str) -> dict[str, Any]:
        """What the job asked for (empty until it has run; see ``Job.received``)."""
        job = self.job(job_id)
        with self.lock:
            return dict(job.received)

    def metrics(self, job_id: str) -> dict[str, Any]:
        """``GET /jobs/{id}/metrics`` (``usage.metrics``)."""
        job = self.job(job_id)
        with self.lock:
            return usage.metrics(job)

    def set_tags(self, job_id: str, tags: list[str]) -> None:
        """``PUT /jobs/{id}/tags``: the job's tags become exactly these (as on IBM Quantum, whose
        client sends the whole new list), within the service's limits."""
        job = self.job(job_id)
        check_tags(tags)
        with self.lock:
            job.tags = list(dict.fromkeys(tags))
            self.counters["retags"] += 1

    # ----- job transitions (called by the runner's timers) -----
    def start(self, job: Job) -> None:
        """Queued -> Running, unless its batch expired first; the first running job activates its batch."""
        with self.lock:
            self.expire_due()
            if job.status != QUEUED:
                return
            job.status = RUNNING
            job.running = now_iso()
            batch = self.batches.get(job.session_id) if job.session_id else None
            if batch is not None and batch.state == OPEN:
                batch.state = ACTIVE
                batch.activated = now_iso()
                if batch.ttl is not None:
                    batch.deadline = time.monotonic() + batch.ttl
                    self.wakeup.notify_all()

    def finish(self, job: Job, reason: str | None, reason_code: int | None, result: str | None) -> None:
        """Running -> Completed/Failed; a job cancelled or failed meanwhile keeps its end."""
        self.start(job)
        with self.lock:
            if job.status != RUNNING:
                return
            if reason is None:
                job.result = result
                self._end(job, COMPLETED)
            else:
                self._end(job, FAILED, reason, reason_code, program_failed=job.fail is None)

    def _end(self, job: Job, status: str, reason: str | None = None, reason_code: int | None = None,
             program_failed: bool = False) -> None:
        job.charged = usage.final_charge(job, status, job.status, time.monotonic(), program_failed)
        job.status = status
        job.params = {}  # results are kept; inputs are no longer needed
        job.reason = reason
        job.reason_code = reason_code
        job.finished = now_iso()
        if job.background:
            self.wakeup.notify_all()
            return
        self.counters[status.lower()] += 1
        self.consumed[job.instance] += job.charged
        if status == FAILED:
            self.failed_by_code[str(reason_code) if reason_code is not None else "none"] += 1
        self._close_if_drained(job.session_id)
        self.wakeup.notify_all()

    # ----- batches -----
    def create_batch(self, instance: str, body: dict[str, Any]) -> Batch:
        """A batch lives ``max_ttl`` (what the client asked for), at most ``Faults.batch_ttl``."""
        backend = body.get("backend")
        if not backend or self.catalog.get(backend) is None:
            raise ServiceError(404, f"Backend {backend} not found", 1216)
        limits = [float(t) for t in (body.get("max_ttl"), self.faults.batch_ttl) if t]
        batch = Batch(id=new_id(), instance=instance, backend=backend, mode=body.get("mode") or "batch",
                      ttl=min(limits) if limits else None, created=now_iso())
        with self.lock:
            self.batches[batch.id] = batch
            self.counters["sessions_created"] += 1
        return batch

    def batch(self, batch_id: str) -> Batch:
        with self.lock:
            self.expire_due()
            batch = self.batches.get(batch_id)
        if batch is None:
            raise ServiceError(404, f"Session {batch_id} not found", 1217)
        return batch

    def close_batch(self, batch_id: str, cancel: bool) -> None:
        """PATCH accepting_jobs=false (close: queued jobs still run) or DELETE .../close (cancel them)."""
        batch = self.batch(batch_id)
        with self.lock:
            batch.accepting_jobs = False
            if cancel:
                self.counters["sessions_cancelled"] += 1
                self._close(batch)
                for job_id in batch.jobs:
                    job = self.jobs[job_id]
                    if job.status in PENDING:
                        self._end(job, CANCELLED, "Cancelled: the batch was cancelled")
            else:
                self.counters["sessions_closed"] += 1
                self._close_if_drained(batch_id)

    def _close(self, batch: Batch) -> None:
        if batch.state != CLOSED:
            batch.state = CLOSED
            batch.closed = now_iso()
        batch.accepting_jobs = False
        batch.deadline = None

    def _close_if_drained(self, session_id: str | None) -> None:
        batch = self.batches.get(session_id) if session_id else None
        if batch is not None and not batch.accepting_jobs and not any(self.jobs[j].status in PENDING for j in batch.jobs):
            self._close(batch)

    def expire_due(self) -> float | None:
        """Close every batch whose lifetime is up: queued jobs fail, running ones go on.

        Returns the seconds until the next deadline (None: none), so the runner knows when to look.
        """
        now = time.monotonic()
        nearest: float | None = None
        with self.lock:
            for batch in self.batches.values():
                if batch.deadline is None:
                    continue
                if batch.deadline > now:
                    left = batch.deadline - now
                    nearest = left if nearest is None else min(nearest, left)
                    continue
                ttl = batch.ttl
                self._close(batch)
                batch.expired = True
                self.counters["sessions_expired"] += 1
                for job_id in batch.jobs:
                    job = self.jobs[job_id]
                    if job.status == QUEUED:
                        self._end(job, FAILED, f"The batch {batch.id} expired: its maximum time to live of {ttl:g} s "
                                               "was reached before this job started")
        return nearest

    # ----- stats -----
    def stats(self) -> dict[str, Any]:
        """``GET /emulator/stats`` (see ``stats``)."""
        with self.lock:
            self.expire_due()
            return stats.snapshot(self)

    def stop(self) -> None:
        self.clock.stop()
        self.runner.stop()
