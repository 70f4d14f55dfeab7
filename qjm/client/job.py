"""``ManagedJob``: one job of a set, a live view of its record in Redis.

It holds ids and a store, so any process that reaches the same Redis sees the same job; its
status is read again whenever it is asked for.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone

from qiskit.primitives import PrimitiveResult
from qiskit.result import Result

from ..backends import QueueInfo, queue_info
from ..engine.dispatch import enqueue_cancel
from ..engine.transitions import Transitions
from ..errors import JobSetFailedError
from ..executors import RunOptions, is_local
from ..formats import codec, outputs
from ..lifecycle import JobStatus
from ..store import JobRecord, Store


@dataclass(eq=False)
class ManagedJob:
    """One job of a set: experiments ``start`` .. ``stop - 1``, as last read from Redis. Two
    views of one job (same set, same index) are equal, whenever each was read."""

    job_set_id: str
    index: int
    start: int
    stop: int
    _status: JobStatus
    remote_job_id: str | None
    _error: str | None
    _store: Store

    @classmethod
    def of(cls, store: Store, sid: str, job: JobRecord) -> ManagedJob:
        return cls(sid, job.index, job.start, job.stop, job.status, job.remote_id, job.error, store)

    def job_id(self) -> str | None:
        """The backend's id for this job (None until submitted)."""
        return self.remote_job_id

    def status(self) -> JobStatus:
        """The current status (read again from Redis)."""
        job = self._store.job(self.job_set_id, self.index)
        self._status, self.remote_job_id, self._error = job.status, job.remote_id, job.error
        return self._status

    def error_message(self) -> str | None:
        """Why the job ended ERROR or CANCELLED (None otherwise)."""
        self.status()
        return self._error if self._status in (JobStatus.ERROR, JobStatus.CANCELLED) else None

    @property
    def experiments(self) -> range:
        """The set's experiment indexes this job holds (``start``..``stop``, consecutive)."""
        return range(self.start, self.stop)

    @property
    def start_index(self) -> int:
        """The old Job Manager's name of ``start``: the set's index of the job's first experiment."""
        return self.start

    @property
    def end_index(self) -> int:
        """The old Job Manager's name for the set's index of the job's last experiment (inclusive:
        ``stop - 1``)."""
        return self.stop - 1

    def cancel(self) -> bool:
        """Cancel this job alone, whether it waits or runs; the rest of its set goes on. Its
        experiments then have no result (``ResultNotAvailableError`` names the job and why), and
        the set ends ERROR with this job CANCELLED. A worker cancels it on the service when it
        was posted. Returns whether this call cancelled it (False when it was final already)."""
        moved = Transitions(self._store).cancel_job(self.job_set_id, self.index)
        if moved:
            enqueue_cancel(self._store.cfg, self.job_set_id, jobs=[self.index])
        self.status()
        return moved

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ManagedJob):
            return NotImplemented
        return (self.job_set_id, self.index) == (other.job_set_id, other.index)

    def __hash__(self) -> int:
        return hash((self.job_set_id, self.index))

    def creation_date(self) -> datetime:
        """When the job was created: with its set, by ``run()`` (UTC)."""
        return _utc(self._store.job_set(self.job_set_id).created)

    def attempt(self) -> int:
        """1 for the first run of the job; each retry, repost or re-run is one more."""
        return self._store.job(self.job_set_id, self.index).attempt

    def history(self) -> list[dict[str, object]]:
        """The job's earlier attempts, oldest first: ``attempt``, ``remote_id``, ``error``,
        ``ended`` (epoch seconds) and ``kind`` (what started the next one: repost, retry, rerun)."""
        return [{k: v for k, v in past.items() if k != "times"}
                for past in self._store.job(self.job_set_id, self.index).history]

    def time_per_step(self) -> dict[int, dict[str, datetime]]:
        """For each attempt (1, 2, ...), when the job reached each status it passed: QUEUED,
        TRANSPILING, TRANSPILED, SUBMITTED (posted), RUNNING, DONE/ERROR/CANCELLED (UTC)."""
        job = self._store.job(self.job_set_id, self.index)
        created = self._store.job_set(self.job_set_id).created
        out: dict[int, dict[str, datetime]] = {}
        attempts = [(int(p["attempt"]), p.get("times") or {}) for p in job.history] + [(job.attempt, job.times)]
        for n, times in attempts:
            steps = dict(times) if n > 1 else {"QUEUED": created, **times}
            order = {s.value: k for k, s in enumerate(JobStatus)}
            out[n] = {s: _utc(t) for s, t in sorted(steps.items(), key=lambda kv: (kv[1], order.get(kv[0], 99)))}
        return out

    def result(self) -> Result | PrimitiveResult:
        """This job's output (raises unless the job is DONE): its experiments as one qiskit
        Result, or for a set given as pubs the job's own PrimitiveResult (its pieces' results)."""
        if self.status() is not JobStatus.DONE:
            raise JobSetFailedError(f"Job {self.index} of set {self.job_set_id} is {self._status.value}"
                                    + (f": {self._error}" if self._error else ""))
        raw = self._store.outputs.read(self.job_set_id, self.index)
        if raw is not None and RunOptions.from_json(self._store.job_set(self.job_set_id).options).pubs:
            return outputs.decode_result(raw)
        records = codec.loads(raw)
        if records is None:
            combined = self._store.outputs.legacy_combined(self.job_set_id) or {"results": []}
            records = combined["results"][self.start:self.stop]
        return Result.from_dict({"backend_name": "", "backend_version": "", "qobj_id": self.job_set_id,
                                 "job_id": self.remote_job_id or "", "success": True, "results": records})

    def backend_name(self) -> str | None:
        """The backend the job runs on (for a set over several, where it was placed; None until then)."""
        rec, job = self._store.job_set(self.job_set_id), self._store.job(self.job_set_id, self.index)
        return job.backend if rec.fans_out else rec.backend

    def queue_info(self) -> QueueInfo | None:
        """For a remote job queued on its device: how many jobs are ahead of it and when it should
        start. qjm's estimate (``qjm.backends.queue``), from the device's queue when the job was
        posted and its recent pace; None for local jobs and jobs not waiting on the service."""
        rec, job = self._store.job_set(self.job_set_id), self._store.job(self.job_set_id, self.index)
        if is_local(rec.backend):
            return None
        return queue_info(self._store, rec.job_backend(job), job, job.ahead_at_post, time.time())

    def usage(self) -> float | None:
        """QPU seconds the service charged for the job (over its attempts), once it is final;
        None before, and for local jobs."""
        job = self._store.job(self.job_set_id, self.index)
        if not job.status.final or is_local(self._store.job_set(self.job_set_id).backend):
            return None
        return job.charged if job.charged is not None else (0.0 if job.remote_id or job.history else None)

    def usage_estimate(self) -> float | None:
        """The job's QPU seconds as estimated: qjm's before it is posted (from its transpiled
        circuits, ``qjm.usage.estimate``), the service's once posted and polled; None for local
        jobs and before the job is transpiled."""
        job = self._store.job(self.job_set_id, self.index)
        if job.remote_id and job.service_estimate is not None:
            return job.service_estimate
        return job.estimate

    def __repr__(self) -> str:
        return (f"<ManagedJob {self.index} of {self.job_set_id}: experiments {self.start}-{self.stop - 1}, "
                f"{self._status.value}>")


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)
