"""Local jobs (fake devices, Aer): simulated inside the worker's submit step, on the CPU queue.

A local job cannot be looked up from another process, so it has no poll step: its result is
stored together with its DONE status, in one transition.
"""

from __future__ import annotations

import time

from qiskit import QuantumCircuit

from ...executors import Executor, JobWork, SubmitContext
from ...executors.local import local_job_id
from ...formats import outputs
from ...lifecycle import JobStatus, Step
from ...store import JobRecord, JobSetRecord
from .. import retries
from .base import JobRunner, work_from


class LocalRunner(JobRunner):
    def _submit(self, rec: JobSetRecord, job: JobRecord, executor: Executor) -> None:
        work = self.load_work(rec, job.index)
        if work is not None:
            self._run(rec, job.index, job.attempt, work, executor)

    def run(self, rec: JobSetRecord, job: JobRecord, isa: list[QuantumCircuit]) -> None:
        """Simulate a job its transpile task has just transpiled (``Pipeline.transpile``): the
        circuits are at hand, so they are neither stored nor read back."""
        try:
            executor = self.executor_for(rec.job_backend(job))
            work = work_from(self.store, rec, job.index, isa)
        except Exception as exc:  # noqa: BLE001 - an unusable backend fails this job only
            self.transitions.fail(rec.id, job.index, "submission", exc)
            return
        self._run(rec, job.index, job.attempt, work, executor)

    def _run(self, rec: JobSetRecord, i: int, attempt: int, work: JobWork, executor: Executor) -> None:
        t = self.transitions
        if t.advance(rec.id, i, JobStatus.RUNNING, remote_id=local_job_id(rec.id, i)).final:
            return  # cancelled before it ran (``ManagedJob.cancel``)
        try:
            sub = executor.submit(work, SubmitContext(rec.id, i, attempt=attempt))
        except Exception as exc:  # noqa: BLE001 - a failed simulation fails this job only
            t.fail(rec.id, i, "simulation", exc)
            return
        if sub.output is None:
            t.advance(rec.id, i, JobStatus.ERROR, error=f"{executor.name} returned no results")
            return
        t.advance(rec.id, i, JobStatus.DONE, result=outputs.encode(sub.output, work), remote_id=sub.remote_id,
                  finished_at=repr(time.time()))

    def abandon(self, rec: JobSetRecord, job: JobRecord, why: str) -> bool:
        """A worker lost mid-simulation is transient (``qjm.engine.retries``): with retries left, the
        job starts a new attempt from the start (its transpile task also simulates it, see
        ``Pipeline._transpile``), and the reconciler sends that step again; otherwise it fails."""
        if job.step is not Step.TRANSPILE or not retries.may_retry(rec.max_retries, job.history, why, local=True):
            return super().abandon(rec, job, why)
        if self.transitions.new_attempt(rec.id, job.index, job.attempt, why, kind=retries.RETRY,
                                        start=JobStatus.QUEUED):
            self.store.set_job_fields(rec.id, job.index, resends=0)
        return True

    def poll(self, rec: JobSetRecord, i: int) -> float | None:
        """Local jobs end inside submit; one that is not final here never recorded an outcome."""
        if not self.store.job(rec.id, i).status.final:
            self.transitions.advance(rec.id, i, JobStatus.ERROR, error="local job ended without a result")
        return None
