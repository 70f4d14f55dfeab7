"""Whether a remote job may be posted now, as far as QPU time goes, and what its post costs.

Three things hold a job back (it then waits unposted, HELD, saying which):

* its set's budget (``run(max_qpu_seconds=...)``): consumed + reserved + its estimate must stay
  within it;
* its instance's budget for the UTC month (``QJM_QPU_SECONDS_PER_MONTH``), over every set, worker
  and host, likewise;
* the service's own limit: ``service.usage()`` says ``usage_limit_reached`` (``instance``).

The check that counts is made right before the post (``reserve``): one script on the set's
slot, then one on the instance's (``qjm.store.usage``). A cheaper look (``held_by``) before a
job takes a pending-job slot keeps a held job from holding one. Once the attempt ends, its
reservations turn into its charge (``settle``); an attempt that never ran gives them back
(``release``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..config import Settings
from ..engine.transitions import Transitions
from ..errors import RetryLater
from ..lifecycle import JobStatus
from ..store import JobRecord, JobSetRecord, Store
from ..store.usage import attempt_ref, month
from .estimate import JOB_OVERHEAD_SECONDS
from .instance import ServiceFigures, instance_key

log = logging.getLogger(__name__)

#: Seconds between a held job's looks at its budget (a budget raised by ``update_budget`` also
#: sends its held jobs at once).
HELD_RETRY = 5.0
#: ... and at the service's limit, which is asked at most once per ``QJM_SERVICE_USAGE_SECONDS``.
SERVICE_HELD_RETRY = 15.0

SET_BUDGET = "the set's budget"
INSTANCE_BUDGET = "the instance's monthly budget (QJM_QPU_SECONDS_PER_MONTH)"
SERVICE_LIMIT = "the service's usage limit (the instance is out of QPU time)"


class Held(RetryLater):
    """The job waits unposted for QPU time; ``why`` names the budget or limit."""

    def __init__(self, why: str, delay: float) -> None:
        super().__init__(f"held by {why}", delay)
        self.why = why


@dataclass(frozen=True)
class Need:
    """What a job attempt needs: its estimate, in seconds."""

    seconds: float


def need(job: JobRecord) -> Need:
    """A job's estimate (the per-job overhead when it has none: a set from before estimates)."""
    return Need(job.estimate if job.estimate is not None else JOB_OVERHEAD_SECONDS)


def over(used: float, seconds: float, budget: float | None) -> bool:
    return budget is not None and used + seconds > budget + 1e-9


class QpuTime:
    def __init__(self, store: Store, cfg: Settings, service: ServiceFigures | None = None) -> None:
        self.store, self.cfg = store, cfg
        self.instance = instance_key(cfg)
        self.service = service or ServiceFigures(store, cfg)

    def held_by(self, rec: JobSetRecord, job: JobRecord) -> str | None:
        """Why the job may not be posted now, or None: a look, not a reservation."""
        seconds = need(job).seconds
        if job.reserved_attempt == job.attempt:
            return None  # it holds its reservation (a redelivery of its post)
        if over(rec.qpu_consumed + rec.qpu_reserved, seconds, rec.qpu_budget):
            return describe(SET_BUDGET, rec.qpu_consumed + rec.qpu_reserved, rec.qpu_budget)
        budget = self.cfg.qpu_seconds_per_month
        if budget is not None:
            figures = self.store.usage.month_figures(self.instance, month())
            if over(figures.consumed + figures.reserved, seconds, budget):
                return describe(INSTANCE_BUDGET, figures.consumed + figures.reserved, budget)
        if self.service.limit_reached():
            return SERVICE_LIMIT
        return None

    def hold(self, rec: JobSetRecord, job: JobRecord, why: str, transitions: Transitions) -> Held:
        """Record that the job waits for QPU time (HELD, and why); the error to raise."""
        self.store.set_job_fields(rec.id, job.index, held=why)
        if job.status is not JobStatus.HELD:
            transitions.advance(rec.id, job.index, JobStatus.HELD, held=why)
        log.info("job set %s job %d is held by %s", rec.id, job.index, why)
        return Held(why, SERVICE_HELD_RETRY if why == SERVICE_LIMIT else HELD_RETRY)

    def reserve(self, rec: JobSetRecord, job: JobRecord) -> str | None:
        """Reserve the attempt's estimate in its set, then in its instance's month; None when
        granted, else why it is held (nothing stays reserved then)."""
        seconds, store = need(job).seconds, self.store
        grant = store.usage.reserve_in_set(rec.id, job.index, job.attempt, seconds, month())
        if grant.stale:
            raise RetryLater(f"job {job.index} of {rec.id} moved to another attempt", 0.1)
        if not grant.granted:
            return describe(SET_BUDGET, grant.used, rec.qpu_budget)
        ref = attempt_ref(rec.id, job.index, job.attempt)
        grant = store.usage.reserve_in_instance(self.instance, grant.period, ref, seconds,
                                                self.cfg.qpu_seconds_per_month)
        if not grant.granted:
            store.usage.settle_in_set(rec.id, job.index, job.attempt, None, rec.job_backend(job))
            return describe(INSTANCE_BUDGET, grant.used, self.cfg.qpu_seconds_per_month)
        return None

    def settle(self, rec: JobSetRecord, job: JobRecord, attempt: int, charge: float | None) -> None:
        """The attempt ended: its reservations become ``charge`` (None: it never ran). Set first,
        then the instance: each is idempotent, and the reconciler finds a half-settled one."""
        store = self.store
        store.usage.settle_in_set(rec.id, job.index, attempt, charge, rec.job_backend(job))
        period = job.usage_period or month()
        store.usage.settle_in_instance(self.instance, period, attempt_ref(rec.id, job.index, attempt), charge,
                                       rec.job_backend(job))

    def release(self, rec: JobSetRecord, job: JobRecord) -> None:
        """The attempt was not posted after all: give its reservations back."""
        self.settle(rec, job, job.attempt, None)


def describe(what: str, used: float, budget: float | None) -> str:
    return f"{what}: {used:.1f} s of {budget:.1f} s used or reserved" if budget is not None else what
