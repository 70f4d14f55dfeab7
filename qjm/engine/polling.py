"""When to ask the service about a remote job next.

Three regimes:

* No track record for the backend yet: poll at a tenth of the job's age (between
  ``QJM_MIN_POLL_INTERVAL`` and ``Settings.poll_cap``), so an end is noticed within about 10 % of
  the job's time and a job that waits for hours costs one request a minute.
* A track record (recent jobs on the backend took ``mean`` seconds, give or take ``dev``): jobs of
  one job set on one backend tend to take alike, so skip ahead to half a deviation before the
  expected end and poll finely around it. The end is noticed within a small fraction of the
  job's time, in about two requests; a job that runs late falls back to the age-based schedule.
* A device seen to run its queue one job at a time (``qjm.store.runs``): a job ends one run
  (the device's pace) after it starts, and what looks saw (still queued, running, qjm's previous
  job there ended) bounds its start (``serial_end``). Jobs behind queues of different depths end
  far apart, so the backend's one estimate, polled finely across their spread, cost four or five
  requests a job; this costs about two.

A pause of at most ``INLINE_PAUSE`` is waited inside the poll task (``Pipeline.poll``), and the
skip ahead is sent back to Celery ``LEAD`` early, the task waiting the rest: a Celery round trip
costs tens of milliseconds and lands late by as much under load, which near a job's end is
time the next job waits for its slot.

The estimate is kept per backend in Redis (``Store.record_duration``) from the age at which
finished jobs were last seen still pending, so every worker plans with what all of them saw.
When the device's queue at the job's post and its pace are known, the job also has an estimate
of its own (``queued``: its place in the queue times the pace), used when it expects the end sooner.
A job the service still shows queued is not asked again before it can have run (``still_queued``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Settings

#: The shortest pause, and only near an expected end: 20 ms suits the emulator's 1 s jobs, while
#: a 10 s job gets 0.2 s and an IBM job of minutes gets seconds (see ``Estimate.fine``).
FINE_FLOOR = 0.02
#: Pauses this short are waited in the task; a task waits at most ``INLINE_BUDGET`` in all.
INLINE_PAUSE = 0.25
INLINE_BUDGET = 2.0
#: A job seen done at a first poll made on time is taken to have ended this fraction of its age.
EARLY_END = 0.9
#: How much early the skip ahead to the first poll is sent back to Celery.
LEAD = 0.1


@dataclass(frozen=True)
class Estimate:
    """How long jobs on one backend have recently taken, from submit to their end."""

    mean: float
    dev: float

    @property
    def fine(self) -> float:
        """The pause between polls near the expected end: tighter for steadier backends."""
        return max(FINE_FLOOR, 0.02 * self.mean, 0.25 * self.dev)

    @property
    def first(self) -> float:
        """The age of the first poll: the estimate is of the last age a job was seen pending,
        a little below its end, so a job is mostly still pending then and seen done one fine
        pause later (two requests), while one ending early is seen at once."""
        return max(0.0, self.mean - 0.5 * self.dev)

    @property
    def window(self) -> tuple[float, float]:
        """Ages between which the end is expected, widened by the fine pause on each side."""
        return max(0.0, self.mean - 2 * self.dev - self.fine), self.mean + 2 * self.dev + 2 * self.fine


def queued(pace: Estimate | None, ahead: int | None) -> Estimate | None:
    """A job's own estimate on a device that runs its queue in turn: the ``ahead`` jobs it had
    before it at its post and itself, at the device's pace (seconds per job, give or take; see
    ``qjm.backends.queue``). None unless both are known.

    A backend's one estimate of post-to-end times serves jobs that all queue alike (one set on a
    device it fills to its pending limit); a set spread over devices with queues of their own has
    jobs that end 1 s and 8 s after their post, and the backend's mean of them would notice the
    first late by seconds, leaving its device idle."""
    if pace is None or ahead is None:
        return None
    n = ahead + 1
    return Estimate(n * pace.mean, n * pace.dev)


def sooner(*estimates: Estimate | None) -> Estimate | None:
    """The estimate that polls first. A job's own (``queued``) rests on the queue the listing
    showed at its post, which may be seconds old: it may only bring the first poll forward,
    never put it off past what the backend's recent jobs took."""
    known = [e for e in estimates if e is not None]
    return min(known, key=lambda e: e.first) if known else None


def age_based(age: float, cfg: Settings) -> float:
    return min(cfg.poll_cap, max(cfg.min_poll_interval, 0.1 * age))


def first_poll_age(est: Estimate | None, cfg: Settings) -> float:
    """Age before which asking is pointless: the job was just posted, or is not expected to end yet."""
    if est is None:
        return cfg.min_poll_interval
    return min(cfg.poll_cap, max(cfg.min_poll_interval, est.first))


def end_sample(seen_pending_age: float | None, done_age: float, est: Estimate | None) -> float | None:
    """What a finished job adds to its backend's estimate (None: nothing).

    The last age it was seen pending, just below its end. A job seen done at a first poll made
    on time ended before that poll, maybe long before: it counts as ``EARLY_END`` of the poll's
    planned age, so an estimate that aims too late comes down within a few jobs. A first poll
    that landed late (a busy worker) says nothing of when the job ended: it adds nothing, so a
    loaded machine neither pushes the estimate up nor drags it down."""
    if seen_pending_age is not None:
        return seen_pending_age
    if est is None:
        return done_age
    if done_age <= est.first + est.fine:
        return EARLY_END * est.first
    return None


def countdown(wait: float) -> float:
    """The Celery countdown for a skip ahead of ``wait`` seconds to a job's first poll: ``LEAD``
    early when it is longer than an inline pause, so the task is back in time and waits inline."""
    return wait - LEAD if wait > INLINE_PAUSE + LEAD else wait


def wait_inline(delay: float) -> bool:
    """Whether a poll task waits ``delay`` itself rather than go round Celery."""
    return delay <= INLINE_PAUSE


def still_queued(age: float, pace: Estimate | None, own: Estimate | None) -> float | None:
    """The age before which a job the service says is still queued (not yet running) cannot be
    expected to end; None without the device's pace.

    It has a whole run ahead of it, about one job at the device's pace (less its deviation), and,
    on a device that runs its queue in turn, the rest of what stood before it at its post: its
    own estimate. Fine polls aimed by an estimate that puts its end sooner (the backend's, which
    mixes jobs queued deep and shallow) would each only see it queued again."""
    if pace is None:
        return None
    return max(age + max(0.0, pace.mean - pace.dev), own.first if own is not None else 0.0)


def next_poll_in(age: float, est: Estimate | None, cfg: Settings, queued_until: float | None = None) -> float:
    """Seconds until the next status check of a job now ``age`` seconds old and still pending;
    no sooner than ``queued_until`` (``still_queued``) when the service says it is queued."""
    delay = age_based(age, cfg)
    if est is not None:
        start, end = est.window
        if age < start:
            delay = min(cfg.poll_cap, start - age)
        elif age <= end:
            delay = min(delay, est.fine)
    if queued_until is not None:
        delay = max(delay, min(cfg.poll_cap, queued_until - age))
    return delay


@dataclass(frozen=True)
class SerialPlan:
    """When a job on a device that runs one job at a time ends (ages): not before ``lo``, and
    about ``target``, give or take ``dev`` (the spread of the device's time per job)."""

    lo: float
    target: float
    dev: float

    @property
    def first(self) -> float:
        return max(self.lo, self.target - self.dev)

    def next_poll_in(self, age: float, cfg: Settings) -> float | None:
        """Pause before the next look; None once the job outlived the plan (then ``next_poll_in``)."""
        if age < self.first:
            return min(cfg.poll_cap, self.first - age)
        if age <= self.target + 2 * self.dev:
            return max(FINE_FLOOR, self.dev)
        return None


def serial_end(pace: Estimate, submitted_at: float, ahead_at_post: int | None, queued_at: float | None,
               running_at: float | None, end_lo: float | None, end_hi: float | None) -> SerialPlan:
    """A job's end on a device that runs its queue in turn: one run (``pace``) after its start.

    Its start (wall times) is no sooner than its post, the last look that found it queued
    (``queued_at``), and the end of qjm's job there that last ended (between ``end_lo`` and
    ``end_hi``); it is expected when the jobs ahead of it at its post ran, or as soon as the
    last end when that is later; and it is no later than the first look that found it running.
    A backend's post-to-end estimate mixes jobs queued deep and shallow, and its fine polls near
    the mean each see the job queued or mid-run again; the job's own start is known to a look."""
    dev = max(pace.dev, 0.05 * pace.mean)
    start_lo = max(submitted_at, queued_at or 0.0, end_lo or 0.0)
    start = max(start_lo, submitted_at + (ahead_at_post or 0) * pace.mean, end_hi or 0.0)
    if running_at is not None:
        start = max(start_lo, min(start, running_at))
    return SerialPlan(start_lo + pace.mean - dev - submitted_at, start + pace.mean - submitted_at, dev)


def slot_wait_retry_in(waited: float, est: Estimate | None, cfg: Settings, ahead: int = 0, slots: int = 1) -> float:
    """How soon a job waiting for a pending-job slot checks back.

    A freed slot is handed to the longest-waiting job at once, by whoever freed it; the
    waiting task only has to come back to go on to polling, and that is due no sooner than the
    first poll of its job. With a track record, a job with ``ahead`` jobs before it in the queue
    for ``slots`` slots cannot be posted before ``ahead // slots`` jobs ran one after another on
    each slot: it checks back after the shortest such time plus half its first poll age. So a
    job deep in the queue comes back a few times, not every half second: hundreds of waiting
    tasks coming back that often took the worker processes that the polls need.
    """
    if est is None:
        return age_based(waited, cfg)
    rounds = ahead // max(1, slots)
    return min(cfg.poll_cap, max(cfg.min_poll_interval, rounds * est.window[0] + first_poll_age(est, cfg) / 2))
