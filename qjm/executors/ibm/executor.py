"""IBM Quantum executor: jobs posted with the real qiskit-ibm-runtime client, polled later.

A Celery worker must never block on a remote job, so ``submit`` only posts, ``poll`` only asks
for the status, and ``fetch`` reads the results of a job already DONE. Both executor primitives
(Sampler and Estimator) post through ``primitives``; their CPU-heavy preparation runs earlier, in
``prepare`` (the transpile step), and ``submit`` posts what it made. Transient refusals become
``RetryLater`` (see ``errors``) so the pipeline backs off instead of failing the job. Jobs are
tagged, which makes submits exactly-once across crashes: ``find_submitted`` looks the tag up.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import warnings
from typing import Any

from cachetools import LRUCache
from qiskit.primitives import PrimitiveResult
from qiskit.providers import BackendV2

from ...config import Settings
from ...config import settings as current_settings
from ...errors import ExecutorError, RetryLater
from ...lifecycle import JobStatus, remote_status
from ..base import Executor, JobWork, Poll, Submission, SubmitContext
from . import batches, client_patches, primitives
from .account import Account, backend_for, service_for
from .errors import DELAYS, RetryDelays, backend_not_found, call, classify, ended_with_its_batch

log = logging.getLogger(__name__)

#: Job objects kept per executor (a job's status, once final, is answered without a request).
JOB_CACHE_SIZE = 256
#: The Runtime program of every job qjm posts (the client-side executor primitives).
PROGRAM = "executor"
#: Tries of a cancel refused with 429 before giving up on it.
CANCEL_ATTEMPTS = 3
#: How many of a tag's jobs ``find_submitted`` looks at (newest first).
FIND_LIMIT = 20


def _silence_client_deprecations() -> None:
    """The client's deprecation chatter is not actionable inside a worker: ignore it for warnings
    attributed to the client or to this package (a process-wide filter, set once, is
    thread-safe, unlike ``catch_warnings`` around each call)."""
    for category in (DeprecationWarning, PendingDeprecationWarning):
        warnings.filterwarnings("ignore", category=category, module=r"qiskit_ibm_runtime(\.|$)")
        warnings.filterwarnings("ignore", category=category, module=r"qjm\.executors\.ibm(\.|$)")


_silence_client_deprecations()


def job_status(raw: Any, what: str = "a job") -> JobStatus:
    """The client's status word in qjm's words; a word qjm does not know is an error, not a guess."""
    status = remote_status(raw)
    if status is None:
        raise ExecutorError(f"unknown job status {raw!r} from IBM Quantum for {what}")
    return status


def status_of(job: Any, what: str, delays: RetryDelays = DELAYS) -> JobStatus:
    """Ask the service for a job's status (one request)."""
    return job_status(call(job.status, what, delays), what)


class IBMQuantumExecutor(Executor):
    """One IBM Quantum backend (or an emulated one), driven through the executor primitives."""

    local = False
    delays: RetryDelays = DELAYS
    batch_max_ttl: int = batches.BATCH_MAX_TTL

    def __init__(self, name: str, settings: Settings | None = None) -> None:
        super().__init__(name)
        self.account = Account.from_settings(settings or current_settings())
        self._jobs: LRUCache[str, Any] = LRUCache(maxsize=JOB_CACHE_SIZE)
        self._jobs_lock = threading.Lock()

    # ----- shared client objects -----
    @property
    def service(self) -> Any:
        return service_for(self.account)

    def backend(self) -> BackendV2:
        return backend_for(self.account, self.name)

    def _job(self, remote_id: str) -> Any:
        """The job's client object: the one this process posted or used last, or one built
        without a request (``client_patches.job_handle``), so a job polled by another worker
        process than the one that posted it costs no extra look-up."""
        with self._jobs_lock:
            job = self._jobs.get(remote_id)
        if job is not None:
            return job
        job = call(lambda: client_patches.job_handle(self.service, remote_id, self.name, PROGRAM),
                   f"look-up of job {remote_id}", self.delays)
        self._remember(job)
        return job

    def _remember(self, job: Any) -> None:
        with self._jobs_lock:
            self._jobs[job.job_id()] = job

    def _forget(self, remote_id: str) -> None:
        with self._jobs_lock:
            self._jobs.pop(remote_id, None)

    # ----- batches -----
    def open_batch(self, job_set_id: str) -> str | None:
        return batches.open_batch(self.account, self.backend(), job_set_id, self.batch_max_ttl)

    def close_batch(self, batch_id: str, cancel: bool = False) -> None:
        batches.close(self.account, self.backend(), batch_id, cancel)

    # ----- jobs -----
    def prepare(self, work: JobWork) -> str | None:
        """The primitive's client-side preparation of the job, as JSON text, when it is CPU work
        (see ``primitives.worth_preparing``); ``submit`` then posts it as it is."""
        if not primitives.worth_preparing(work):
            return None
        return primitives.prepare(work, self.backend()).to_json()

    def executions(self, work: JobWork) -> list[tuple[Any, int]]:
        """A prepared job is counted from its program, as it will be posted (``primitives.executions``)."""
        prepared = primitives.Prepared.from_json(work.prepared) if work.prepared is not None else None
        return primitives.executions(prepared) if prepared is not None else super().executions(work)

    def ready_to_post(self, work: JobWork) -> JobWork:
        """The job with its program prepared (what ``submit`` would otherwise do first)."""
        if work.prepared is not None:
            return work
        return dataclasses.replace(work, prepared=primitives.prepare(work, self.backend()).to_json())

    def submit(self, work: JobWork, ctx: SubmitContext) -> Submission:
        """Post the pubs as one executor-primitive job, in the set's batch, with the context's
        tags: the program ``prepare`` made if there is one, else prepared here (cheap then)."""
        from qiskit.providers.exceptions import QiskitBackendNotFoundError

        prepared = primitives.Prepared.from_json(work.prepared) if work.prepared is not None else None
        prepared = prepared or primitives.prepare(work, self.backend())
        mode = batches.attach(self.account, ctx.batch_id, self.backend()) if ctx.batch_id else self.backend()
        what = f"job submission ({ctx.job_set_id} job {ctx.job} attempt {ctx.attempt})"
        try:
            with client_patches.fenced(ctx.fence):
                job = call(lambda: primitives.post(mode, prepared, ctx.tags), what, self.delays)
        except ExecutorError as exc:
            if isinstance(exc.__cause__, QiskitBackendNotFoundError):
                raise backend_not_found(self.service, self.name, exc.__cause__, what, self.delays) from exc
            raise
        self._remember(job)
        return Submission(remote_id=job.job_id())

    def find_submitted(self, ctx: SubmitContext) -> str | None:
        """The newest live-or-done job carrying the context's last tag (the job-and-attempt tag);
        failed or cancelled ones do not count, so their job may be posted again."""
        if not ctx.tags:
            return None
        tag = ctx.tags[-1]
        jobs = call(lambda: self.service.jobs(job_tags=[tag], limit=FIND_LIMIT), f"job look-up by tag {tag}", self.delays)
        for job in jobs:  # newest first
            if status_of(job, f"status of job {job.job_id()}", self.delays) in (JobStatus.ERROR, JobStatus.CANCELLED):
                continue
            self._remember(job)
            return job.job_id()
        return None

    def poll(self, remote_id: str) -> Poll:
        """One status request; a final job's charge comes from the same answer when the service
        gives it there (its ``usage``), else from one metrics request."""
        job = client_patches.keep_status_answers(self._job(remote_id))
        status = status_of(job, f"status of job {remote_id}", self.delays)
        error = None
        if status is JobStatus.ERROR:
            error = call(job.error_message, f"error message of job {remote_id}", self.delays) or "job failed"
        answer = client_patches.last_status_answer(job)
        estimate = answer.get("estimate")
        charge = None
        if status.final:
            seconds = (answer.get("usage") or {}).get("seconds")
            charge = float(seconds) if seconds is not None else self.usage(remote_id)
        return Poll(status, error, repost=ended_with_its_batch(error), charge=charge,
                    service_estimate=float(estimate) if estimate is not None else None)

    def usage(self, remote_id: str) -> float | None:
        """``job.usage()``: the job's ``qpu_charge_time_seconds`` (one metrics request)."""
        seconds = call(self._job(remote_id).usage, f"usage of job {remote_id}", self.delays)
        return None if seconds is None else float(seconds)

    def instance_usage(self) -> dict[str, Any] | None:
        """``service.usage()``: consumed, limit, remaining, ``usage_limit_reached``."""
        return dict(call(self.service.usage, "instance usage", self.delays))

    def fetch(self, remote_id: str, work: JobWork) -> PrimitiveResult:
        """The primitive's ``PrimitiveResult``, post-processed by the client (for the Estimator
        that is where mitigation is applied), one pub result per pub."""
        job = self._job(remote_id)
        status = status_of(job, f"status of job {remote_id}", self.delays)
        if status is not JobStatus.DONE:
            if not status.final:
                raise RetryLater(f"job {remote_id} is {status.value}, not DONE yet", self.delays.throttled)
            raise ExecutorError(f"job {remote_id} ended {status.value}; there are no results to fetch")
        result = call(job.result, f"results of job {remote_id}", self.delays)
        if not isinstance(result, PrimitiveResult):
            raise ExecutorError(f"job {remote_id} returned a {type(result).__name__}, not a PrimitiveResult")
        if len(result) != len(work.pubs):
            raise ExecutorError(f"job {remote_id} returned {len(result)} results for {len(work.pubs)} pubs")
        self._forget(remote_id)
        return result

    def update_tags(self, remote_id: str, tags: list[str]) -> None:
        """``PUT /jobs/{id}/tags`` through the client: the job's tags become exactly ``tags``."""
        job = self._job(remote_id)
        call(lambda: job.update_tags(list(tags)), f"retagging job {remote_id}", self.delays)

    def cancel(self, remote_id: str) -> None:
        """Best effort; a job already final (409) or unknown is fine. Retries 429s briefly."""
        from qiskit_ibm_runtime.exceptions import RuntimeInvalidStateError

        for attempt in range(1, CANCEL_ATTEMPTS + 1):
            try:
                self._job(remote_id).cancel()
                return
            except RuntimeInvalidStateError:  # already DONE/ERROR/CANCELLED
                return
            except ExecutorError as exc:  # unknown job: nothing to stop
                log.info("not cancelling %s: %s", remote_id, exc)
                return
            except RetryLater as exc:
                err: Exception = exc
            except Exception as exc:
                err = classify(exc, f"cancelling job {remote_id}", self.delays)
                if not isinstance(err, RetryLater):
                    log.warning("cancelling %s failed: %s", remote_id, err)
                    return
            if attempt == CANCEL_ATTEMPTS:
                raise err
            time.sleep(min(getattr(err, "delay", 1.0), self.delays.throttled))
