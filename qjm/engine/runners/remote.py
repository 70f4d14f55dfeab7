"""Remote jobs (IBM Quantum, or qjm's emulator of it): the whole of a job's life on a service.

Rules kept here:

* A job set has one batch per backend (``batches``); its first submit there opens it.
* A set over several backends places each job on one (``qjm.backends.placement``); a job that
  waits for a slot may move to another before it is posted, never after.
* At most ``QJM_MAX_PENDING_JOBS`` jobs per backend are pending at once (``store.slots``). A job
  that finds no free slot waits in a FIFO; whoever frees a slot posts the longest-waiting job.
* An attempt is posted at most once: before posting, the job's record in Redis and then the
  attempt's tag on the service are checked for a job an earlier delivery already posted.
* Polls follow ``qjm.engine.polling``; each renews the job's slot lease; the slot is released exactly
  once, when the job is final.
* QPU time (``qjm.usage.posting``): a job a budget holds back takes no slot; its estimate is
  reserved right before its post; each attempt's end settles its charge.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import redis
import redis.lock
from cachetools import LRUCache

from ...backends import Placement, pace_sample
from ...backends.queue import note_look, outlook
from ...errors import BatchClosedError, QJMError, RetryLater
from ...executors import Executor, JobWork, SubmitContext
from ...formats import outputs
from ...lifecycle import USER_CANCELS, JobStatus
from ...store import JobRecord, JobSetRecord
from ...store.keys import job_ref, parse_job_ref
from ...usage import Held, QpuGate, QpuTime
from .. import polling, retries
from .base import JobRunner
from .batches import SetBatches
from .locks import kept, release_quietly

log = logging.getLogger(__name__)

#: A job whose batch ended before it ran is posted again, as a new attempt, at most this often.
MAX_REPOSTS = 3
#: Posts made ready ahead of a freed slot (``RemoteRunner.ready_next``), kept per worker process.
READY_POSTS = 8


def job_tags(sid: str, i: int, attempt: int) -> list[str]:
    """Tags on every remote job, so the service itself can say which set, job and attempt a job
    belongs to. The last one names the attempt: a new attempt is a new post."""
    return [f"qjm:{sid}", f"qjm:{sid}:{i}", f"qjm:{sid}:{i}:a{attempt}"]


class RemoteRunner(JobRunner):
    def __init__(self, *args: Any, placement: Placement | None = None,
                 retarget: Callable[[JobSetRecord, int, str], None] | None = None, **kwargs: Any) -> None:
        """``placement`` and ``retarget`` serve sets over several backends: where a waiting job
        goes instead, and transpiling it for that backend (``Pipeline.retarget``)."""
        super().__init__(*args, **kwargs)
        self._ready: LRUCache[tuple[str, int], JobWork] = LRUCache(maxsize=READY_POSTS)
        self.placement = placement
        self.retarget = retarget
        self.batches = SetBatches(self.store)
        self.qpu = QpuGate(QpuTime(self.store, self.cfg), self.transitions)

    @property
    def lease(self) -> float:
        """A slot lease outlives several polls, so only a holder that stopped polling loses it."""
        return 5.0 * self.cfg.max_poll_interval

    # ------------------------------------------------------------------ post
    def _submit(self, rec: JobSetRecord, job: JobRecord, executor: Executor) -> None:
        """Post the job once. Raises RetryLater when no slot is free or the service says "later".

        The job's circuits are loaded only once a slot is held, so a job waiting for one costs a
        few Redis reads."""
        store, i, ref = self.store, job.index, job_ref(rec.id, job.index)
        backend = rec.job_backend(job)
        if rec.fans_out:
            backend, executor = self._maybe_move(rec, job, backend, executor)
        self.qpu.check(rec, job)
        if not store.slots.acquire(backend, ref, self.cfg.max_pending_jobs, self.lease):
            since = store.waiting_since(rec.id, i)
            ahead = store.slots.wait(backend, ref, since)
            delay = polling.slot_wait_retry_in(time.time() - since, store.durations.estimate(backend), self.cfg,
                                               ahead, self.cfg.max_pending_jobs)
            raise RetryLater(f"all {self.cfg.max_pending_jobs} pending-job slots on {backend} are taken", delay)
        lock = store.posting_lock(rec.id, i)
        if not lock.acquire():
            raise RetryLater(f"job {i} of {rec.id} is being posted by another delivery", 1.0)
        try:
            with kept(lock):
                self._post(rec, store.job(rec.id, i), executor, lock)
        except BatchClosedError as exc:
            # The batch reached its lifetime: forget it, so the retry (any job's) opens a new one.
            store.slots.release(backend, ref)
            self.batches.drop(rec, backend)
            raise RetryLater(f"job {i} of {rec.id}: {exc}; posting in a new batch", 0.1) from exc
        except RetryLater:
            store.slots.release(backend, ref)
            raise
        except Exception as exc:  # noqa: BLE001 - a refused job fails this job only
            if store.job(rec.id, i).remote_id:
                # Another delivery posted it meanwhile (this one was cut off and came back): its
                # post stands; what went wrong here is no failure of the job.
                log.warning("job set %s job %d: a late delivery failed (%s); the job's post stands", rec.id, i, exc)
                return
            self.transitions.fail(rec.id, i, "submission", exc)
            self.qpu.release(rec, store.job(rec.id, i))
            self.release(rec, i, backend)
        finally:
            release_quietly(lock)

    def _maybe_move(self, rec: JobSetRecord, job: JobRecord, backend: str,
                    executor: Executor) -> tuple[str, Executor]:
        """Where a job of a set over several backends is posted: where it waits, or (under its
        posting lock, transpiled anew) on the backend ``qjm.backends.placement`` moves it to."""
        assert self.placement is not None and self.retarget is not None
        target = self.placement.reconsider(rec, job)
        if target is None or target == backend:
            return backend, executor
        lock = self.store.posting_lock(rec.id, job.index)
        if not lock.acquire():
            return backend, executor  # being posted (or moved) by another delivery
        try:
            with kept(lock):
                current = self.store.job(rec.id, job.index)
                if current.remote_id or current.post_attempted or current.status.final \
                        or rec.job_backend(current) != backend:
                    return rec.job_backend(current), self.executor_for(rec.job_backend(current))
                log.info("job set %s job %d moves from %s to %s", rec.id, job.index, backend, target)
                self.retarget(rec, job.index, target)
                self.store.slots.move_waiter(backend, target, job_ref(rec.id, job.index),
                                             self.store.waiting_since(rec.id, job.index))
        finally:
            release_quietly(lock)
        self.hand_off(backend)  # it may have held the place a slot there was kept for
        return target, self.executor_for(target)

    def post_if_free(self, job: JobRecord | None, rec: JobSetRecord, i: int) -> None:
        """Post a just-transpiled job from its transpile task when a slot is free and no job waits
        before it (no Celery round trip to its submit task, which then finds it posted and polls
        it). ``job`` is the job as placed, for a set over several backends."""
        backend = rec.job_backend(job) if job is not None else rec.backend
        if not self.store.slots.free_for(backend, job_ref(rec.id, i), self.cfg.max_pending_jobs):
            return
        try:
            self.submit(self.store.job_set(rec.id), i)
        except RetryLater:
            pass  # the job's submit task, sent next, tries again (queued for a slot, if it now waits)

    def _post(self, rec: JobSetRecord, job: JobRecord, executor: Executor, lock: redis.lock.Lock) -> None:
        if job.remote_id:  # posted while we waited for the lock
            return
        i = job.index
        if rec.job_backend(job) != executor.name:  # moved to another backend while we waited
            raise RetryLater(f"job {i} of {rec.id} moved to {rec.job_backend(job)}", 0.1)
        def fence() -> None:
            # A delivery cut off from Redis for longer than the lock's life lost it to another,
            # which may have posted since: the last look before the post is at the lock.
            if not lock.owned():
                raise RetryLater(f"job {i} of {rec.id}: the posting lock expired before the post", 1.0)

        # The user's tags first: the attempt's own tag is the last (``find_submitted`` reads it).
        ctx = SubmitContext(rec.id, i, attempt=job.attempt, batch_id=self.batches.batch(rec, executor),
                            tags=[*rec.tags, *job_tags(rec.id, i, job.attempt)], fence=fence)
        # An earlier delivery that got as far as posting may have died before recording the id:
        # then the attempt's tag on the service tells. So does Redis having restarted since the
        # job was last written (its run_id changed): with appendfsync everysec it may have lost
        # the record that a post began. Otherwise the service is not asked.
        run_id = self.store.run_id(rec.id)
        ask = job.post_attempted is not None or job.run_id != run_id
        remote_id = executor.find_submitted(ctx) if ask else None
        if remote_id is None:
            work = self._ready.pop((job_ref(rec.id, i), job.attempt), None) or self.load_work(rec, i)
            if work is None:  # the job failed on the way
                self.release(rec, i, executor.name)
                return
            ahead = None if self.placement is None else self.placement.queue_ahead(executor.name)
            self.qpu.reserve(rec, job)  # raises Held (a RetryLater) when a budget holds it back
            try:
                self.store.record_post_attempt(rec.id, i, run_id)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                # No post without its record: Redis (a Cluster mid-failover) is asked again later.
                raise RetryLater(f"job {i} of {rec.id}: the record of its post could not be written ({exc})", 1.0) from exc
            fence()
            remote_id = executor.submit(work, ctx).remote_id
        else:
            ahead = None
        self.transitions.advance(rec.id, i, JobStatus.SUBMITTED, remote_id=remote_id, submitted_at=repr(time.time()),
                                 ahead_at_post="" if ahead is None else str(ahead), held="")
        current = self.store.job(rec.id, i)
        if current.remote_id == remote_id:
            self._retag_if_changed(rec, job, remote_id, executor)
            return
        if current.status is JobStatus.CANCELLED and not current.remote_id:
            # Cancelled while we were posting: the job must not run, nor keep its slot.
            self.store.set_job_fields(rec.id, i, remote_id=remote_id)
            executor.cancel(remote_id)
            self.release(rec, i, executor.name)
            return
        # Another delivery's post stands (this one's lock expired mid-post): withdraw ours. Its
        # slot is the other post's now.
        log.warning("job set %s job %d: a second post %s (the job is %s as %s); cancelling it",
                    rec.id, i, remote_id, current.status.value, current.remote_id)
        executor.cancel(remote_id)

    def _retag_if_changed(self, rec: JobSetRecord, job: JobRecord, remote_id: str, executor: Executor) -> None:
        """A retag's worker may have looked for posted jobs before this post was recorded: if the
        set's tags changed since this delivery read them, the new post gets them now."""
        tags = self.store.job_set(rec.id).tags
        if tags == rec.tags:
            return
        try:
            executor.update_tags(remote_id, [*tags, *job_tags(rec.id, job.index, job.attempt)])
        except Exception as exc:  # noqa: BLE001 - the job runs either way; its tags are a label
            log.warning("retagging job %s of set %s failed: %s", remote_id, rec.id, exc)

    # ------------------------------------------------------------------ poll
    def poll(self, rec: JobSetRecord, i: int) -> float | None:
        """One status check of a posted job; returns the delay to the next, or None once final."""
        store, t = self.store, self.transitions
        job = store.job(rec.id, i)
        backend = rec.job_backend(job)
        if job.status.final:
            self.release(rec, i, backend)  # e.g. cancelled by the user: free its slot
            if job.status is JobStatus.CANCELLED and job.remote_id and job.error in USER_CANCELS and not job.cancel_sent:
                self._cancel_on_service(rec, job)  # the cancel task's message was lost (or is late)
            return None
        if not job.remote_id:  # a new attempt waiting for its post (or a post that never was)
            return self._post_again(rec.id, i)
        executor = self.executor_for(backend)
        if rec.cancel_requested:  # cancelled between the flag and the job's own transition
            t.cancel(rec.id, i)
            executor.cancel(job.remote_id)
            self.release(rec, i, backend)
            return None
        ref, age = job_ref(rec.id, i), (time.time() - job.submitted_at if job.submitted_at else None)
        look = outlook(store, backend, ref, job)
        est, first = look.est, look.first_age(self.cfg)
        if age is not None and age < first:  # just posted (or handed off): no point asking yet
            return polling.countdown(first - age)
        store.slots.renew(backend, ref, self.lease)
        state = executor.poll(job.remote_id)
        self.qpu.polled(rec, job, state)
        if state.status.final:
            # The service no longer counts the job as pending: free its slot for the next job
            # before spending time on fetching this one's results.
            self.release(rec, i, backend)
        note_look(store, backend, ref, job, state.status, time.time())
        if state.status is JobStatus.DONE:
            sample = None if age is None else polling.end_sample(job.seen_pending_age, age, est)
            self._fetch(rec, job, executor, sample)
            return None
        if state.status is JobStatus.ERROR and state.repost and job.attempt <= MAX_REPOSTS:
            self.batches.drop(rec, backend)
            self.transitions.new_attempt(rec.id, i, job.attempt, state.error or "its batch ended")
            return self._post_again(rec.id, i)
        if state.status is JobStatus.ERROR and retries.may_retry(rec.max_retries, job.history, state.error, local=False):
            t.new_attempt(rec.id, i, job.attempt, state.error or "", kind=retries.RETRY)
            return self._post_again(rec.id, i)
        if state.status is JobStatus.ERROR:
            t.advance(rec.id, i, JobStatus.ERROR, error=state.error or "the job failed on the service")
            return None
        if state.status is JobStatus.CANCELLED:
            t.advance(rec.id, i, JobStatus.CANCELLED, error="cancelled on the service")
            return None
        if state.status is JobStatus.RUNNING:
            t.advance(rec.id, i, JobStatus.RUNNING)
        if age is None:
            return polling.age_based(0.0, self.cfg)
        store.set_job_fields(rec.id, i, seen_pending_age=repr(age))
        look = look if look.plan is None else outlook(store, backend, ref, job)  # with what this look saw
        delay = look.next_poll_in(age, state.status is JobStatus.SUBMITTED, self.cfg)
        if est is not None and polling.wait_inline(delay):  # near the expected end
            self.ready_next(backend)
        return delay

    def ready_next(self, backend: str) -> None:
        """Make ready, in this process, the post of the job that waits longest for a slot on
        ``backend``: this process polls a job near its end, and the task that sees the end hands
        the freed slot to that job. The hand-off then posts what is ready instead of loading the
        job's circuits and preparing them first (a few milliseconds a post, all of it time the
        slot stays empty). Waiting, the job's circuits and options do not change; its attempt is
        part of the key."""
        ref = self.store.slots.first_waiting(backend)
        if ref is None or any(key[0] == ref for key in self._ready):
            return
        sid, i = parse_job_ref(ref)
        try:
            job = self.store.job(sid, i)
            key = (ref, job.attempt)
            if job.remote_id or job.status.final:
                return
            work = self.load_work(self.store.job_set(sid), i, quiet=True)
            if work is not None:
                self._ready[key] = self.executor_for(backend).ready_to_post(work)
        except Exception as exc:  # noqa: BLE001 - only a head start: the post loads the job itself
            log.info("making the post of %s ready failed: %s", ref, exc)

    def waits_inline(self, rec: JobSetRecord, delay: float) -> bool:
        """Only near an expected end (a track record); elsewhere Celery's round trip costs nothing."""
        return polling.wait_inline(delay) and any(self.store.durations.estimate(b) is not None for b in rec.candidates)

    def _post_again(self, sid: str, i: int) -> float:
        """Post a job's new attempt from its poll loop, which then goes on polling it; returns
        the delay to the next poll (sooner while the post waits for a slot)."""
        rec = self.store.job_set(sid)
        try:
            self.submit(rec, i)
        except RetryLater as later:
            return later.delay
        return polling.first_poll_age(self.store.durations.estimate(rec.job_backend(self.store.job(sid, i))), self.cfg)

    def _fetch(self, rec: JobSetRecord, job: JobRecord, executor: Executor, age: float | None) -> None:
        """Store a DONE job's results with its status; on failure the job fails instead. ``age``
        is what the job adds to the backend's duration estimate, if anything."""
        assert job.remote_id is not None
        try:
            work = self.load_work(rec, job.index, quiet=True)
            if work is None:
                raise ValueError("no transpiled circuits were stored for this job")
            result = outputs.encode(executor.fetch(job.remote_id, work), work)
        except RetryLater:
            raise
        except Exception as exc:  # noqa: BLE001
            self.transitions.fail(rec.id, job.index, "fetching results", exc)
            return
        self.transitions.advance(rec.id, job.index, JobStatus.DONE, result=result, finished_at=repr(time.time()))
        if age is not None:  # ``polling.end_sample``: the end, not when it was noticed
            self.store.durations.record(rec.job_backend(job), age)
            if job.ahead_at_post is not None:
                self.store.durations.record_pace(rec.job_backend(job), pace_sample(age, job.ahead_at_post))

    # ------------------------------------------------------------------ slots
    def release(self, rec: JobSetRecord, i: int, backend: str | None = None) -> None:
        """Give the job's slot on ``backend`` (by default where placed) back, once, and hand it on."""
        if backend is None:
            backend = rec.job_backend(self.store.job(rec.id, i)) if rec.fans_out else rec.backend
        if self.store.slots.release(backend, job_ref(rec.id, i)):
            self.hand_off(backend)

    def hand_off(self, backend: str) -> None:
        """Post the longest-waiting job now, instead of when its own retry comes round.

        Its task, when it comes back, finds the job posted and goes on to poll it. A waiter that
        no longer needs the slot (its set was cancelled, it was posted meanwhile) passes it to
        the next one; a waiter the service turns away ("later") queues again and ends the turn."""
        while self.store.slots.in_use(backend) < self.cfg.max_pending_jobs:
            ref = self.store.slots.next_waiting(backend)
            if ref is None:
                return
            sid, i = parse_job_ref(ref)
            try:
                self.submit(self.store.job_set(sid), i)
            except RetryLater as later:  # queued again (the service wants a pause), or held for QPU time: the next one
                if not isinstance(later, Held):
                    return
            except QJMError as exc:  # e.g. the set expired: nothing to post
                log.info("hand-off of a free slot to %s skipped: %s", ref, exc)
            except Exception:  # noqa: BLE001 - the waiter's own task will try again
                log.exception("hand-off of a free slot to %s failed", ref)

    def abandon(self, rec: JobSetRecord, job: JobRecord, why: str) -> bool:
        """Fail the job, and stop its remote job and give its slot back: nobody polls it any more."""
        super().abandon(rec, job, why)
        backend = rec.job_backend(job)
        if job.remote_id:
            try:
                self.executor_for(backend).cancel(job.remote_id)
            except Exception as exc:  # noqa: BLE001 - best effort; the job is failed either way
                log.warning("cancelling abandoned job %s failed: %s", job.remote_id, exc)
        self.release(rec, job.index, backend)
        return False

    # ------------------------------------------------------------------ batch and cancel
    def close_batch(self, rec: JobSetRecord) -> None:
        self.batches.close(rec, self.executor_for)

    def cancel_set(self, rec: JobSetRecord, jobs: list[int] | None = None) -> None:
        """Cancel every posted job of a cancelled set (or of ``jobs``) that did not finish. The batch is
        left to the set's assembly, which cancels it before the set reads final (none stays open behind it)."""
        for job in self.store.jobs(rec.id, rec.n_jobs, indices=jobs):
            if job.status is JobStatus.CANCELLED and job.remote_id and not job.cancel_sent:
                try:
                    self._cancel_on_service(rec, job)
                except Exception as exc:  # noqa: BLE001 - keep cancelling the others
                    log.warning("cancelling job %s failed: %s", job.remote_id, exc)
            if job.status.final:
                self.release(rec, job.index, rec.job_backend(job))

    def _cancel_on_service(self, rec: JobSetRecord, job: JobRecord) -> None:
        """Cancel a job the user cancelled on the service, and note it, so it is asked once."""
        self.executor_for(rec.job_backend(job)).cancel(job.remote_id or "")
        self.store.set_job_fields(rec.id, job.index, cancel_sent=repr(time.time()))
