"""QPU time along a remote job's life: the hooks ``RemoteRunner`` calls, and the repairs.

* before a job takes a pending-job slot: a look at its budgets (``check``): a held job holds no slot;
* right before its post: the reservation (``reserve``): granted, or the job is HELD;
* a post that fails for good: the reservation goes back (``release``);
* each poll: the service's estimate is kept; an attempt that ended settles its charge (``polled``);
* a set's assembly: a reservation its jobs still hold (a job cancelled, or failed, before its
  end was polled) is settled with what the service charged, or given back (``leftovers``);
* the reconciler (``repair``): an instance's reservation whose attempt ended without settling it
  (a worker killed mid-way) is settled from the job's record; one whose set is gone is returned.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from ..engine.transitions import Transitions
from ..errors import JobSetNotFoundError
from ..executors import Executor, Poll
from ..store import JobRecord, JobSetRecord
from ..store.usage import month, parse_attempt_ref
from .budget import QpuTime

log = logging.getLogger(__name__)

#: A reservation this old whose attempt is no longer live is settled by the reconciler.
REPAIR_AFTER = 30.0


class QpuGate:
    def __init__(self, qpu: QpuTime, transitions: Transitions) -> None:
        self.qpu, self.transitions = qpu, transitions
        self.store = qpu.store

    def check(self, rec: JobSetRecord, job: JobRecord) -> None:
        """Raise ``Held`` when a budget or the service's limit holds the job back now."""
        why = self.qpu.held_by(rec, job)
        if why is not None:
            raise self.qpu.hold(rec, job, why, self.transitions)

    def reserve(self, rec: JobSetRecord, job: JobRecord) -> None:
        """Reserve the attempt's estimate right before its post; raise ``Held`` when refused."""
        why = self.qpu.reserve(rec, job)
        if why is not None:
            raise self.qpu.hold(rec, job, why, self.transitions)

    def release(self, rec: JobSetRecord, job: JobRecord) -> None:
        self.qpu.release(rec, job)

    def polled(self, rec: JobSetRecord, job: JobRecord, state: Poll) -> None:
        """Keep the service's estimate; settle an attempt that ended (before any move, so a
        delivery cut off here settles it again, at no cost, when its poll is re-sent)."""
        if state.service_estimate is not None and job.service_estimate is None:
            self.store.set_job_fields(rec.id, job.index, service_estimate=repr(state.service_estimate))
        if state.status.final:
            charge = state.charge if state.charge is not None else job.reserved
            self.qpu.settle(rec, job, job.attempt, charge)

    def leftovers(self, rec: JobSetRecord, executor_for: Callable[[str], Executor]) -> None:
        """Settle what the set's final jobs still hold (``rec.qpu_reserved`` says whether any)."""
        if rec.qpu_reserved <= 1e-9:
            return
        for job in self.store.jobs(rec.id, rec.n_jobs):
            if job.reserved_attempt is not None:
                self.qpu.settle(rec, job, job.reserved_attempt, self._charge(rec, job, executor_for))

    def _charge(self, rec: JobSetRecord, job: JobRecord, executor_for: Callable[[str], Executor]) -> float | None:
        """What the service charged for the job's reserved attempt (None: never posted)."""
        remote_id = job.remote_id if job.reserved_attempt == job.attempt else next(
            (p.get("remote_id") for p in job.history if p.get("attempt") == job.reserved_attempt), None)
        if not remote_id:
            return None
        try:
            charge = executor_for(rec.job_backend(job)).usage(str(remote_id))
        except Exception as exc:  # noqa: BLE001 - counted as its estimate rather than not at all
            log.warning("the usage of job %s could not be read (%s): its estimate is counted", remote_id, exc)
            charge = None
        return charge if charge is not None else job.reserved

    def repair(self, executor_for: Callable[[str], Executor], now: float | None = None) -> int:
        """Settle the instance's reservations (this month's and last month's) whose attempt is
        no longer live; returns how many."""
        now = time.time() if now is None else now
        fixed = 0
        for period in sorted({month(now), month(now - 32 * 24 * 3600)}):
            for ref, since in self.store.usage.reserved_since(self.qpu.instance, period).items():
                if now - since >= REPAIR_AFTER and self._repair(ref, period, executor_for):
                    fixed += 1
        return fixed

    def _repair(self, ref: str, period: str, executor_for: Callable[[str], Executor]) -> bool:
        sid, i, attempt = parse_attempt_ref(ref)
        try:
            rec, job = self.store.job_set(sid), self.store.job(sid, i)
        except JobSetNotFoundError:  # deleted or expired: nothing will settle it
            return self.store.usage.settle_in_instance(self.qpu.instance, period, ref, None, "")
        if attempt in job.charges:  # the set settled it; the instance did not get to
            return self.store.usage.settle_in_instance(self.qpu.instance, period, ref, job.charges[attempt],
                                                       rec.job_backend(job))
        if job.attempt == attempt and not job.status.final:
            return False  # live: its own poll settles it
        charge = self._charge(rec, job, executor_for) if job.reserved_attempt == attempt else None
        self.store.usage.settle_in_set(sid, i, attempt, charge, rec.job_backend(job))
        return self.store.usage.settle_in_instance(self.qpu.instance, period, ref, charge, rec.job_backend(job))
