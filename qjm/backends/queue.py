"""Where a queued remote job stands on its device: qjm's estimate, since qiskit-ibm-runtime 0.51
gives no queue position.

When a job is posted, qjm notes how many jobs the device had ahead of it (``ahead_at_post``:
qjm's own pending jobs there, counted fresh, and other users' jobs from the listing). When a job
ends, its time from post to end over that count plus one is a sample of the device's pace
(seconds per job); the pace is a running mean per device. A queued
job's position is then what was ahead of it less what the pace says has run since.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Settings
from ..engine import polling
from ..engine.polling import Estimate, SerialPlan, queued, serial_end
from ..lifecycle import JobStatus
from ..store import JobRecord, Store
from .info import QueueInfo


def queue_info(store: Store, backend: str, job: JobRecord, ahead_at_post: int | None, now: float) -> QueueInfo | None:
    """None unless the job is posted and still waiting on the service (SUBMITTED)."""
    if job.status is not JobStatus.SUBMITTED or not job.remote_id or job.submitted_at is None:
        return None
    ahead = ahead_at_post or 0
    pace = store.durations.pace(backend)
    if pace is None or pace <= 0:
        return QueueInfo(job.remote_id, backend, ahead, None, None)
    ran = int((now - job.submitted_at) / pace)
    return QueueInfo(job.remote_id, backend, max(0, ahead - ran), job.submitted_at + ahead * pace, pace)


@dataclass(frozen=True)
class Outlook:
    """What a poll of a posted job plans with: the device's pace, the job's own estimate, the one
    that polls first of it and the backend's (``est``), and its end on a device run in turn."""

    pace: Estimate | None
    own: Estimate | None
    est: Estimate | None
    plan: SerialPlan | None

    def first_age(self, cfg: Settings) -> float:
        return polling.first_poll_age(self.est, cfg) if self.plan is None else self.plan.first

    def next_poll_in(self, age: float, seen_queued: bool, cfg: Settings) -> float:
        """The pause to the next look after one that found the job pending (queued or running)."""
        delay = None if self.plan is None else self.plan.next_poll_in(age, cfg)
        if delay is not None:
            return delay
        floor = polling.still_queued(age, self.pace, self.own) if seen_queued and self.own else None
        return polling.next_poll_in(age, self.est, cfg, floor)


def outlook(store: Store, backend: str, ref: str, job: JobRecord) -> Outlook:
    """What polls saw of the job's device (``qjm.store.runs``) decides what it plans with. On a
    device known to run its jobs in turn, the job's own estimate (its queue at post at the
    device's pace, ``qjm.engine.polling.queued``) and its end one run after its start
    (``qjm.engine.polling.serial_end``); elsewhere, the backend's recent post-to-end times only: a
    device that runs several jobs at once ends them as they were posted, not a pace apart."""
    pace = store.durations.pace_estimate(backend)
    seen = store.durations.runs.read(backend, ref)
    if pace is None or job.submitted_at is None or not seen.serial:
        return Outlook(pace, None, store.durations.estimate(backend), None)
    own = queued(pace, job.ahead_at_post)
    plan = serial_end(pace, job.submitted_at, job.ahead_at_post, seen.queued_at, seen.running_at, seen.end_lo, seen.end_hi)
    return Outlook(pace, own, polling.sooner(own, store.durations.estimate(backend)), plan)


def note_look(store: Store, backend: str, ref: str, job: JobRecord, status: JobStatus, now: float) -> None:
    """Record what a look at a posted job saw, for ``outlook``: queued, running, or ended
    since the last look that found it pending."""
    runs = store.durations.runs
    if status.final and job.submitted_at is not None:
        runs.ended(backend, ref, job.submitted_at + (job.seen_pending_age or 0.0), now, store.durations.pace(backend))
    elif status in (JobStatus.SUBMITTED, JobStatus.RUNNING):
        runs.seen(backend, ref, status is JobStatus.RUNNING, now)


def ahead_at_post(mine: int, others: int, listing_age: float, pace: float | None) -> int:
    """Jobs ahead of a post made now on a device that runs its queue in turn: qjm's ``mine``
    other pending jobs there, and the ``others`` of other users the listing showed
    ``listing_age`` seconds ago, less those the device's pace says have run since.

    The listing's queue also counts qjm's jobs pending as it was taken: while they end and new
    ones are posted, a listing seconds old overstates the queue by the ended ones. Each such
    job's estimate then aimed late, and its time over the count pulled the device's pace down,
    so every later estimate aimed early. Other users' jobs are taken to stand before qjm's
    (they were there first), so they are the ones that ran."""
    ran = int(listing_age / pace) if pace else 0
    return mine + max(0, others - ran)


def pace_sample(seconds: float, ahead_at_post: int | None) -> float:
    """One finished job's seconds per job: its time from post to end over the jobs ahead of it and itself."""
    return seconds / ((ahead_at_post or 0) + 1)
