"""Deleting a job set (``JobManager.delete_job_set``): it leaves every listing at once, and Redis
once nothing of it runs any more.

A tombstone (``keys.tombstone``) is written first and outlives the set: tasks still in flight,
jobs waiting for a slot and the reconciler find the set gone, see the tombstone and end quietly
(``ends_quietly``) instead of failing. A running set is cancelled first; if it runs on a remote
service, a worker (which has the credentials) cancels its remote jobs and batch, then removes the
keys (``purge``). Otherwise the keys go at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

from ..config import Settings
from ..engine import dispatch
from ..engine.runners import JobRunner
from ..errors import JobSetNotFoundError
from ..executors import is_local
from ..store import JobSetRecord, Store, keys

log = logging.getLogger(__name__)


def delete_job_set(store: Store, cfg: Settings, sid: str) -> bool:
    """Delete the set; returns True when its keys are gone already, False when a worker removes
    them once its remote jobs are cancelled."""
    rec = store.job_set(sid)  # an unknown or deleted id says so
    sid = rec.id  # as stored (an id is taken in either case)
    store.r.set(keys.tombstone(sid), repr(time.time()), ex=store.ttl)
    store.index.remove(sid)
    running = not rec.status.final
    if running:
        store.request_cancel(sid)
    if running and not is_local(rec.backend):
        dispatch.send_purge(cfg, sid)
        return False
    remove_keys(store, rec)
    return True


def remove_keys(store: Store, rec: JobSetRecord) -> None:
    """Free the set's pending-job slots and queue places, then delete every key but the tombstone."""
    for i in range(rec.n_jobs):
        ref = keys.job_ref(rec.id, i)
        store.slots.release(rec.backend, ref)
        store.r.zrem(keys.waiting(rec.backend), ref)
    parts = [key for i in range(rec.n_jobs) for key in store.outputs.parts(rec.id, i)]
    store.r.delete(*keys.set_keys(rec.id, rec.n_jobs), *parts)


def purge(store: Store, runner: JobRunner, sid: str) -> None:
    """A worker's part of a deletion: cancel what still runs remotely, then remove the keys."""
    try:
        rec = store.job_set(sid)
    except JobSetNotFoundError:
        return  # removed already (a redelivery)
    runner.cancel_set(rec)
    if rec.batch_id and store.claim_batch_close(sid):
        try:
            runner.executor_for(rec.backend).close_batch(rec.batch_id, cancel=True)
        except Exception as exc:  # noqa: BLE001 - an unclosed batch expires on the service by itself
            log.warning("cancelling batch %s of deleted job set %s failed: %s", rec.batch_id, sid, exc)
    remove_keys(store, rec)


def deleted(store: Store, sid: str) -> bool:
    return bool(store.r.exists(keys.tombstone(sid)))


@contextmanager
def ends_quietly(store: Store, sid: str) -> Iterator[None]:
    """Around a task's work: a set deleted meanwhile ends the task without an error."""
    try:
        yield
    except JobSetNotFoundError:
        if not deleted(store, sid):
            raise
        log.info("job set %s was deleted; its task ends", sid)
