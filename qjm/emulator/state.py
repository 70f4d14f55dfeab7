"""The emulated service's memory: jobs, batches, counters, and the worker that runs queued jobs.

Everything is guarded by one lock; request handlers only read and write records, while a single
runner thread simulates queued jobs one at a time as they arrive, and timers move each job
Queued -> Running -> Completed/Failed over its job_seconds,
so no HTTP request ever waits for a simulation.
"""

from __future__ import annotations

import datetime
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .devices import DeviceCatalog
from .programs import ProgramError, run_program

PENDING = ("Queued", "Running")
FINAL = ("Completed", "Failed", "Cancelled")


def _now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def new_id() -> str:
    """An id shaped like IBM's (20 lowercase alphanumerics, starting with a letter)."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "d" + "".join(secrets.choice(alphabet) for _ in range(19))


class ServiceError(Exception):
    """A refusal answered as the real service does: HTTP status plus ``{"errors": [...]}``."""

    def __init__(self, status: int, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code if code is not None else status


@dataclass
class Job:
    id: str
    seq: int
    instance: str
    backend: str
    program_id: str
    params: dict[str, Any]
    session_id: str | None
    tags: list[str]
    created: str
    ready_at: float
    fail: bool
    status: str = "Queued"
    simulated: bool = False
    reason: str | None = None
    reason_code: int | None = None
    result: str | None = None
    running: str | None = None
    finished: str | None = None

    def to_json(self) -> dict[str, Any]:
        state: dict[str, Any] = {"status": self.status}
        if self.reason:
            state["reason"] = self.reason
        if self.reason_code is not None:
            state["reason_code"] = self.reason_code
        return {
            "id": self.id,
            "backend": self.backend,
            "state": state,
            "status": self.status,
            "program": {"id": self.program_id},
            "created": self.created,
            "session_id": self.session_id,
            "tags": list(self.tags),
            "runtime": "",
            "private": False,
            "user_id": "emulator",
        }


@dataclass
class Batch:
    id: str
    instance: str
    backend: str
    mode: str
    max_ttl: int
    created: str
    accepting_jobs: bool = True
    state: str = "open"
    jobs: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "backend_name": self.backend,
            "mode": self.mode,
            "state": self.state,
            "accepting_jobs": self.accepting_jobs,
            "max_time": self.max_ttl,
            "interactive_timeout": 0,
            "started_at": self.created,
            "created_at": self.created,
            "instance": self.instance,
        }


class ServiceState:
    """All emulated state plus the runner thread; see ``Emulator`` for the knobs."""

    def __init__(
        self,
        job_seconds: float = 5.0,
        pending_limit: int | None = None,
        fail_every: int = 0,
        catalog: DeviceCatalog | None = None,
    ) -> None:
        self.job_seconds = max(0.0, float(job_seconds))
        self.pending_limit = pending_limit if pending_limit and pending_limit > 0 else None
        self.fail_every = max(0, int(fail_every or 0))
        self.catalog = catalog or DeviceCatalog()
        self.lock = threading.RLock()
        self.wakeup = threading.Condition(self.lock)
        self.jobs: dict[str, Job] = {}
        self.batches: dict[str, Batch] = {}
        self.counters: Counter[str] = Counter()
        self.posts_by_tag: Counter[str] = Counter()
        self.status_requests_by_job: Counter[str] = Counter()
        self.max_pending = 0
        self._stopping = False
        self._runner = threading.Thread(target=self._run_loop, name="qjm-emulator-runner", daemon=True)
        self._runner.start()

    # ----- jobs -----
    def pending_count(self, instance: str | None = None) -> int:
        with self.lock:
            return sum(
                1 for j in self.jobs.values() if j.status in PENDING and (instance is None or j.instance == instance)
            )

    def submit(self, instance: str, body: dict[str, Any]) -> Job:
        """Validate and queue a job, or raise ``ServiceError`` the way the service refuses it."""
        program_id = body.get("program_id")
        backend = body.get("backend")
        session_id = body.get("session_id")
        tags = body.get("tags") or []
        if not program_id or "params" not in body:
            raise ServiceError(400, "Request validation of body failed: program_id and params are required", 1208)
        with self.lock:
            batch = self.batches.get(session_id) if session_id else None
            if session_id and batch is None:
                raise ServiceError(404, f"Session {session_id} not found", 1217)
            if batch is not None:
                if not batch.accepting_jobs or batch.state == "closed":
                    raise ServiceError(400, f"Session {session_id} is closed and no longer accepting jobs", 1225)
                backend = backend or batch.backend
            if not backend:
                raise ServiceError(400, "A backend must be specified", 1208)
            if self.catalog.get(backend) is None:
                raise ServiceError(404, f"Backend {backend} not found", 1216)
            if self.pending_limit is not None and self.pending_count(instance) >= self.pending_limit:
                self.counters["refused_pending_limit"] += 1
                raise ServiceError(
                    400,
                    f"You have reached the limit of {self.pending_limit} pending jobs. Please wait for a job "
                    "to complete or cancel one before submitting anything new.",
                    3458,
                )
            self.counters["jobs_posted"] += 1
            seq = self.counters["jobs_posted"]
            job = Job(
                id=new_id(),
                seq=seq,
                instance=instance,
                backend=backend,
                program_id=program_id,
                params=body["params"],
                session_id=session_id,
                tags=list(tags),
                created=_now_iso(),
                ready_at=time.monotonic() + self.job_seconds,
                fail=bool(self.fail_every and seq % self.fail_every == 0),
            )
            self.jobs[job.id] = job
            if batch is not None:
                batch.jobs.append(job.id)
            for tag in job.tags:
                self.posts_by_tag[tag] += 1
            self.max_pending = max(self.max_pending, self.pending_count())
            self.wakeup.notify_all()
            return job

    def job(self, job_id: str) -> Job:
        with self.lock:
            job = self.jobs.get(job_id)
        if job is None:
            raise ServiceError(404, f"Job {job_id} not found", 1291)
        return job

    def list_jobs(self, query: dict[str, list[str]], instance: str | None) -> dict[str, Any]:
        """``GET /jobs``: newest first, filtered like the service (tags: all must match)."""

        def first(name: str) -> str | None:
            values = query.get(name)
            return values[0] if values else None

        tags = query.get("tags", [])
        pending = first("pending")
        with self.lock:
            jobs = list(self.jobs.values())
        selected = []
        for j in jobs:
            if instance and j.instance != instance:
                continue
            if tags and not all(t in j.tags for t in tags):
                continue
            if first("session_id") and j.session_id != first("session_id"):
                continue
            if first("backend") and j.backend != first("backend"):
                continue
            if first("program") and j.program_id != first("program"):
                continue
            if pending == "true" and j.status not in PENDING:
                continue
            if pending == "false" and j.status in PENDING:
                continue
            selected.append(j)
        selected.sort(key=lambda j: j.seq, reverse=first("sort") != "ASC")
        offset = int(first("offset") or 0)
        limit = int(first("limit") or 200)
        page = selected[offset : offset + limit]
        return {"jobs": [j.to_json() for j in page], "count": len(selected), "limit": limit, "offset": offset}

    def cancel(self, job_id: str) -> None:
        job = self.job(job_id)
        with self.lock:
            if job.status in FINAL:
                raise ServiceError(409, f"Job {job_id} is in a final state ({job.status}) and cannot be cancelled", 1212)
            self._cancel_locked(job, "Cancelled by user")

    def _cancel_locked(self, job: Job, reason: str) -> None:
        job.status = "Cancelled"
        job.reason = reason
        job.finished = _now_iso()
        self.counters["cancelled"] += 1
        self.wakeup.notify_all()

    def results(self, job_id: str) -> str:
        job = self.job(job_id)
        with self.lock:
            if job.status == "Completed" and job.result is not None:
                return job.result
            if job.status == "Failed":
                return job.reason or "Job failed"
            if job.status == "Cancelled":
                return "Job was cancelled"
        raise ServiceError(404, f"Results for job {job_id} are not available yet (status {job.status})", 1290)

    def metrics(self, job_id: str) -> dict[str, Any]:
        job = self.job(job_id)
        final = job.status in FINAL
        return {
            "timestamps": {"created": job.created, "running": job.running, "finished": job.finished},
            "bss": {"seconds": 0},
            "usage": {"quantum_seconds": 0, "seconds": 0, "status": "final" if final else "pending", "qpu_charge_time_seconds": 0},
            "qiskit_version": "emulated",
        }

    def set_tags(self, job_id: str, tags: list[str]) -> None:
        job = self.job(job_id)
        with self.lock:
            job.tags = list(tags)

    # ----- batches -----
    def create_batch(self, instance: str, body: dict[str, Any]) -> Batch:
        backend = body.get("backend")
        if not backend or self.catalog.get(backend) is None:
            raise ServiceError(404, f"Backend {backend} not found", 1216)
        batch = Batch(
            id=new_id(),
            instance=instance,
            backend=backend,
            mode=body.get("mode") or "batch",
            max_ttl=int(body.get("max_ttl") or 28800),
            created=_now_iso(),
        )
        with self.lock:
            self.batches[batch.id] = batch
            self.counters["sessions_created"] += 1
        return batch

    def batch(self, batch_id: str) -> Batch:
        with self.lock:
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
                batch.state = "closed"
                self.counters["sessions_cancelled"] += 1
                for job_id in batch.jobs:
                    job = self.jobs[job_id]
                    if job.status in PENDING:
                        self._cancel_locked(job, "Cancelled: the batch was cancelled")
            else:
                self.counters["sessions_closed"] += 1
                if not any(self.jobs[j].status in PENDING for j in batch.jobs):
                    batch.state = "closed"

    # ----- runner -----
    def _next_ready(self) -> tuple[Job | None, float | None]:
        """The oldest queued job. Its simulation runs now, inside its ``job_seconds``, so that
        the emulator's own compute time does not add to what a client measures."""
        for job in self.jobs.values():
            if job.status == "Queued" and not job.simulated:
                return job, None
        return None, None

    def _run_loop(self) -> None:
        while True:
            with self.lock:
                while True:
                    if self._stopping:
                        return
                    job, wait = self._next_ready()
                    if job is not None:
                        break
                    self.wakeup.wait(timeout=wait if wait is not None else 1.0)
                job.simulated = True
            self._execute(job)

    def _execute(self, job: Job) -> None:
        reason: str | None = None
        result: str | None = None
        if job.fail:
            time.sleep(min(0.05, self.job_seconds))
            reason = (
                f"Emulated failure: job #{job.seq} is a multiple of fail_every={self.fail_every} "
                "(qjm emulator fault injection)"
            )
        else:
            try:
                sim = self.catalog.simulator(job.backend)
                result = run_program(sim, job.program_id, job.params)
            except ProgramError as exc:
                reason = str(exc)
            except Exception as exc:  # a bad circuit must fail its job, not the emulator
                reason = f"{type(exc).__name__}: {exc}"
        # Seen from outside, a job is Queued for the first half of its time and Running for the
        # second; its result is published when the time is up, however early it was computed.
        now = time.monotonic()
        for at, step in ((job.ready_at - self.job_seconds / 2, self._start), (job.ready_at, self._finalize)):
            args = (job,) if step == self._start else (job, reason, result)
            if at > now:
                timer = threading.Timer(at - now, step, args)
                timer.daemon = True
                timer.start()
            else:
                step(*args)

    def _start(self, job: Job) -> None:
        with self.lock:
            if job.status == "Queued":
                job.status = "Running"
                job.running = _now_iso()

    def _finalize(self, job: Job, reason: str | None, result: str | None) -> None:
        self._start(job)
        with self.lock:
            if job.status != "Running":  # cancelled meanwhile: drop the result
                return
            job.finished = _now_iso()
            job.params = {}  # results are kept; inputs are no longer needed
            if reason is None:
                job.status = "Completed"
                job.result = result
                self.counters["completed"] += 1
            else:
                job.status = "Failed"
                job.reason = reason
                self.counters["failed"] += 1
            self._maybe_close_batch(job.session_id)

    def _maybe_close_batch(self, session_id: str | None) -> None:
        batch = self.batches.get(session_id) if session_id else None
        if batch is not None and not batch.accepting_jobs:
            if not any(self.jobs[j].status in PENDING for j in batch.jobs):
                batch.state = "closed"

    def stop(self) -> None:
        with self.lock:
            self._stopping = True
            self.wakeup.notify_all()
        self._runner.join(timeout=5)

    # ----- stats -----
    def stats(self) -> dict[str, Any]:
        with self.lock:
            by_status = Counter(j.status for j in self.jobs.values())
            return {
                "jobs_posted": self.counters["jobs_posted"],
                "max_pending": self.max_pending,
                "pending": by_status["Queued"] + by_status["Running"],
                "posts_by_tag": dict(self.posts_by_tag),
                "status_requests": sum(self.status_requests_by_job.values()),
                "status_requests_by_job": dict(self.status_requests_by_job),
                "cancelled": self.counters["cancelled"],
                "failed": self.counters["failed"],
                "completed": self.counters["completed"],
                "jobs_by_status": dict(by_status),
                "refused_pending_limit": self.counters["refused_pending_limit"],
                "throttled": self.counters["throttled"],
                "server_errors": self.counters["server_errors"],
                "requests": self.counters["requests"],
                "sessions_created": self.counters["sessions_created"],
                "sessions_closed": self.counters["sessions_closed"],
                "sessions_cancelled": self.counters["sessions_cancelled"],
                "job_seconds": self.job_seconds,
                "pending_limit": self.pending_limit,
                "fail_every": self.fail_every,
            }
