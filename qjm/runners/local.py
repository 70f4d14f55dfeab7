"""Local jobs (fake devices, Aer): simulated inside the worker's submit step, on the CPU queue.

A local job cannot be looked up from another process, so it has no poll step: its result is
stored together with its DONE status, in one transition.
"""

from __future__ import annotations

import time

from .. import outputs, retries
from ..executors import Executor, SubmitContext
from ..lifecycle import JobStatus, Step
from ..store import JobRecord, JobSetRecord
from .base import JobRunner


class LocalRunner(JobRunner):
    def _submit(self, rec: JobSetRecord, job: JobRecord, executor: Executor) -> None:
        work = self.load_work(rec, job.index)
        if work is None:
            return
        t = self.transitions
        t.advance(rec.id, job.index, JobStatus.RUNNING)
        try:
            sub = executor.submit(work, SubmitContext(rec.id, job.index, attempt=job.attempt))
        except Exception as exc:  # noqa: BLE001 - a failed simulation fails this job only
            t.fail(rec.id, job.index, "simulation", exc)
            return
        if sub.output is None:
            t.advance(rec.id, job.index, JobStatus.ERROR, error=f"{executor.name} returned no results")
            return
        t.advance(rec.id, job.index, JobStatus.DONE, result=outputs.encode(sub.output, work), remote_id=sub.remote_id,
                  finished_at=repr(time.time()))

    def abandon(self, rec: JobSetRecord, job: JobRecord, why: str) -> bool:
        """A worker lost mid-simulation is transient (``qjm.retries``): with retries left, the
        job starts a new attempt from its transpiled circuits, and the reconciler sends its
        submit step again; otherwise it fails."""
        if job.step is not Step.SUBMIT or not retries.may_retry(rec.max_retries, job.history, why, local=True):
            return super().abandon(rec, job, why)
        if self.transitions.new_attempt(rec.id, job.index, job.attempt, why, kind=retries.RETRY):
            self.store.set_job_fields(rec.id, job.index, resends=0)
        return True

    def poll(self, rec: JobSetRecord, i: int) -> float | None:
        """Local jobs end inside submit; one that is not final here never recorded an outcome."""
        if not self.store.job(rec.id, i).status.final:
            self.transitions.advance(rec.id, i, JobStatus.ERROR, error="local job ended without a result")
        return None
