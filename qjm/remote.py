"""The remote part of a chunk's life: batches, the pending-job throttle, exactly-once posts, polling.

Only backends whose jobs live on a service (IBM Quantum, or qjm's emulator of it) come here.
Rules this module keeps:

* A job set has one batch; the first submit opens it (under a Redis lock) and records its id.
* At most ``QJM_MAX_PENDING_JOBS`` jobs per backend are pending at once, counted in Redis across
  all job sets and workers. A slot is a lease: renewed on every poll, released exactly once when
  the job is final, reclaimed when its holder stops renewing (a dead worker).
* A chunk is posted at most once: before posting, the chunk's record in Redis and then the
  chunk's tag on the service are checked for a job already posted by an earlier delivery.
* Polls follow ``qjm.polling``: a tenth of the job's age at first, then, once the backend has a
  track record, skipping ahead to just before the expected end and polling finely around it.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Callable

from . import codec, polling
from .errors import RetryLater
from .executors import Executor, RemoteState, RunOptions, SubmitContext
from .status import JobStatus
from .store import ChunkRecord, JobSetRecord

if TYPE_CHECKING:
    from .pipeline import Pipeline

log = logging.getLogger(__name__)


def holder(job_set_id: str, chunk: int) -> str:
    return f"{job_set_id}:{chunk}"


def ensure_session(pipe: "Pipeline", rec: JobSetRecord, executor: Executor) -> str | None:
    """The set's batch id, opening the batch if this is the set's first submit."""
    if rec.session_id:
        return rec.session_id
    with pipe.store.session_lock(rec.id):
        current = pipe.store.job_set(rec.id)
        if current.session_id:
            return current.session_id
        session_id = executor.open_session(rec.id)
        if session_id:
            pipe.store.set_session(rec.id, session_id)
        return session_id


def chunk_tags(job_set_id: str, chunk: int) -> list[str]:
    """Tags on every remote job, so the service itself can say which chunk a job belongs to."""
    return [f"qjm:{job_set_id}", f"qjm:{job_set_id}:{chunk}"]


Load = Callable[[], tuple[list, RunOptions] | None]


def submit(pipe: "Pipeline", rec: JobSetRecord, i: int, executor: Executor, load: Load) -> None:
    """Post chunk ``i`` once. Raises RetryLater when no slot is free or the service says "later".

    ``load`` gives the chunk's circuits and options (None if the chunk failed on the way); it is
    called only once a slot is held, so a chunk waiting for one costs a few Redis reads.
    """
    store, cfg = pipe.store, pipe.cfg
    me = holder(rec.id, i)
    lease = pipe.slot_lease()
    if not store.acquire_slot(rec.backend, me, cfg.max_pending_jobs, lease):
        # Queued for hand-off: whoever frees a slot posts the longest-waiting chunk at once.
        # This task still comes back now and then (to go on to polling once posted).
        since = store.wait_for_slot(rec.backend, rec.id, i)
        delay = polling.slot_wait_retry_in(time.time() - since, store.duration_estimate(rec.backend), cfg)
        raise RetryLater(f"all {cfg.max_pending_jobs} pending-job slots on {rec.backend} are taken", delay)
    lock = store.posting_lock(rec.id, i)
    if not lock.acquire():
        raise RetryLater(f"chunk {i} of {rec.id} is being posted by another delivery", 1.0)
    try:
        ch = store.chunk(rec.id, i)
        if ch.remote_id:  # posted while we waited for the lock
            return
        ctx = SubmitContext(rec.id, i, session_id=ensure_session(pipe, rec, executor), tags=chunk_tags(rec.id, i))
        # An earlier delivery that got as far as posting may have died before recording the id:
        # then the chunk's tag on the service tells. Only then is the service asked.
        remote_id = executor.find_submitted(ctx) if ch.post_attempted else None
        if remote_id is None:
            work = load()
            if work is None:  # the chunk was failed by the loader
                store.release_slot(rec.backend, me)
                return
            store.set_chunk_fields(rec.id, i, post_attempted=repr(time.time()))
            remote_id = executor.submit(*work, ctx).remote_id
        _record_posted(pipe, rec, i, executor, remote_id)
    except RetryLater:
        store.release_slot(rec.backend, me)
        raise
    except Exception as exc:  # noqa: BLE001 - a refused job fails this chunk only
        store.release_slot(rec.backend, me)
        pipe.fail(rec.id, i, "submission", exc)
    finally:
        try:
            lock.release()
        except Exception:  # noqa: BLE001 - expired meanwhile: nothing to release
            pass


def _record_posted(pipe: "Pipeline", rec: JobSetRecord, i: int, executor: Executor, remote_id: str) -> None:
    store = pipe.store
    after = pipe.advance(rec.id, i, JobStatus.SUBMITTED, remote_id=remote_id, submitted_at=repr(time.time()))
    if after is not JobStatus.SUBMITTED:
        # Cancelled while we were posting: the job must not run, nor keep its slot.
        store.set_chunk_fields(rec.id, i, remote_id=remote_id)
        executor.cancel(remote_id)
        store.release_slot(rec.backend, holder(rec.id, i))


def poll(pipe: "Pipeline", rec: JobSetRecord, i: int, ch: ChunkRecord, executor: Executor) -> float | None:
    """One status check of a posted job; returns the delay to the next, or None once final."""
    store = pipe.store
    if not ch.remote_id:
        # submit_chunk only ends with the job posted or the chunk final: this is an orphan.
        pipe.advance(rec.id, i, JobStatus.ERROR, error="the job was never posted")
        return None
    if rec.cancel_requested:  # cancelled between the flag and the chunk's own transition
        pipe.advance(rec.id, i, JobStatus.CANCELLED)
        executor.cancel(ch.remote_id)
        after_final(pipe, rec, i)
        return None
    est = store.duration_estimate(rec.backend)
    age = time.time() - ch.submitted_at if ch.submitted_at else None
    first = polling.first_poll_age(est, pipe.cfg)
    if age is not None and age < first:  # just posted (or handed off): no point asking yet
        return first - age
    store.renew_slot(rec.backend, holder(rec.id, i), pipe.slot_lease())
    state = executor.poll(ch.remote_id)
    if state.state.final:
        # The service no longer counts the job as pending: free its slot for the next chunk
        # before spending time on fetching this one's results.
        after_final(pipe, rec, i)
    if state.state is RemoteState.DONE:
        try:
            isa = codec.circuits_from_qpy(store.isa_qpy(rec.id, i))
            records = executor.fetch(ch.remote_id, isa, RunOptions.from_json(rec.options))
        except RetryLater:
            raise
        except Exception as exc:  # noqa: BLE001
            pipe.fail(rec.id, i, "fetching results", exc)
            return None
        pipe.advance(rec.id, i, JobStatus.DONE, result=records, finished_at=repr(time.time()))
        if age is not None:  # the last age it was seen pending is the tighter (lower) bound
            store.record_duration(rec.backend, ch.seen_pending_age or age)
        return None
    if state.state is RemoteState.ERROR:
        pipe.advance(rec.id, i, JobStatus.ERROR, error=state.error or "the job failed on the service")
        return None
    if state.state is RemoteState.CANCELLED:
        pipe.advance(rec.id, i, JobStatus.CANCELLED, error="cancelled on the service")
        return None
    if state.state is RemoteState.RUNNING:
        pipe.advance(rec.id, i, JobStatus.RUNNING)
    if age is None:
        return polling.age_based(0.0, pipe.cfg)
    store.set_chunk_fields(rec.id, i, seen_pending_age=repr(age))
    return polling.next_poll_in(age, est, pipe.cfg)


def after_final(pipe: "Pipeline", rec: JobSetRecord, i: int) -> None:
    """Give the chunk's slot back (a no-op if it was given back already) and hand it on."""
    if pipe.store.release_slot(rec.backend, holder(rec.id, i)):
        hand_off(pipe, rec.backend)


def hand_off(pipe: "Pipeline", backend: str) -> None:
    """Post the longest-waiting chunk now, instead of when its own retry comes round.

    Its task, when it comes back, finds the job posted and goes on to poll it. If the slot was
    taken meanwhile, the chunk simply queues again.
    """
    nxt = pipe.store.next_waiting(backend)
    if nxt is None:
        return
    sid, i = nxt
    try:
        pipe.submit_chunk(sid, i)
    except RetryLater:
        pass  # it re-queued itself
    except Exception:  # noqa: BLE001 - the waiter's own task will try again
        log.exception("hand-off of a free slot to %s:%d failed", sid, i)


def close_session(pipe: "Pipeline", rec: JobSetRecord) -> None:
    """Close the set's batch (cancel it, if the set was cancelled), once."""
    from .executors import for_backend

    if not pipe.store.claim_session_close(rec.id):
        return
    try:
        for_backend(rec.backend).close_session(rec.session_id, cancel=rec.cancel_requested)
    except Exception as exc:  # noqa: BLE001 - an unclosed batch expires on the service by itself
        log.warning("closing batch %s of job set %s failed: %s", rec.session_id, rec.id, exc)


def cancel_set(pipe: "Pipeline", rec: JobSetRecord, executor: Executor) -> None:
    """Cancel every posted job of a cancelled set that did not finish, and its batch."""
    for ch in pipe.store.chunks(rec.id, rec.n_chunks):
        if ch.status is JobStatus.CANCELLED and ch.remote_id:
            try:
                executor.cancel(ch.remote_id)
            except Exception as exc:  # noqa: BLE001 - keep cancelling the others
                log.warning("cancelling job %s failed: %s", ch.remote_id, exc)
        if ch.status.final:
            after_final(pipe, rec, ch.index)
    rec = pipe.store.job_set(rec.id)
    if rec.session_id:
        close_session(pipe, rec)
