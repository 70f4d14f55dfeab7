"""``ManagedJobSet`` and ``ManagedJob``: live views of a job set stored in Redis.

They hold only ids and a store, so any process that reaches the same Redis sees the same set.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from qiskit.result import Result

from . import report as reporting
from .config import Settings
from .errors import ExperimentNotFoundError, JobSetFailedError, JobSetTimeoutError
from .status import JobSetStatus, JobStatus
from .store import ChunkRecord, JobSetRecord, Store

if TYPE_CHECKING:
    from .results import ManagedResults


@dataclass
class ManagedJob:
    """One job of a set: experiments ``start`` .. ``stop - 1``, as last read from Redis."""

    job_set_id: str
    index: int
    start: int
    stop: int
    _status: JobStatus
    remote_job_id: str | None
    _error: str | None
    _store: Store

    @classmethod
    def of(cls, store: Store, sid: str, ch: ChunkRecord) -> "ManagedJob":
        return cls(sid, ch.index, ch.start, ch.stop, ch.status, ch.remote_id, ch.error, store)

    def job_id(self) -> str | None:
        """The backend's id for this job (None until submitted)."""
        return self.remote_job_id

    def status(self) -> JobStatus:
        """The current status (read again from Redis)."""
        ch = self._store.chunk(self.job_set_id, self.index)
        self._status, self.remote_job_id, self._error = ch.status, ch.remote_id, ch.error
        return self._status

    def error_message(self) -> str | None:
        self.status()
        return self._error if self._status in (JobStatus.ERROR, JobStatus.CANCELLED) else None

    @property
    def experiments(self) -> range:
        return range(self.start, self.stop)

    def result(self) -> Result:
        """This job's experiments as one qiskit Result (raises unless the job is DONE)."""
        if self.status() is not JobStatus.DONE:
            raise JobSetFailedError(f"Job {self.index} of set {self.job_set_id} is {self._status.value}"
                                    + (f": {self._error}" if self._error else ""))
        records = self._store.chunk_result(self.job_set_id, self.index)
        if records is None:
            combined = self._store.combined_result(self.job_set_id) or {"results": []}
            records = combined["results"][self.start:self.stop]
        return Result.from_dict({"backend_name": "", "backend_version": "", "qobj_id": self.job_set_id,
                                 "job_id": self.remote_job_id or "", "success": True, "results": records})

    def __repr__(self) -> str:
        return (f"<ManagedJob {self.index} of {self.job_set_id}: experiments {self.start}-{self.stop - 1}, "
                f"{self._status.value}>")


class ManagedJobSet:
    """A set of jobs that together run the experiments given to ``JobManager.run()``."""

    def __init__(self, job_set_id: str, store: Store, cfg: Settings) -> None:
        self._id = job_set_id
        self._store = store
        self._cfg = cfg
        self._record: JobSetRecord = store.job_set(job_set_id)  # raises if it does not exist

    # ---------------------------------------------------------------- identity
    def job_set_id(self) -> str:
        return self._id

    def name(self) -> str | None:
        return self._record.name

    def tags(self) -> list[str]:
        return list(self._record.tags)

    def backend_name(self) -> str:
        return self._record.backend

    def record(self) -> JobSetRecord:
        """The stored state of the set, read again."""
        self._record = self._store.job_set(self._id)
        return self._record

    # ---------------------------------------------------------------- state
    def status(self) -> JobSetStatus:
        return self.record().status

    def statuses(self) -> list[JobStatus]:
        """One status per job, in job order."""
        return [ch.status for ch in self._store.chunks(self._id, self._record.n_chunks)]

    def jobs(self) -> list[ManagedJob]:
        return [ManagedJob.of(self._store, self._id, ch) for ch in self._store.chunks(self._id, self._record.n_chunks)]

    def job(self, experiment_index: int) -> tuple[ManagedJob, int]:
        """The job that runs a global experiment index, and the experiment's index within it."""
        n = self._record.n_experiments
        if isinstance(experiment_index, bool) or not isinstance(experiment_index, int) or not 0 <= experiment_index < n:
            raise ExperimentNotFoundError(f"Experiment index {experiment_index!r} is out of range: the set has {n}.")
        for k, (start, stop) in enumerate(self._record.chunk_bounds):
            if start <= experiment_index < stop:
                return ManagedJob.of(self._store, self._id, self._store.chunk(self._id, k)), experiment_index - start
        raise ExperimentNotFoundError(f"Experiment {experiment_index} is in no job")  # unreachable by construction

    def error_messages(self) -> str | None:
        """None when nothing failed; otherwise one line per failed or cancelled job."""
        bad = [ch for ch in self._store.chunks(self._id, self._record.n_chunks)
               if ch.status in (JobStatus.ERROR, JobStatus.CANCELLED)]
        if not bad:
            return None
        return "\n".join(reporting.error_line(ch) for ch in bad)

    def report(self, detailed: bool = True) -> str:
        return reporting.job_set_report(self.record(), self._store.chunks(self._id, self._record.n_chunks), detailed)

    # ---------------------------------------------------------------- waiting & results
    def wait(self, timeout: float | None = None, progress: bool = False) -> JobSetStatus:
        """Block until the set is final; raises ``JobSetTimeoutError`` after ``timeout`` seconds."""
        if progress:
            from .progress import watch

            return watch(self, timeout=timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        delay, started = 0.02, time.monotonic()
        with self._store.final_notice(self._id) as pause:
            while True:
                status = self.status()
                if status.final:
                    return status
                if deadline is not None and time.monotonic() >= deadline:
                    raise JobSetTimeoutError(
                        f"Job set {self._id} is still {status.value} after {timeout} s; statuses: "
                        + ", ".join(s.value for s in self.statuses()))
                # The set's end is announced; reading the status now and then is the safety net.
                pause(delay if deadline is None else min(delay, deadline - time.monotonic()))
                delay = min(delay * 1.5, 0.5 if time.monotonic() - started < 60 else 2.0)

    def results(self, timeout: float | None = None, partial: bool = False) -> "ManagedResults":
        """Wait for the set, then return its combined results.

        Without ``partial`` a set with failed or cancelled jobs raises ``JobSetFailedError``
        naming them; with it, the experiments that have results are returned.
        """
        from .results import ManagedResults

        self.wait(timeout)
        chunks = self._store.chunks(self._id, self._record.n_chunks)
        bad = [ch for ch in chunks if ch.status is not JobStatus.DONE]
        if bad and not partial:
            raise JobSetFailedError(
                f"{len(bad)} of {len(chunks)} jobs of set {self._id} did not complete; call "
                "results(partial=True) for the rest.\n" + "\n".join(reporting.error_line(ch) for ch in bad))
        combined = self._store.combined_result(self._id)
        if combined is None:  # pragma: no cover - a final set always has its combined result
            raise JobSetFailedError(f"Job set {self._id} is final but its combined result is missing.")
        errors = {k: reporting.error_line(ch) for ch in bad for k in range(ch.start, ch.stop)}
        return ManagedResults(self._id, combined, errors)

    # ---------------------------------------------------------------- control
    def cancel(self) -> list[JobStatus]:
        """Cancel every job not yet final; running remote jobs are cancelled by a worker."""
        from .dispatch import enqueue_cancel

        cancelled = self._store.request_cancel(self._id)
        if cancelled or self._record.session_id:
            enqueue_cancel(self._cfg, self._id)
        return self.statuses()

    def __repr__(self) -> str:
        return f"<ManagedJobSet {self._id} name={self._record.name!r} backend={self._record.backend}>"
