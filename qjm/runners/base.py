"""What every job runner shares: the guard before a job runs, loading its work, transitions."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

from .. import codec
from ..config import Settings
from ..executors import Executor, JobWork, RunOptions
from ..lifecycle import JobStatus
from ..store import JobRecord, JobSetRecord, Store
from ..transitions import Transitions

ExecutorFor = Callable[[str], Executor]


class JobRunner(ABC):
    def __init__(self, store: Store, cfg: Settings, executor_for: ExecutorFor) -> None:
        self.store = store
        self.cfg = cfg
        self.executor_for = executor_for
        self.transitions = Transitions(store)

    def submit(self, rec: JobSetRecord, i: int) -> None:
        """Run or post job ``i`` unless an earlier delivery did, the job is final, or the set was
        cancelled. Raises ``RetryLater`` when the step should run again later."""
        job = self.store.job(rec.id, i)
        if job.status.final or job.remote_id:
            return
        if rec.cancel_requested:
            self.transitions.advance(rec.id, i, JobStatus.CANCELLED)
            return
        try:
            executor = self.executor_for(rec.backend)
        except Exception as exc:  # noqa: BLE001 - an unusable backend fails this job only
            self.transitions.fail(rec.id, i, "submission", exc)
            return
        self._submit(rec, job, executor)

    @abstractmethod
    def _submit(self, rec: JobSetRecord, job: JobRecord, executor: Executor) -> None:
        """Run or post a job that passed the guard."""

    @abstractmethod
    def poll(self, rec: JobSetRecord, i: int) -> float | None:
        """Check the job once; seconds until the next check, or None when it is final."""

    def waits_inline(self, rec: JobSetRecord, delay: float) -> bool:
        """Whether the poll task waits ``delay`` before its next check itself (``qjm.polling``)."""
        return False

    def close_batch(self, rec: JobSetRecord) -> None:
        """Close the set's batch on its backend, if it has one."""

    def cancel_set(self, rec: JobSetRecord) -> None:
        """Stop what the backend still runs of a cancelled set."""

    def abandon(self, rec: JobSetRecord, job: JobRecord, why: str) -> None:
        """Give up on a job whose steps keep getting lost: it fails, so its set can end."""
        self.transitions.advance(rec.id, job.index, JobStatus.ERROR, error=why)

    def load_work(self, rec: JobSetRecord, i: int, quiet: bool = False) -> JobWork | None:
        """The job's transpiled pubs and the set's options; None (and, unless ``quiet``, the job
        failed) if unusable."""
        blob = self.store.isa_qpy(rec.id, i)
        if blob is None:
            if not quiet:
                self.transitions.advance(rec.id, i, JobStatus.ERROR,
                                         error="no transpiled circuits were stored for this job")
            return None
        try:
            return JobWork.from_circuits(codec.circuits_from_qpy(blob), RunOptions.from_json(rec.options))
        except Exception as exc:  # noqa: BLE001
            if quiet:
                raise
            self.transitions.fail(rec.id, i, "submission", exc)
            return None
